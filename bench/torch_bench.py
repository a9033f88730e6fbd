#!/usr/bin/python3
"""PyTorch side of bench/run.sh: times the same programs jemc compiles.

  logits     f(x), no gradient
  sgld_grad  d/dx sum_i logsumexp f(x_i)       (one SGLD direction)
  jem_loss   CE(f(x), y) + mean E(x) - mean E(x_q), gradients of every parameter

Same models, shapes and thread count as the jemc run; prints one line per
program: "<program> <milliseconds per call>" (median of the timed calls).
Run with Debian's python3-torch: /usr/bin/python3 bench/torch_bench.py ...
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "parity"))
import torch_ref  # noqa: E402  (the same model definitions the parity tests use)


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mnist", "wrn"], required=True)
    ap.add_argument("--depth", type=int, default=28)
    ap.add_argument("--widen", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--programs", default="logits,sgld_grad,jem_loss")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    args = argparse.Namespace(model=a.model, depth=a.depth, widen=a.widen, classes=a.classes, mlp_in=8, hidden=[32])
    model = torch_ref.build_model(args).float()
    model.eval()
    shape = [a.batch] + torch_ref.input_shape(args)
    x = torch.rand(shape) * 2 - 1
    x_q = torch.rand(shape) * 2 - 1
    y = torch.randint(a.classes, (a.batch,))
    params = list(model.parameters())

    def logits():
        with torch.no_grad():
            model(x)

    def sgld_grad():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(torch.logsumexp(model(xg), dim=1).sum(), xg)

    def jem_loss():
        f_x, f_q = model(x), model(x_q)
        loss = F.cross_entropy(f_x, y) + (-torch.logsumexp(f_x, 1)).mean() - (-torch.logsumexp(f_q, 1)).mean()
        torch.autograd.grad(loss, params)

    # One whole JEM training iteration as the official code does it: draw chains
    # from a 10,000-entry replay buffer (5% restarted from noise), 20 SGLD steps
    # (step 1, noise 0.01), write them back, Adam step on CE + E(x) - E(x_q).
    buf = torch.rand([10000] + shape[1:]) * 2 - 1
    opt = torch.optim.Adam(params, lr=1e-4)

    def train_step():
        idx = torch.randint(0, 10000, (a.batch,))
        restart = (torch.rand(a.batch, *([1] * (len(shape) - 1))) < 0.05).float()
        x_k = (restart * (torch.rand(shape) * 2 - 1) + (1 - restart) * buf[idx]).requires_grad_(True)
        for _ in range(20):
            g = torch.autograd.grad(torch.logsumexp(model(x_k), 1).sum(), [x_k])[0]
            x_k = (x_k.data + g + 0.01 * torch.randn_like(x_k)).requires_grad_(True)
        x_q = x_k.detach()
        buf[idx] = x_q
        f_x, f_q = model(x), model(x_q)
        loss = F.cross_entropy(f_x, y) + (-torch.logsumexp(f_x, 1)).mean() - (-torch.logsumexp(f_q, 1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    progs = {"logits": logits, "sgld_grad": sgld_grad, "jem_loss": jem_loss, "train_step": train_step}
    for name in a.programs.split(","):
        print("%s %.3f" % (name, timed(progs[name], 2, a.reps)), flush=True)


if __name__ == "__main__":
    main()
