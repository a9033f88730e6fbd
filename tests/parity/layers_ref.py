#!/usr/bin/python3
"""PyTorch reference for tests/parity/layers.graph: conv_transpose2d (groups 2,
stride 2, output_padding 1), BatchNorm2d in training mode called twice (outputs and
running statistics) and in eval mode, GroupNorm, nearest upsampling x2 and x3 and its
gradient, and the bounds of xavier_uniform (DIR/xavier_bounds.safetensors). Writes DIR/state.safetensors
(initial parameters and buffers), DIR/inputs.safetensors, DIR/expected.safetensors
(outputs) and DIR/expected_state.safetensors (state after the training program).
Run with Debian's /usr/bin/python3 (python3-torch)."""
import json
import math
import os
import struct
import sys

import torch


def write(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        a = t.detach().contiguous().numpy()
        code = {"float64": "F64", "float32": "F32", "int64": "I64"}[str(a.dtype)]
        b = a.tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main(out):
    torch.manual_seed(5)
    dt = torch.float64
    x = torch.randn(4, 4, 3, 3, dtype=dt)
    w = torch.randn(4, 3, 3, 3, dtype=dt)
    g = torch.randn(4, 4, 3, 3, dtype=dt)
    bn = torch.nn.BatchNorm2d(4).to(dt)
    gn = torch.nn.GroupNorm(2, 4).to(dt)
    with torch.no_grad():
        for m in (bn, gn):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    os.makedirs(out, exist_ok=True)
    state = [("bn." + k, v.clone()) for k, v in bn.state_dict().items()]
    state += [("gn." + k, v.clone()) for k, v in gn.state_dict().items()]
    write(os.path.join(out, "state.safetensors"), state)
    u = torch.randn(2, 3, 3, 4, dtype=dt, requires_grad=True)
    d2 = torch.randn(2, 3, 6, 8, dtype=dt)
    d3 = torch.randn(2, 3, 9, 12, dtype=dt)
    write(os.path.join(out, "inputs.safetensors"), [("x", x), ("w", w), ("g", g), ("u", u), ("d2", d2), ("d3", d3)])
    up = torch.nn.functional.interpolate
    up2, up3 = up(u, scale_factor=2, mode="nearest"), torch.nn.Upsample(scale_factor=3)(u)
    loss = (up2 * d2).sum() + (up(u * u, scale_factor=3, mode="nearest") * d3).sum()
    (up_grad,) = torch.autograd.grad(loss, u)
    bn_eval = bn.eval()(g)
    bn.train()
    convt = torch.nn.functional.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2)
    bn1 = bn(g)
    bn2 = bn(g * 2.0 + 1.0)
    expected = [("convt", convt), ("bn1", bn1), ("bn2", bn2), ("gn", gn(g)), ("bn", bn_eval),
                ("up2", up2), ("up3", up3), ("up_grad", up_grad)]
    write(os.path.join(out, "expected.safetensors"), expected)
    write(os.path.join(out, "expected_state.safetensors"), [("bn." + k, v) for k, v in bn.state_dict().items()])
    write(os.path.join(out, "xavier_bounds.safetensors"), xavier_bounds())


def xavier_bounds():
    """The bound b of U(-b, b) that torch.nn.init.xavier_uniform_ uses for each parameter of
    xavier.graph's xavier_params and for the weights of its conv_xavier and dense_xavier, computed as torch 1.13's xavier_uniform_ computes it, with
    its own fans; checked against torch's draws for a large tensor of each shape."""
    shapes = {"w2": ([30, 20], 1.0), "w3": ([8, 5, 7], 0.5), "w4": ([16, 8, 3, 3], math.sqrt(2)),
              "w5": ([4, 3, 2, 2, 2], 2.0), "big": ([256, 128, 3], 1.5),
              "cx.weight": ([6, 3, 3, 3], math.sqrt(2)), "dx.weight": ([5, 4], 0.75)}
    out = []
    for name, (shape, gain) in shapes.items():
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        bound = math.sqrt(3.0) * (gain * math.sqrt(2.0 / float(fan_in + fan_out)))
        draws = torch.cat([torch.nn.init.xavier_uniform_(torch.empty(shape, dtype=torch.float64), gain).flatten()
                           for _ in range(max(1, 200000 // math.prod(shape)))]).abs()
        assert draws.max() <= bound and draws.max() > 0.999 * bound, (name, float(draws.max()), bound)
        out.append((name if "." in name else "xavier." + name, torch.tensor(bound, dtype=torch.float64)))
    return out


if __name__ == "__main__":
    main(sys.argv[1])
