#!/usr/bin/python3
"""PyTorch reference for the JEM++ / SADA-JEM training iterations of
graphs/jem_wrn28.graph (train_step_jempp, train_step_sada) with -D norm=1.

The model is the official Wide-ResNet with --norm batch (sndnyang/JEMPP
models/wideresnet_yopo.py; jem-spec.md section 1): pre-activation blocks
h = conv1(lrelu(bn1(x))), h = conv2(lrelu(bn2(h))) + shortcut(x), head
lrelu(bn1(h)) -> avg_pool 8 -> linear, every BatchNorm2d(momentum=0.9, eps=1e-5).

One iteration as jemc defines it (docs/samplers.md "Recipes"):
  idx ~ randint(0, buffer_size, [B]); restart_i = U(0,1) < reinit
  x0  = where(restart, U(-1,1), replay[idx])
  JEM++: PYLD-M-N as the official sample_q runs it: per outer step
         g = d/dx sum LSE f(x) and p = d sum LSE / d conv1(x), then N inner steps
         x = clamp(x + lr * clamp(d/dx sum(conv1(x) * p), -1, 1), -1, 1) by
         autograd (not collapsed); SADA-JEM: x = clamp(x + lr clamp(g, -1, 1), -1, 1).
         The model samples in train() (batch statistics of the chains) WITHOUT
         updating its running statistics (the official code's sampler forwards
         do update them; jemc's sampler cannot write state): the norms run with
         track_running_stats False while sampling.
  replay[idx] = x_q (a repeated index: the later row wins)
  train(): f(x_q), then f(x) (each updates the running statistics, momentum 0.9)
  loss = CE(f(x), y) + px_weight * (mean E(x) - mean E(x_q))
  backward; torch.optim.SGD(momentum 0.9, weight_decay) at jemc's warm-up
  lr_t = lr * min(1, t / warmup), t = 1 for the first step; with --sam-rho
  (SADA-JEM) ASAM first: perturb, the loss again on the same x, y, x_q with
  the running statistics frozen, restore, the SGD step with that gradient.
train_step_ce (the classifier step, `train --baseline` / `--pretrain`): train(),
  loss = CE(f(x), y) (one forward, updating the running statistics), backward,
  torch.optim.Adam(betas=(0.9, 0.999), eps=1e-8) at the same warm-up; no draws.

Random draws are jemc's (torch_iteration.py's Philox, stream ids from the IR).
Writes to --out: state.safetensors (the starting state; the norms' weights,
biases and running statistics are perturbed away from PyTorch's init so that
every one matters), inputs.safetensors (x, y), expected_K.safetensors after
iteration K (outputs, every parameter and buffer, OPT.momentum.* (Adam:
OPT.m.*, OPT.v.*), OPT.grad_norm, replay), state_K.safetensors (the model's state and replay after it) and eval_K.safetensors: logits and energy of x in eval() (running
statistics) after iteration K.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import write_safetensors  # noqa: E402
from torch_iteration import draw, read_draws  # noqa: E402


class WideBasic(nn.Module):
    def __init__(self, cin, cout, stride, slope):
        super().__init__()
        self.slope = slope
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.9)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.9)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=True))

    def forward(self, x):
        h = self.conv1(F.leaky_relu(self.bn1(x), self.slope))
        h = self.conv2(F.leaky_relu(self.bn2(h), self.slope))
        return h + self.shortcut(x)


class WRN(nn.Module):
    def __init__(self, depth, widen, classes, slope=0.2):
        super().__init__()
        n, k = (depth - 4) // 6, widen
        self.slope = slope
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=True)
        cin = 16
        for li, (cout, stride) in enumerate([(16 * k, 1), (32 * k, 2), (64 * k, 2)]):
            blocks = []
            for i in range(n):
                blocks.append(WideBasic(cin, cout, stride if i == 0 else 1, slope))
                cin = cout
            setattr(self, "layer%d" % (li + 1), nn.Sequential(*blocks))
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.9)
        self.linear = nn.Linear(cin, classes)

    def forward(self, x, stem=None):
        h = self.conv1(x)
        if stem is not None:
            stem.append(h)
        h = self.layer3(self.layer2(self.layer1(h)))
        h = F.avg_pool2d(F.leaky_relu(self.bn1(h), self.slope), 8)
        return self.linear(h.flatten(1))


def set_mode(model, mode):
    """eval: running statistics; train: batch statistics, running ones updated;
    batch: batch statistics, nothing updated (jemc's bn_batch, inside samplers)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train(mode != "eval")
            m.track_running_stats = mode != "batch"


def lse(logits):
    return torch.logsumexp(logits, dim=1)


def pyld(model, x0, n_steps, in_steps, lr, eps):
    """JEM++'s sample_q loop (sgld_lr 0, std 0): the Hamiltonian inner ascent by autograd."""
    x = x0.clone()
    for _ in range(n_steps):
        xk = x.clone().requires_grad_(True)
        stem = []
        e = lse(model(xk, stem)).sum()
        stem[0].retain_grad()
        e.backward()
        p = stem[0].grad.detach()
        model.zero_grad(set_to_none=True)
        tmp = xk.detach()
        for _ in range(in_steps):
            tmp = tmp.clone().requires_grad_(True)
            H = (model.conv1(tmp) * p).sum()
            eta = torch.autograd.grad(H, [tmp])[0]
            tmp = torch.clamp(tmp.detach() + torch.clamp(eta, -eps, eps) * lr, -1, 1)
        x = tmp.detach()
    return x


def sada(model, x0, n_steps, lr):
    x = x0.clone()
    for _ in range(n_steps):
        xk = x.clone().requires_grad_(True)
        g = torch.autograd.grad(lse(model(xk)).sum(), [xk])[0]
        x = torch.clamp(xk.detach() + lr * torch.clamp(g, -1, 1), -1, 1)
    return x


def streams(ir_text, program):
    pick = {}
    for kind, stream, a, b, shape, depth in read_draws(ir_text):
        if depth:
            raise SystemExit("a draw inside a sampler (std must be 0): rng_%s" % kind)
        key = {"randint": "idx"}.get(kind) or ("restart" if a == 0 and b == 1 else "fresh" if a == -1 else None)
        if key is None or key in pick:
            raise SystemExit("unexpected draw rng_%s stream=%d a=%g b=%g" % (kind, stream, a, b))
        pick[key] = (kind, stream, a, b, shape)
    if program == "train_step_ce":          # the classifier step draws nothing
        if pick:
            raise SystemExit("train_step_ce draws %s" % sorted(pick))
        return pick
    if set(pick) != {"idx", "restart", "fresh"}:
        raise SystemExit("the IR lacks draws: %s" % sorted({"idx", "restart", "fresh"} - set(pick)))
    return pick


def accuracy(logits, y):
    picked = logits.gather(1, y[:, None])[:, 0]
    return (picked >= logits.max(dim=1).values).to(logits.dtype).mean()


def iteration_ce(args, model, opt, x, y, t):
    """train_step_ce: cross-entropy in train() and Adam (no draws, no chains)."""
    set_mode(model, "train")
    model.zero_grad(set_to_none=True)
    f_x = model(x)
    loss = F.cross_entropy(f_x, y)
    out = dict(loss=loss, loss_ce=loss, acc=accuracy(f_x, y))
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads):
        p.grad = g.clone()
    for g in opt.param_groups:
        g["lr"] = args.lr * min(1.0, t / args.warmup) if args.warmup > 0 else args.lr
    opt.step()
    return out, torch.sqrt(sum((g * g).sum() for g in grads)).detach(), {}


def iteration(args, model, opt, replay, x, y, t, call, st):
    if args.program == "train_step_ce":
        return iteration_ce(args, model, opt, x, y, t)
    dt = x.dtype
    d = {k: torch.from_numpy(draw(v[0], v[4], v[2], v[3], v[1], call, args.jemc_seed)) for k, v in st.items()}
    restart = d["restart"].to(dt) < args.reinit
    x0 = torch.where(restart, d["fresh"].to(dt), replay[d["idx"]])
    set_mode(model, "batch")
    if args.program == "train_step_jempp":
        x_q = pyld(model, x0, args.steps, args.inner, args.sample_lr, 1.0)
    else:
        x_q = sada(model, x0, args.steps, args.sample_lr)
    for i in range(x.shape[0]):
        replay[d["idx"][i]] = x_q[i]
    set_mode(model, "train")
    model.zero_grad(set_to_none=True)
    f_q = model(x_q)
    f_x = model(x)
    e_x, e_q = -lse(f_x), -lse(f_q)
    loss_ce = F.cross_entropy(f_x, y)
    loss_px = e_x.mean() - e_q.mean()
    loss = loss_ce + args.px_weight * loss_px
    out = dict(loss=loss, loss_ce=loss_ce, loss_px=loss_px, e_data=e_x.mean(), e_sample=e_q.mean(), acc=accuracy(f_x, y))
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params)
    if args.sam_rho > 0:
        # ASAM (SADA-JEM): e_p = p^2 g rho / (|| |p| g || + 1e-12), the loss again at
        # p + e_p on the same x, y, x_q with the running statistics frozen, restore
        norm = torch.norm(torch.stack([(p.abs() * g).norm(p=2) for p, g in zip(params, grads)]), p=2)
        scale = args.sam_rho / (norm + 1e-12)
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(p * p * g * scale)
        set_mode(model, "batch")
        f_q2, f_x2 = model(x_q), model(x)
        loss2 = F.cross_entropy(f_x2, y) + args.px_weight * (lse(f_q2).mean() - lse(f_x2).mean())
        grads = torch.autograd.grad(loss2, params)
        with torch.no_grad():
            for p, sv in zip(params, saved):
                p.copy_(sv)
    for p, g in zip(params, grads):
        p.grad = g.clone()
    grad_norm = torch.sqrt(sum((g * g).sum() for g in grads))
    for g in opt.param_groups:
        g["lr"] = args.lr * min(1.0, t / args.warmup) if args.warmup > 0 else args.lr
    opt.step()
    info = {"idx": d["idx"].tolist(), "restart": restart.flatten().tolist(),
            "x_q_range": [float(x_q.min()), float(x_q.max())]}
    return out, grad_norm.detach(), info


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", default="train_step_jempp", choices=["train_step_jempp", "train_step_sada", "train_step_ce"])
    ap.add_argument("--ir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widen", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--buffer", type=int, default=16)
    ap.add_argument("--reinit", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--sample-lr", type=float, default=0.2)
    ap.add_argument("--px-weight", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--opt", default="opt_jempp")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--sam-rho", type=float, default=0.0, help="train_step_sada's ASAM radius (0: plain SGD)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jemc-seed", type=int, default=0)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                    help="float32: how far PyTorch's own float32 lands from float64 (conditioning)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    model = WRN(args.depth, args.widen, args.classes)
    with torch.no_grad():              # norms away from their init, float32 numbers
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c) + 0.5)
                m.bias.copy_(torch.rand(c) * 0.4 - 0.2)
                m.running_mean.copy_(torch.rand(c) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(c) + 0.5)
                m.num_batches_tracked.fill_(3)
    x = torch.rand([args.batch, 3, 32, 32]) * 2 - 1
    y = torch.randint(args.classes, (args.batch,), dtype=torch.int64)
    replay = torch.rand([args.buffer, 3, 32, 32]) * 2 - 1
    dt = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    model = model.to(dt)
    x, replay = x.to(dt), replay.to(dt)
    os.makedirs(args.out, exist_ok=True)
    meta = {"program": args.program}
    write_safetensors(os.path.join(args.out, "state.safetensors"),
                      list(model.state_dict().items()) + [("replay", replay)], meta)
    write_safetensors(os.path.join(args.out, "inputs.safetensors"), [("x", x), ("y", y)], meta)
    with open(args.ir) as f:
        st = streams(f.read(), args.program)
    if args.program == "train_step_ce":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.wd)
    infos = []
    for k in range(args.iters):
        out, gn, info = iteration(args, model, opt, replay, x, y, k + 1, k, st)
        infos.append(info)
        ts = [(n, v.detach().clone()) for n, v in out.items()]
        ts += [(n, v.detach().clone()) for n, v in model.state_dict().items()]
        for n, p in model.named_parameters():
            if args.program == "train_step_ce":
                ts.append(("%s.m.%s" % (args.opt, n), opt.state[p]["exp_avg"].clone()))
                ts.append(("%s.v.%s" % (args.opt, n), opt.state[p]["exp_avg_sq"].clone()))
            else:
                ts.append(("%s.momentum.%s" % (args.opt, n), opt.state[p]["momentum_buffer"].clone()))
        ts.append(("%s.grad_norm" % args.opt, gn.clone()))
        ts.append(("%s.step" % args.opt, torch.tensor(k + 1, dtype=torch.int64)))
        ts.append(("replay", replay.clone()))
        write_safetensors(os.path.join(args.out, "expected_%d.safetensors" % (k + 1)), ts, meta)
        write_safetensors(os.path.join(args.out, "state_%d.safetensors" % (k + 1)),
                          list(model.state_dict().items()) + [("replay", replay)], meta)
        set_mode(model, "eval")
        with torch.no_grad():
            lg = model(x)
        write_safetensors(os.path.join(args.out, "eval_%d.safetensors" % (k + 1)),
                          [("logits", lg), ("energy", -lse(lg))], meta)
    print(json.dumps({"draws": infos, "loss": [float(v) for v in [out["loss"]]]}))


if __name__ == "__main__":
    main()
