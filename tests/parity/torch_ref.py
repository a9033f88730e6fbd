#!/usr/bin/python3
"""PyTorch reference (oracle) generator for jemc's parity tests.

Builds one of the jemc reference models (jem_mnist, jem_wrn28 = JEM's
Wide-ResNet without normalisation, or a plain MLP), initialises it with
PyTorch's default init under torch.manual_seed(seed), draws inputs, and
writes weights, inputs and expected outputs/gradients as safetensors files
(written by hand with struct+json; no safetensors package needed).

Run with Debian's interpreter, which has python3-torch:
    /usr/bin/python3 tests/parity/torch_ref.py --model wrn --depth 28 --widen 2 \
        --batch 2 --dtype float64 --seed 0 --out /tmp/ref
    /usr/bin/python3 tests/parity/torch_ref.py --selftest

See tests/parity/README.md for the file contents.
"""

import argparse
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

LRELU_SLOPE = 0.2


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

class JemMnist(nn.Module):
    """jem_mnist: 3 strided convs + LeakyReLU(0.2), flatten, linear."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.linear = nn.Linear(128 * 7 * 7, classes)

    def forward(self, x):
        out = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        out = F.leaky_relu(self.conv2(out), LRELU_SLOPE)
        out = F.leaky_relu(self.conv3(out), LRELU_SLOPE)
        out = out.view(out.size(0), -1)
        return self.linear(out)


class WideBasic(nn.Module):
    """JEM's wide_basic with norm=None and dropout 0."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=1, padding=1, bias=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True))

    def forward(self, x):
        out = self.conv1(F.leaky_relu(x, LRELU_SLOPE))
        out = self.conv2(F.leaky_relu(out, LRELU_SLOPE))
        return out + self.shortcut(x)


class JemWideResNet(nn.Module):
    """jem_wrn: Grathwohl et al.'s Wide-ResNet, no normalisation, no dropout."""

    def __init__(self, depth=28, widen=10, classes=10):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError("WRN depth must be 6n+4 (n >= 1), got %d" % depth)
        n = (depth - 4) // 6
        k = widen
        stages = [16, 16 * k, 32 * k, 64 * k]
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, stages[0], 3, stride=1, padding=1, bias=True)
        self.layer1 = self._wide_layer(stages[1], n, 1)
        self.layer2 = self._wide_layer(stages[2], n, 2)
        self.layer3 = self._wide_layer(stages[3], n, 2)
        self.linear = nn.Linear(stages[3], classes)

    def _wide_layer(self, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for s in strides:
            layers.append(WideBasic(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.leaky_relu(out, LRELU_SLOPE)
        out = F.avg_pool2d(out, 8)
        out = out.view(out.size(0), -1)
        return self.linear(out)


class Mlp(nn.Module):
    """fc1, fc2, ..., out with LeakyReLU(0.2) between (not after `out`)."""

    def __init__(self, mlp_in, hidden, classes):
        super().__init__()
        self.names = []
        prev = mlp_in
        for i, h in enumerate(hidden):
            name = "fc%d" % (i + 1)
            setattr(self, name, nn.Linear(prev, h))
            self.names.append(name)
            prev = h
        self.out = nn.Linear(prev, classes)

    def forward(self, x):
        for name in self.names:
            x = F.leaky_relu(getattr(self, name)(x), LRELU_SLOPE)
        return self.out(x)


def input_shape(args):
    if args.model == "mnist":
        return [1, 28, 28]
    if args.model == "wrn":
        return [3, 32, 32]
    return [args.mlp_in]


def build_model(args):
    if args.model == "mnist":
        return JemMnist(args.classes)
    if args.model == "wrn":
        return JemWideResNet(args.depth, args.widen, args.classes)
    if args.model == "mlp":
        return Mlp(args.mlp_in, args.hidden, args.classes)
    raise ValueError("unknown model %r" % args.model)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def macs_per_image(model, x1):
    """Multiply-accumulates of every conv/linear for one image (forward hooks)."""
    total = [0]

    def conv_hook(m, inp, out):
        cout, hout, wout = out.shape[1], out.shape[2], out.shape[3]
        kh, kw = m.kernel_size
        total[0] += cout * (m.in_channels // m.groups) * kh * kw * hout * wout

    def linear_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model(x1[:1])
    finally:
        for h in hooks:
            h.remove()
    return total[0]


# --------------------------------------------------------------------------
# safetensors writer (struct + json; no external package)
# --------------------------------------------------------------------------

_ST_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor) in file order."""
    header = {}
    blobs = []
    off = 0
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        if t.dtype not in _ST_DTYPE:
            raise TypeError("%s: unsupported dtype %s" % (name, t.dtype))
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = {
            "dtype": _ST_DTYPE[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [off, off + len(data)],
        }
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Reference computation
# --------------------------------------------------------------------------

def energy(logits):
    return -torch.logsumexp(logits, dim=1)


def generate(args):
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    torch.manual_seed(args.seed)
    # Parameters are initialised in float32 (PyTorch's default) and then cast,
    # so the float64 weights are exactly the float32 ones widened.
    model = build_model(args).to(dtype)
    model.eval()
    shape = [args.batch] + input_shape(args)
    # Inputs are drawn in float32 right after the init, then cast.
    x = (torch.rand(shape) * 2 - 1).to(dtype)
    y = torch.randint(args.classes, (args.batch,), dtype=torch.int64)
    x_q = (torch.rand(shape) * 2 - 1).to(dtype)

    # logits, energy, SGLD input gradient
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    lse = torch.logsumexp(logits, dim=1)
    (sgld_grad_x,) = torch.autograd.grad(lse.sum(), xg)
    logits = logits.detach()
    e = (-lse).detach()

    # JEM loss and parameter gradients
    model.zero_grad(set_to_none=True)
    f_x = model(x)
    f_q = model(x_q)
    loss_ce = F.cross_entropy(f_x, y)
    loss_px = energy(f_x).mean() - energy(f_q).mean()
    loss = loss_ce + loss_px
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    grads = torch.autograd.grad(loss, params)

    # JEM loss plus a gradient penalty 0.1 * sum_i ||d/dx_i E(x_i)||^2 / batch:
    # its parameter gradients need double backward (jemc: grad of an expression with grad)
    xg2 = x.clone().requires_grad_(True)
    f2 = model(xg2)
    (gx,) = torch.autograd.grad(energy(f2).sum(), xg2, create_graph=True)
    penalty = (gx * gx).sum() / args.batch
    loss_gp = F.cross_entropy(f2, y) + energy(f2).mean() - energy(model(x_q)).mean() + 0.1 * penalty
    grads_gp = torch.autograd.grad(loss_gp, params)

    np_ = n_params(model)
    macs = macs_per_image(model, x)

    meta = {
        "model": args.model,
        "depth": args.depth,
        "widen": args.widen,
        "classes": args.classes,
        "batch": args.batch,
        "dtype": args.dtype,
        "seed": args.seed,
        "n_params": np_,
        "macs_per_image": macs,
    }
    if args.model == "mlp":
        meta["mlp_in"] = args.mlp_in
        meta["mlp_hidden"] = ",".join(str(h) for h in args.hidden)

    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "weights.safetensors"),
                      list(model.state_dict().items()), meta)
    write_safetensors(os.path.join(args.out, "inputs.safetensors"),
                      [("x", x), ("y", y), ("x_q", x_q)], meta)
    expected = [
        ("logits", logits),
        ("energy", e),
        ("sgld_grad_x", sgld_grad_x),
        ("loss_ce", loss_ce.detach()),
        ("loss_px", loss_px.detach()),
        ("loss", loss.detach()),
    ]
    expected += [("grad." + n, g) for n, g in zip(names, grads)]
    expected += [("loss_gp", loss_gp.detach()), ("penalty", penalty.detach())]
    expected += [("grad_gp." + n, g) for n, g in zip(names, grads_gp)]
    write_safetensors(os.path.join(args.out, "expected.safetensors"), expected, meta)
    return {"n_params": np_, "macs_per_image": macs}


# --------------------------------------------------------------------------
# Self-test: parameter counts, MACs, names
# --------------------------------------------------------------------------

def selftest():
    ns = argparse.Namespace
    checks = []

    def count(model_args, want_params, want_macs_range=None, want_names=None):
        torch.manual_seed(0)
        m = build_model(model_args)
        p = n_params(m)
        assert p == want_params, "%s: n_params %d != %d" % (model_args, p, want_params)
        x1 = torch.zeros([1] + input_shape(model_args))
        macs = macs_per_image(m, x1)
        if want_macs_range is not None:
            lo, hi = want_macs_range
            assert lo <= macs <= hi, "%s: macs %d not in [%d,%d]" % (model_args, macs, lo, hi)
        if want_names is not None:
            got = list(m.state_dict().keys())
            for n in want_names:
                assert n in got, "missing parameter name %s" % n
        checks.append({"model": model_args.model, "depth": model_args.depth,
                       "widen": model_args.widen, "n_params": p, "macs_per_image": macs})
        return m

    count(ns(model="mnist", depth=28, widen=2, classes=10), 155402,
          want_names=["conv1.weight", "conv1.bias", "conv2.weight", "conv3.bias",
                      "linear.weight", "linear.bias"])
    m = count(ns(model="wrn", depth=28, widen=2, classes=10), 1466026,
              want_names=["conv1.weight", "layer1.0.conv1.weight",
                          "layer1.0.shortcut.0.weight", "layer1.0.shortcut.0.bias",
                          "layer2.0.shortcut.0.weight", "layer3.3.conv2.bias",
                          "linear.weight", "linear.bias"])
    assert "layer1.1.shortcut.0.weight" not in m.state_dict()
    count(ns(model="wrn", depth=28, widen=10, classes=10), 36471338,
          want_macs_range=(5.90e9, 6.00e9))
    m = count(ns(model="mlp", depth=28, widen=2, classes=10, mlp_in=8, hidden=[32, 32]),
              8 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10,
              want_names=["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                          "out.weight", "out.bias"])
    assert list(m.state_dict().keys()) == ["fc1.weight", "fc1.bias", "fc2.weight",
                                           "fc2.bias", "out.weight", "out.bias"]

    # Determinism and format round trip on a small model.
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        outs = []
        for sub in ("a", "b"):
            a = ns(model="mlp", depth=28, widen=2, classes=10, batch=2, dtype="float64",
                   seed=0, mlp_in=8, hidden=[32, 32], out=os.path.join(d, sub))
            generate(a)
            outs.append([open(os.path.join(a.out, f), "rb").read()
                         for f in ("weights.safetensors", "inputs.safetensors",
                                   "expected.safetensors")])
        assert outs[0] == outs[1], "output not deterministic"
        for blob in outs[0]:
            (hl,) = struct.unpack("<Q", blob[:8])
            assert hl % 8 == 0
            hdr = json.loads(blob[8:8 + hl].decode("utf-8"))
            end = max(v["data_offsets"][1] for k, v in hdr.items() if k != "__metadata__")
            assert 8 + hl + end == len(blob)
    return checks


# --------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["mnist", "wrn", "mlp"])
    ap.add_argument("--depth", type=int, default=28)
    ap.add_argument("--widen", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mlp-in", dest="mlp_in", type=int, default=8)
    ap.add_argument("--mlp-hidden", dest="mlp_hidden", default="32,32",
                    help="comma-separated hidden sizes (may be empty)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1, for bitwise reproducibility)")
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--selftest", action="store_true",
                    help="check parameter counts / MACs / names / determinism and exit")
    args = ap.parse_args(argv)
    args.hidden = [int(h) for h in args.mlp_hidden.split(",") if h.strip()]
    if not args.selftest and (args.model is None or args.out is None):
        ap.error("--model and --out are required (or use --selftest)")
    if args.batch < 1 or args.classes < 1:
        ap.error("--batch and --classes must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(max(1, args.threads))
    if args.selftest:
        if args.threads == 1:
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        checks = selftest()
        for c in checks:
            print(json.dumps(c))
        print(json.dumps({"selftest": "ok"}))
        return 0
    summary = generate(args)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
