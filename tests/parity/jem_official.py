"""The official JEM model classes, re-implemented faithfully for tests/t_convert.c.

wgrathwohl/JEM wideresnet.py (Wide_ResNet, wide_basic, get_norm, Identity) and
train_wrn_ebm.py (F, CCF), module for module, so that state_dict() has exactly the
official keys and order (we cannot download published weights). ActNorm (--norm act)
is left out: its module lives in norms.py and jemc refuses every norm anyway.
JEM++ (sndnyang/JEMPP) and SADA-JEM copy these classes (with n_classes and
dropout_rate passed through), so their norm-None checkpoints have the same keys.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F_


class Identity(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


def get_norm(n_filters, norm):
    if norm is None:
        return Identity()
    if norm == "batch":
        return nn.BatchNorm2d(n_filters, momentum=0.9)
    if norm == "instance":
        return nn.InstanceNorm2d(n_filters, affine=True)
    if norm == "layer":
        return nn.GroupNorm(1, n_filters)
    raise ValueError("norm %r not re-implemented" % norm)


class wide_basic(nn.Module):
    def __init__(self, in_planes, planes, dropout_rate, stride=1, norm=None, leak=.2):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = get_norm(in_planes, norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = Identity() if dropout_rate == 0.0 else nn.Dropout(p=dropout_rate)
        self.bn2 = get_norm(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x):
        out = self.dropout(self.conv1(self.lrelu(self.bn1(x))))
        out = self.conv2(self.lrelu(self.bn2(out)))
        out += self.shortcut(x)
        return out


class Wide_ResNet(nn.Module):
    def __init__(self, depth, widen_factor, num_classes=10, input_channels=3, sum_pool=False, norm=None,
                 leak=.2, dropout_rate=0.0):
        super().__init__()
        self.leak = leak
        self.in_planes = 16
        self.sum_pool = sum_pool
        self.norm = norm
        self.lrelu = nn.LeakyReLU(leak)
        assert (depth - 4) % 6 == 0, 'Wide-resnet depth should be 6n+4'
        n = (depth - 4) // 6
        k = widen_factor
        n_stages = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(input_channels, n_stages[0], kernel_size=3, stride=1, padding=1, bias=True)
        self.layer1 = self._wide_layer(wide_basic, n_stages[1], n, dropout_rate, stride=1)
        self.layer2 = self._wide_layer(wide_basic, n_stages[2], n, dropout_rate, stride=2)
        self.layer3 = self._wide_layer(wide_basic, n_stages[3], n, dropout_rate, stride=2)
        self.bn1 = get_norm(n_stages[3], self.norm)
        self.last_dim = n_stages[3]
        self.linear = nn.Linear(n_stages[3], num_classes)    # never called by forward

    def _wide_layer(self, block, planes, num_blocks, dropout_rate, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for s in strides:
            layers.append(block(self.in_planes, planes, dropout_rate, s, norm=self.norm))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x, vx=None):
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.lrelu(self.bn1(out))
        if self.sum_pool:
            out = out.view(out.size(0), out.size(1), -1).sum(2)
        else:
            out = F_.avg_pool2d(out, 8)
        return out.view(out.size(0), -1)      # features: the heads are F's


class F(nn.Module):
    def __init__(self, depth=28, width=2, norm=None, dropout_rate=0.0, n_classes=10):
        super().__init__()
        self.f = Wide_ResNet(depth, width, norm=norm, dropout_rate=dropout_rate)
        self.energy_output = nn.Linear(self.f.last_dim, 1)
        self.class_output = nn.Linear(self.f.last_dim, n_classes)

    def forward(self, x, y=None):
        penult_z = self.f(x)
        return self.energy_output(penult_z).squeeze()

    def classify(self, x):
        penult_z = self.f(x)
        return self.class_output(penult_z)


class CCF_JEMPP(F):
    """JEM++ / SADA-JEM: models/wideresnet.py comments out Wide_ResNet.linear, otherwise as JEM
    at norm None (classify returns class_output(f(x)).squeeze(), the same for batch > 1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.f.linear

    def forward(self, x, y=None):
        logits = self.classify(x)
        return logits.logsumexp(1) if y is None else torch.gather(logits, 1, y[:, None])


class CCF(F):
    def forward(self, x, y=None):
        logits = self.classify(x)
        if y is None:
            return logits.logsumexp(1)          # -E(x)
        return torch.gather(logits, 1, y[:, None])
