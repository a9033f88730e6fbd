"""The official JEM model classes, re-implemented faithfully for tests/t_convert.c.

wgrathwohl/JEM wideresnet.py (Wide_ResNet, wide_basic, get_norm, Identity) and
train_wrn_ebm.py (F, CCF), module for module, so that state_dict() has exactly the
official keys and order (we cannot download published weights). get_norm has every
--norm: batch (BatchNorm2d, momentum 0.9 in PyTorch's convention, eps 1e-5), instance,
layer, and act (ActNorm: only its state_dict, loc/scale/initialized; jemc refuses it).
JEM++ (sndnyang/JEMPP) and SADA-JEM copy these classes (n_classes and dropout_rate
passed through; their get_norm is JEM's), so their checkpoints have the same keys
but for Wide_ResNet.linear, which they comment out (CCF_JEMPP).

As a script it writes the --norm batch checkpoints of tests/t_convert.c:

    jem_official.py make-bn --depth 10 --widen 1 --classes 10 --buffer 20 --inputs X [--test T] --out DIR
        (X: a safetensors file with x [batch, 3, 32, 32], tests/parity/torch_convert.py's inputs)
        DIR/bn_jem.pt                 JEM's CCF(norm="batch"): {"model_state_dict", "replay_buffer"}
        DIR/bn_jempp.pt               JEM++'s CCF (no f.linear), the same entries
        DIR/bn_sada.pt                SADA-JEM's CCF saved from nn.DataParallel (keys "module.*"),
                                      as its checkpoint() does when training on several GPUs
        DIR/bn_expected_L.safetensors logits = CCF.classify(x) in eval() mode (running statistics)
                                      and float64, energy = -logsumexp, replay_buffer, and
                                      num_batches_tracked of every batch norm (float64, in order)
        DIR/bn_bad_instance.pt, bn_bad_act.pt   --norm instance / act models, to be refused
        DIR/bn_bad_missing.pt         bn_jem.pt without f.layer2.0.bn2.running_var, to be refused
        DIR/bn_expected_eval.safetensors  with --test DIR/test.bin (CIFAR-10 records, pixels mapped as
                                      jemc's reader does): bn_jem's accuracy, mean cross-entropy and
                                      mean energy over it in eval() mode
    Each model gets random batch-norm weights and biases, then 3 train-mode forwards on
    random batches (mean 0.3, sd 1.5) before saving: running statistics far from 0 and 1
    and different in every layer, num_batches_tracked 3, so a swapped name shows.

    jem_official.py back-bn --layout jem|jempp --pt P --inputs X --out O
        loads P's model_state_dict into CCF / CCF_JEMPP (norm="batch") with
        load_state_dict(strict=True) and writes O as bn_expected_L (replay_buffer if P has one).
"""

import argparse
import os
import sys

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
    if norm == "act":
        return ActNorm(n_filters, False)
    raise ValueError("norm %r not re-implemented" % norm)


class ActNorm(nn.Module):
    """norms.ActNorm's state: loc and scale [1, C, 1, 1], the buffer `initialized` (uint8);
    the forward is not needed here (jemc refuses the model)."""

    def __init__(self, in_channel, logdet=True):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, in_channel, 1, 1))
        self.scale = nn.Parameter(torch.ones(1, in_channel, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        self.logdet = logdet


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


# ---- the --norm batch checkpoints of tests/t_convert.c ----

def _write_st(path, tensors):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
    import st_io
    st_io.write(path, tensors)


def _read_x(path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
    import st_io
    return st_io.read(path)[0]["x"]


def _outputs(model, x, buf):
    """eval() mode, float64: logits, energy, the buffer, every num_batches_tracked."""
    import copy
    m64 = copy.deepcopy(model).to(torch.float64)
    m64.eval()
    with torch.no_grad():
        logits = m64.classify(x.to(torch.float64))
    nbt = [b.to(torch.float64) for n, b in model.state_dict().items() if n.endswith("num_batches_tracked")]
    out = [("logits", logits), ("energy", -logits.logsumexp(1)), ("num_batches_tracked", torch.stack(nbt))]
    return out + ([("replay_buffer", buf)] if buf is not None else [])


def _eval_scores(model, path):
    """accuracy, mean cross-entropy and mean energy -logsumexp over a CIFAR-10 binary file."""
    import copy
    raw = open(path, "rb").read()
    rec = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, 1 + 3 * 32 * 32)
    y = rec[:, 0].to(torch.int64)
    x = (rec[:, 1:].to(torch.float64) / 255.0 * 2.0 - 1.0).to(torch.float32).reshape(-1, 3, 32, 32)
    m64 = copy.deepcopy(model).to(torch.float64)
    m64.eval()
    with torch.no_grad():
        logits = m64.classify(x.to(torch.float64))
    acc = (logits.argmax(1) == y).to(torch.float64).mean()
    loss = torch.nn.functional.cross_entropy(logits, y)
    return [("accuracy", acc.reshape(1)), ("loss", loss.reshape(1)), ("energy", (-logits.logsumexp(1)).mean().reshape(1))]


def bn_model(cls, a):
    model = cls(a.depth, a.widen, norm="batch", n_classes=a.classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        model.train()
        for _ in range(3):
            model.classify(torch.randn(16, 3, 32, 32) * 1.5 + 0.3)
    model.eval()
    return model


def make_bn(a):
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    x = _read_x(a.inputs)
    for layout, cls in (("jem", CCF), ("jempp", CCF_JEMPP), ("sada", CCF_JEMPP)):
        model = bn_model(cls, a)
        buf = torch.rand(a.buffer, 3, 32, 32) * 2 - 1
        sd = model.state_dict()
        if layout == "sada":            # checkpoint() of an nn.DataParallel(f)
            sd = {"module." + k: v for k, v in sd.items()}
        torch.save({"model_state_dict": sd, "replay_buffer": buf}, os.path.join(a.out, "bn_%s.pt" % layout))
        _write_st(os.path.join(a.out, "bn_expected_%s.safetensors" % layout), _outputs(model, x, buf))
        if layout == "jem" and a.test:
            _write_st(os.path.join(a.out, "bn_expected_eval.safetensors"), _eval_scores(model, a.test))
        if layout == "jem":
            del sd["f.layer2.0.bn2.running_var"]
            torch.save({"model_state_dict": sd}, os.path.join(a.out, "bn_bad_missing.pt"))
    for norm in ("instance", "act"):
        sd = CCF(a.depth, a.widen, norm=norm, n_classes=a.classes).state_dict()
        torch.save({"model_state_dict": sd}, os.path.join(a.out, "bn_bad_%s.pt" % norm))


def back_bn(a):
    model = (CCF_JEMPP if a.layout == "jempp" else CCF)(a.depth, a.widen, norm="batch", n_classes=a.classes)
    obj = torch.load(a.pt, map_location="cpu")
    model.load_state_dict(obj["model_state_dict"], strict=True)
    model.eval()
    x = _read_x(a.inputs)
    _write_st(a.out, _outputs(model, x, obj.get("replay_buffer")))


def main():
    ap = argparse.ArgumentParser(description="--norm batch checkpoints of the official JEM classes")
    ap.add_argument("cmd", choices=["make-bn", "back-bn"])
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widen", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--buffer", type=int, default=20)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--layout", choices=["jem", "jempp"], default="jem")
    ap.add_argument("--pt")
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--test")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    (make_bn if a.cmd == "make-bn" else back_bn)(a)


if __name__ == "__main__":
    main()
