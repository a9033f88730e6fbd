#!/usr/bin/python3
"""PyTorch reference for whole JEM training iterations (jemc's train_step, train_step_ce).

One JEM iteration as the official code runs it (wgrathwohl/JEM train_wrn_ebm.py;
../shared/research/jem-spec.md sections 2-4), on the models of torch_ref.py:

  idx ~ randint(0, buffer_size, [B]); restart_i = U(0,1) < reinit
  x0  = where(restart, U(-1,1), replay[idx])
  K times: x = x + sgld_lr * d/dx sum_i logsumexp f(x_i) + sgld_std * N(0, I)
           (kept in [-1, 1] with --sampler box, as the shipped graphs' sgld_box)
  replay[idx] = x_q (a repeated index: the later row wins)
  loss = CE(f(x), y) + px_weight * (mean E(x) - mean E(x_q))
         + energy_reg * (mean E(x)^2 + mean E(x_q)^2)       (0 in JEM)
  backward; torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8) with linear warm-up

train_step_ce is the classifier step: CE(f(x), y), backward, the same Adam.

The random draws are jemc's: this script reimplements jemc's Philox4x32-10
(runtime/engine/philox_core.h, docs/graph-language.md section 14) and reads
the draws' stream ids from `jemc compile GRAPH PROGRAM --dump=ir` (--ir), so
jemc runs the shipped program unchanged and PyTorch sees the same indices,
restart mask, restart values and SGLD noise. Iteration k of a run uses
Philox call (--call + k), as a chain of `jemc run --state-out`/`--state` does.

Warm-up: jemc's minimize uses lr_t = lr * min(1, t / warmup) with t = the
step being taken (1 for the first); the official code sets
lr = lr * cur_iter / warmup_iters with cur_iter = 0 on the first iteration
(--warmup-convention official), one iteration behind.

Writes to --out:
  state.safetensors     the starting state: the model's state_dict (PyTorch
                        names) and `replay` [buffer_size, ...] ~ U(-1, 1)
  inputs.safetensors    x (U(-1, 1)) and y (I64)
  expected.safetensors  after the first iteration: the program's outputs
                        (loss, loss_ce, loss_px, e_data, e_sample, acc; or
                        loss, loss_ce, acc) and the state: every parameter,
                        opt.m.<p>, opt.v.<p>, opt.step, opt.grad_norm, replay
  expected_last.safetensors   the same after the last of --iters iterations
  curve.json            per iteration: loss, loss_ce (and loss_px, e_data, e_sample)
All tensors are float64 (--dtype float64) and the starting values are float32
numbers, so jemc can read them in either precision.

--draws IR: prints (as JSON) the values of every top-level draw of a program
(and of a one-draw sampler loop) for --jemc-seed/--call, to check this Philox
against jemc's. Run with Debian's /usr/bin/python3 (python3-torch).
"""

import argparse
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import build_model, input_shape, write_safetensors  # noqa: E402

# --------------------------------------------------------------------------
# jemc's random numbers: Philox4x32-10, counter (element, iteration, stream, call)
# --------------------------------------------------------------------------

MASK = np.uint64(0xFFFFFFFF)


def philox(n, iteration, stream, call, seed):
    """The first two words of the Philox blocks of elements 0..n-1 (uint64 arrays)."""
    c0 = np.arange(n, dtype=np.uint64)
    c1 = np.full(n, iteration & 0xFFFFFFFF, dtype=np.uint64)
    c2 = np.full(n, stream & 0xFFFFFFFF, dtype=np.uint64)
    c3 = np.full(n, call & 0xFFFFFFFF, dtype=np.uint64)
    k0, k1 = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for _ in range(10):
        p0 = m0 * c0
        p1 = m1 * c2
        n0 = (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0)
        n1 = p1 & MASK
        n2 = (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1)
        n3 = p0 & MASK
        c0, c1, c2, c3 = n0, n1, n2, n3
        k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
        k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0, c1


def unit(w):
    return (w.astype(np.float64) + 0.5) * (1.0 / 4294967296.0)


_LOG_P = (7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
          -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1)


def normal_f32(w0, w1):
    """runtime/engine/philox_core.h's float32 Box-Muller, operation for
    operation in numpy float32 (IEEE single, no fused multiply-add): the bits
    jemc draws for a float32 normal."""
    f = np.float32
    with np.errstate(all="ignore"):
        u1 = (w0 >> np.uint64(1)).astype(np.int32).astype(f) * f(2.0 ** -31) + f(2.0 ** -32)
        u2 = (w1 >> np.uint64(8)).astype(np.int32).astype(f) * f(2.0 ** -24)
        # log(u1): codegen/mathlib.c's Cephes logf on (0, 1]
        bits = u1.view(np.uint32)
        e = ((bits >> np.uint32(23)) & np.uint32(255)).astype(np.int32) - 126
        m = ((bits & np.uint32(0x007FFFFF)) | np.uint32(0x3F000000)).view(f)
        small = m < f(0.707106781186547524)
        ef = np.where(small, e - 1, e).astype(f)
        x = np.where(small, (m + m) - f(1.0), m - f(1.0))
        z = x * x
        p = np.full_like(x, f(_LOG_P[0]))
        for c in _LOG_P[1:]:
            p = p * x + f(c)
        y = (x * z) * p
        y = y + ef * f(-2.12194440e-4)
        y = y - z * f(0.5)
        lg = (x + y) + ef * f(0.693359375)
        # cos(2 pi u2): quadrant of q = 4 u2, Cephes sinf/cosf at t = (q - rint q) pi/2
        q = u2 * f(4.0)
        n = np.rint(q)
        t = (q - n) * f(1.5707963267948966)
        zz = t * t
        sn = (((f(-1.9515295891E-4) * zz + f(8.3321608736E-3)) * zz + f(-1.6666654611E-1)) * zz) * t + t
        cs = ((((f(2.443315711809948E-5) * zz + f(-1.388731625493765E-3)) * zz + f(4.166664568298827E-2)) * zz) * zz
              - zz * f(0.5)) + f(1.0)
        k = n.astype(np.int32) & 3
        v = np.where((k & 1) == 1, sn, cs)
        v = np.where((k == 1) | (k == 2), -v, v)
        return (np.sqrt(f(-2.0) * lg) * v).astype(f)


def draw(kind, shape, a, b, stream, call, seed, iteration=0, f32=False):
    """jemc's rng_<kind> {stream a b} of `shape` (float64, or int64 for randint).
    f32: the draw of a float32 program (normals are then float32 Box-Muller)."""
    n = int(np.prod(shape)) if shape else 1
    w0, w1 = philox(n, iteration, stream, call, seed)
    if kind == "uniform":
        v = a + (b - a) * unit(w0)
    elif kind == "normal" and f32:
        v = a + b * normal_f32(w0, w1).astype(np.float64)
    elif kind == "normal":
        u1, u2 = unit(w0), unit(w1)
        # glibc's log and cos, element by element, as the runtime calls them
        v = np.array([a + b * (math.sqrt(-2.0 * math.log(p)) * math.cos(6.283185307179586 * q))
                      for p, q in zip(u1.tolist(), u2.tolist())], dtype=np.float64)
    elif kind == "randint":
        v = np.floor(a + (b - a) * unit(w0))
        v = np.minimum(v, b - 1).astype(np.int64)
    elif kind == "bernoulli":
        v = unit(w0) < a
    else:
        raise ValueError(kind)
    return v.reshape(shape)


_RNG = re.compile(r"rng_(\w+) \{stream=(\d+) a=(\S+) b=(\S+)\} : (\w+)\[([\d,]*)\]")


def read_draws(ir_text):
    """Every rng node of an IR dump: (kind, stream, a, b, shape, depth), depth 1 inside a loop body."""
    out = []
    depth = 0
    for line in ir_text.splitlines():
        if re.match(r"\s*body g\d+ \{", line):
            depth += 1
            continue
        if depth and re.match(r"\s*\}\s*$", line) and line.startswith(" " * 4):
            depth -= 1
            continue
        m = _RNG.search(line)
        if m:
            shape = [int(s) for s in m.group(6).split(",") if s]
            out.append((m.group(1), int(m.group(2)), float(m.group(3)), float(m.group(4)), shape, depth))
    return out


def train_step_streams(ir_text, batch):
    """The four draws of train_step: buffer indices, restart test, restart values, SGLD noise."""
    d = read_draws(ir_text)
    pick = {}
    for kind, stream, a, b, shape, depth in d:
        if kind == "randint" and depth == 0:
            key = "idx"
        elif kind == "uniform" and depth == 0 and a == 0 and b == 1 and shape[1:] == [1, 1, 1]:
            key = "restart"
        elif kind == "uniform" and depth == 0 and a == -1 and b == 1:
            key = "reinit"
        elif kind == "normal" and depth == 1 and a == 0 and b == 1:
            key = "noise"
        else:
            raise SystemExit("unexpected draw in train_step: rng_%s stream=%d a=%g b=%g %s" % (kind, stream, a, b, shape))
        if key in pick:
            raise SystemExit("two draws look like '%s' in train_step" % key)
        pick[key] = (stream, a, b, shape)
    missing = {"idx", "restart", "reinit", "noise"} - set(pick)
    if missing:
        raise SystemExit("train_step's IR lacks the draws %s" % sorted(missing))
    return pick


# --------------------------------------------------------------------------
# The iteration
# --------------------------------------------------------------------------

def lse(logits):
    return torch.logsumexp(logits, dim=1)


def sgld(model, x0, noises, sgld_lr, sgld_std, box):
    x = x0.clone()
    for eps in noises:
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(lse(model(xg)).sum(), xg)
        x = x.detach() + sgld_lr * g + sgld_std * eps
        if box:
            x = x.clamp(-1.0, 1.0)
    return x.detach()


def warm_lr(args, t):
    """Learning rate of Adam step t (1-based)."""
    if args.warmup <= 0:
        return args.lr
    it = t if args.warmup_convention == "jemc" else t - 1
    return args.lr * min(1.0, it / float(args.warmup))


def accuracy(logits, y):
    picked = logits.gather(1, y[:, None])[:, 0]
    return (picked >= logits.max(dim=1).values).to(logits.dtype).mean()


def iteration(args, model, opt, replay, x, y, t, call, streams):
    """One train_step (or train_step_ce) at Adam step t, Philox call `call`. Returns the outputs."""
    dt = x.dtype
    out = {}
    if args.program == "train_step":
        B = x.shape[0]
        s, a, b, shape = streams["idx"]
        idx = torch.from_numpy(draw("randint", shape, a, b, s, call, args.jemc_seed))
        s, a, b, shape = streams["restart"]
        restart = torch.from_numpy(draw("uniform", shape, a, b, s, call, args.jemc_seed)).to(dt) < args.reinit
        s, a, b, shape = streams["reinit"]
        fresh = torch.from_numpy(draw("uniform", shape, a, b, s, call, args.jemc_seed)).to(dt)
        x0 = torch.where(restart, fresh, replay[idx])
        s, a, b, shape = streams["noise"]
        noises = [torch.from_numpy(draw("normal", shape, a, b, s, call, args.jemc_seed, iteration=k)).to(dt)
                  for k in range(args.steps)]
        x_q = sgld(model, x0, noises, args.sgld_lr, args.sgld_std, args.sampler == "box")
        for i in range(B):                      # jemc: a repeated index, the later row wins
            replay[idx[i]] = x_q[i]
        out["_draws"] = {"idx": idx.tolist(), "restart": restart.flatten().tolist()}
        f_x = model(x)
        f_q = model(x_q)
        loss_ce = F.cross_entropy(f_x, y)
        e_x, e_q = -lse(f_x), -lse(f_q)
        loss_px = e_x.mean() - e_q.mean()
        loss = loss_ce + args.px_weight * loss_px + args.energy_reg * ((e_x * e_x).mean() + (e_q * e_q).mean())
        out.update(loss=loss, loss_ce=loss_ce, loss_px=loss_px, e_data=e_x.mean(), e_sample=e_q.mean(),
                   acc=accuracy(f_x, y))
    else:
        f_x = model(x)
        loss = F.cross_entropy(f_x, y)
        out.update(loss=loss, loss_ce=loss, acc=accuracy(f_x, y))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad * p.grad).sum() for p in model.parameters()))
    for group in opt.param_groups:
        group["lr"] = warm_lr(args, t)
    opt.step()
    out["_grad_norm"] = grad_norm.detach()
    return out


def state_tensors(model, opt, replay, step, grad_norm):
    ts = [(n, p.detach().clone()) for n, p in model.named_parameters()]
    for n, p in model.named_parameters():
        st = opt.state[p]
        ts.append(("opt.m." + n, st["exp_avg"].clone()))
        ts.append(("opt.v." + n, st["exp_avg_sq"].clone()))
    ts.append(("opt.step", torch.tensor(step, dtype=torch.int64)))
    ts.append(("opt.grad_norm", grad_norm.clone()))
    ts.append(("replay", replay.clone()))
    return ts


def run(args):
    dt = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    torch.manual_seed(args.seed)
    model = build_model(args)          # PyTorch's default init, in float32
    shape = [args.batch] + input_shape(args)
    x = torch.rand(shape) * 2 - 1
    y = torch.randint(args.classes, (args.batch,), dtype=torch.int64)
    replay = torch.rand([args.buffer] + input_shape(args)) * 2 - 1
    model = model.to(dt)
    x, replay = x.to(dt), replay.to(dt)
    os.makedirs(args.out, exist_ok=True)
    meta = {"model": args.model, "program": args.program, "dtype": args.dtype}
    write_safetensors(os.path.join(args.out, "state.safetensors"),
                      list(model.state_dict().items()) + [("replay", replay)], meta)
    write_safetensors(os.path.join(args.out, "inputs.safetensors"), [("x", x), ("y", y)], meta)

    streams = None
    if args.program == "train_step":
        with open(args.ir) as f:
            streams = train_step_streams(f.read(), args.batch)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    curve = {k: [] for k in ("loss", "loss_ce", "loss_px", "e_data", "e_sample", "acc")}
    draws = []
    for k in range(args.iters):
        out = iteration(args, model, opt, replay, x, y, k + 1, args.call + k, streams)
        for n in curve:
            if n in out:
                curve[n].append(float(out[n]))
        if "_draws" in out:
            draws.append(out["_draws"])
        if k == 0 or k == args.iters - 1:
            outs = [(n, v.detach().clone()) for n, v in out.items() if not n.startswith("_")]
            ts = outs + state_tensors(model, opt, replay, k + 1, out["_grad_norm"])
            names = ["expected.safetensors"] if k == 0 else []
            if k == args.iters - 1:
                names.append("expected_last.safetensors")
            for name in names:
                write_safetensors(os.path.join(args.out, name), ts, dict(meta, iters=k + 1))
    curve = {n: v for n, v in curve.items() if v}
    curve["draws"] = draws
    with open(os.path.join(args.out, "curve.json"), "w") as f:
        json.dump(curve, f)
    summary = {"iters": args.iters, "loss_first": curve["loss"][0], "loss_last": curve["loss"][-1]}
    if draws:
        summary["first_draws"] = draws[0]
    print(json.dumps(summary))


def draws_mode(args):
    """A program's draws from its IR dump: top-level draws at iteration 0, and the
    result of a one-draw sampler loop (x + draw, summed over its trips from 0).
    Prints them as JSON; with --out, writes DIR/draws.safetensors under the
    program's output names."""
    with open(args.draws) as f:
        text = f.read()
    res = draws_of(args, text, as_f32=False)
    print(json.dumps(res))
    if args.out:
        # float32 programs' normals are float32 Box-Muller: a second file for them
        draws_of(args, text, as_f32=True)


def draws_of(args, text, as_f32):
    """draws_mode for one precision; with --out, writes DIR/draws.safetensors
    (every draw float64: the interpreter's --precision f64) or
    DIR/draws_f32.safetensors (the graph's own types: --precision f32)."""
    trips = [int(t) for t in re.findall(r"trips=(\d+)", text)]
    node_of = {}
    res = []
    depth = 0
    for line in text.splitlines():
        if re.match(r"\s*body g\d+ \{", line):
            depth += 1
            continue
        if depth and re.match(r"\s*\}\s*$", line):
            depth -= 1
            continue
        m = _RNG.search(line)
        if not m:
            continue
        kind, stream, a, b = m.group(1), int(m.group(2)), float(m.group(3)), float(m.group(4))
        shape = [int(s) for s in m.group(6).split(",") if s]
        f32 = as_f32 and m.group(5) == "f32"       # a draw the graph declares float64 stays float64
        if depth == 0:
            v = draw(kind, shape, a, b, stream, args.call, args.jemc_seed, f32=f32)
            node_of[re.match(r"\s*%(\d+)", line).group(1)] = v
        else:
            v = np.zeros(shape)
            for it in range(trips[0]):
                v = v + draw(kind, shape, a, b, stream, args.call, args.jemc_seed, iteration=it, f32=f32)
            node_of["loop"] = v
        res.append({"kind": kind, "depth": depth, "values": np.asarray(v, dtype=np.float64).flatten().tolist()})
    if args.out:
        loop_outs = set(re.findall(r"%(\d+) = loop_out", text))
        ts = []
        for name, node in re.findall(r"output (\w+) = %(\d+)", text):
            v = node_of["loop"] if node in loop_outs else node_of[node]
            t = torch.from_numpy(np.asarray(v))
            ts.append((name, t.to(torch.int64) if v.dtype == np.int64 else t.to(torch.float64)))
        os.makedirs(args.out, exist_ok=True)
        write_safetensors(os.path.join(args.out, "draws_f32.safetensors" if as_f32 else "draws.safetensors"), ts)
    return res


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["mnist", "wrn"], default="mnist")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widen", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--program", choices=["train_step", "train_step_ce"], default="train_step")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="SGLD steps (sgld_steps)")
    ap.add_argument("--buffer", type=int, default=16, help="replay buffer entries (buffer_size)")
    ap.add_argument("--reinit", type=float, default=0.05)
    ap.add_argument("--sgld-lr", dest="sgld_lr", type=float, default=1.0)
    ap.add_argument("--sgld-std", dest="sgld_std", type=float, default=0.01)
    ap.add_argument("--sampler", choices=["box", "plain"], default="box",
                    help="box: clamp to [-1, 1] after each step (the shipped graphs' sgld_box); plain: JEM's")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--warmup-convention", dest="warmup_convention", choices=["jemc", "official"], default="jemc")
    ap.add_argument("--px-weight", dest="px_weight", type=float, default=1.0)
    ap.add_argument("--energy-reg", dest="energy_reg", type=float, default=0.0)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--seed", type=int, default=0, help="torch seed: weights, x, y, replay buffer")
    ap.add_argument("--jemc-seed", dest="jemc_seed", type=int, default=0, help="jemc's --seed (Philox key)")
    ap.add_argument("--call", type=int, default=0, help="Philox call of the first iteration")
    ap.add_argument("--ir", help="jemc compile GRAPH train_step --dump=ir (the draws' stream ids)")
    ap.add_argument("--draws", help="an IR dump: print its draws as JSON and exit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    args.hidden = []
    if args.draws is None:
        if args.out is None:
            ap.error("--out is required")
        if args.program == "train_step" and args.ir is None:
            ap.error("train_step needs --ir (jemc's IR dump of it, for the stream ids)")
        if args.iters < 1:
            ap.error("--iters must be >= 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(max(1, args.threads))
    if args.draws:
        draws_mode(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
