"""The official VERA model classes, re-implemented faithfully for tests/t_convert.c.

wgrathwohl/VERA (91ff0dd) models/wideresnet.py (Wide_ResNet, wide_basic with `first`
and dropout, get_norm, Identity), models/jem.py (JEM), models/resnet.py
(GeneratorBlock, ResNetGenerator) and models/generator.py (VERAHMCGenerator,
VERAGenerator: only what state_dict() holds and the mean G(h); the entropy
estimators are not needed here), module for module, so that state_dict() has
exactly the official keys and order. train.py's save_ckpt writes

    {"epoch", "train_accs", "test_accs", "aucs", "briers", "test_lps", "modes", "kl",
     "eval_itrs", "itr",
     "model": {"logp_net": logp_net.state_dict(), "g": g.state_dict()},
     "optimizer": {"e": Adam.state_dict(), "g": Adam.state_dict()},
     "scheduler": {"e": MultiStepLR.state_dict(), "g": MultiStepLR.state_dict()}}

where logp_net is JEM(Wide_ResNet(28, k, num_classes)) with --clf/--jem (keys
"logp_net.conv1.weight", ...) or the bare Wide_ResNet with one output otherwise.
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
    if norm == "group":
        return nn.GroupNorm(32, n_filters)
    raise ValueError(norm)


class wide_basic(nn.Module):
    def __init__(self, in_planes, planes, dropout_rate, stride=1, norm=None, leak=.2, first=False):
        super().__init__()
        self.lrelu = nn.LeakyReLU(leak)
        self.bn1 = get_norm(in_planes, norm)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, padding=1, bias=True)
        self.dropout = Identity() if dropout_rate == 0.0 else nn.Dropout(p=dropout_rate)
        self.bn2 = get_norm(planes, norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.first = first
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x):
        if self.first:
            out = self.dropout(self.conv1(self.lrelu(x)))
        else:
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
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        k = widen_factor
        n_stages = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(input_channels, n_stages[0], kernel_size=3, stride=1, padding=1, bias=True)
        self.layer1 = self._wide_layer(wide_basic, n_stages[1], n, dropout_rate, stride=1, first=True)
        self.layer2 = self._wide_layer(wide_basic, n_stages[2], n, dropout_rate, stride=2)
        self.layer3 = self._wide_layer(wide_basic, n_stages[3], n, dropout_rate, stride=2)
        self.bn1 = get_norm(n_stages[3], self.norm)
        self.last_dim = n_stages[3]
        self.linear = nn.Linear(n_stages[3], num_classes)

    def _wide_layer(self, block, planes, num_blocks, dropout_rate, stride, first=False):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for i, s in enumerate(strides):
            layers.append(block(self.in_planes, planes, dropout_rate, s, norm=self.norm, first=(first and i == 0)))
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
        out = out.view(out.size(0), -1)
        return self.linear(out)                 # VERA's WRN returns the logits


class JEM(nn.Module):
    def __init__(self, logp_net):
        super().__init__()
        self.logp_net = logp_net

    def forward(self, x, return_logits=False):
        logits = self.logp_net(x)
        return (logits.logsumexp(1), logits) if return_logits else logits.logsumexp(1)

    def classify(self, x):
        return self.logp_net(x)


class GeneratorBlock(nn.Module):
    def __init__(self, in_chans, out_chans, upsample=False):
        super().__init__()
        self.upsample = upsample
        self.shortcut_conv = nn.Conv2d(in_chans, out_chans, kernel_size=1) if in_chans != out_chans else None
        self.bn1 = nn.BatchNorm2d(in_chans)
        self.conv1 = nn.Conv2d(in_chans, in_chans, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(in_chans)
        self.conv2 = nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        shortcut = F_.interpolate(x, scale_factor=2, mode='nearest') if self.upsample else x
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_conv(shortcut)
        x = self.relu(self.bn1(x))
        if self.upsample:
            x = F_.interpolate(x, scale_factor=2, mode='nearest')
        x = self.conv2(self.relu(self.bn2(self.conv1(x))))
        return x + shortcut


class ResNetGenerator(nn.Module):
    def __init__(self, unit_interval, feats=128):
        super().__init__()
        self.input_linear = nn.Linear(128, 4 * 4 * feats)
        self.block1 = GeneratorBlock(feats, feats, upsample=True)
        self.block2 = GeneratorBlock(feats, feats, upsample=True)
        self.block3 = GeneratorBlock(feats, feats, upsample=True)
        self.output_bn = nn.BatchNorm2d(feats)
        self.output_conv = nn.Conv2d(feats, 3, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.feats = feats
        self.final_act = torch.sigmoid if unit_interval else torch.tanh

    def forward(self, x):
        x = self.input_linear(x).view(-1, self.feats, 4, 4)
        x = self.block3(self.block2(self.block1(x)))
        return self.final_act(self.output_conv(self.relu(self.output_bn(x))))


class VERAHMCGenerator(nn.Module):
    def __init__(self, g, noise_dim, mcmc_lr=.02):
        super().__init__()
        self.g = g
        self.logsigma = nn.Parameter((torch.ones(1, ) * .01).log())
        self.noise_dim = noise_dim
        self.stepsize = nn.Parameter(torch.tensor(1. / noise_dim), requires_grad=False)
        self.mcmc_lr = mcmc_lr


class VERAGenerator(VERAHMCGenerator):
    def __init__(self, g, noise_dim, post_lr=.001, init_post_logsigma=.1):
        super().__init__(g, noise_dim, post_lr)
        self.post_logsigma = nn.Parameter((torch.ones(noise_dim, ) * init_post_logsigma).log())
        self.post_optimizer = torch.optim.Adam([self.post_logsigma], lr=post_lr)
