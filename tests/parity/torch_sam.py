#!/usr/bin/python3
"""PyTorch reference for `minimize` with sam_rho (tests/t_sam.c, tests/parity/sam.graph).

SAM/ASAM as SADA-JEM's training step uses it (jem-spec.md 4.4; the SAM
optimizer of Foret et al. with ASAM's adaptive scaling of Kwon et al.), written
here from its semantics:
  first step:  loss.backward(); norm = || ( |p| if adaptive else 1 ) * g_p ||_2
               over all parameters; e_p = (p^2 if adaptive else 1) * g_p *
               rho / (norm + 1e-12); p += e_p
  second pass: batch-norm running statistics frozen (SADA sets the momentum of
               every BatchNorm to 0), the same loss on the SAME x, y, x_q,
               backward
  second step: p -= e_p (restore), then the base optimizer's step with the
               second pass's gradients: torch.optim.SGD(lr .1, momentum .9,
               weight_decay 5e-4).
One difference is deliberate and documented (language 13.3): PyTorch's
BatchNorm counts num_batches_tracked on the frozen second pass too; jemc's
second pass only recomputes the loss, so the counter counts first passes. The
reference restores the counter after the second pass. (It is unused with a
fixed momentum.)

The model is sam.graph's f: conv 3x3 (2 -> 4) -> ReLU -> BatchNorm2d
(training) -> flatten -> Linear(64 -> 3); the loss cross_entropy(f(x), y) +
mean(E(x)) - mean(E(x_q)), E = -logsumexp f, f called once on x and once on x_q.

Writes to --out:
  state.safetensors           the start (f32; batch-norm affine parameters
                              randomised so that ASAM's |p| matters)
  in{k}.safetensors           step k's x, y, x_q (k = 1..steps)
  want_{mode}_{k}.safetensors float64, after step k of mode asam / sam / sgd:
                              `loss` (the first pass's), every parameter and
                              buffer, {opt}.momentum.{param}, {opt}.step and
                              {opt}.grad_norm (|| the gradient the step used ||)
and prints JSON: how far ASAM and SAM moved the parameters from plain SGD's.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import write_safetensors  # noqa: E402


class Net(nn.Module):
    def __init__(self, channels, hidden, side, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc = nn.Linear(hidden * side * side, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.bn1(F.relu(self.conv1(x))), 1))


def jem_like(model, x, y, x_q):
    lx = model(x)
    e_x = -torch.logsumexp(lx, dim=1)
    e_q = -torch.logsumexp(model(x_q), dim=1)
    return F.cross_entropy(lx, y) + e_x.mean() - e_q.mean()


def sam_step(model, params, opt, batch, rho, adaptive):
    """one SAM/ASAM step (rho > 0) or a plain base step (rho == 0); returns
    the first pass's loss and the norm of the gradient the step used"""
    loss = jem_like(model, *batch)
    grads = torch.autograd.grad(loss, params)
    if rho > 0:
        norm = torch.norm(torch.stack([((p.abs() if adaptive else 1.0) * g).norm(p=2)
                                       for p, g in zip(params, grads)]), p=2)
        scale = rho / (norm + 1e-12)
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_((p * p if adaptive else 1.0) * g * scale)
        bn = model.bn1
        tracked = bn.num_batches_tracked.clone()
        bn.momentum = 0.0                                  # SADA: running statistics frozen
        loss2 = jem_like(model, *batch)
        bn.momentum = 0.1
        bn.num_batches_tracked.copy_(tracked)              # jemc counts first passes only (docstring)
        grads = torch.autograd.grad(loss2, params)
        with torch.no_grad():
            for p, s in zip(params, saved):                # restore
                p.copy_(s)
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()
    gnorm = torch.sqrt(sum((g * g).sum() for g in grads))
    return loss.detach(), gnorm.detach()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rho", type=float, default=2.0)
    ap.add_argument("--rho-plain", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    channels, hidden, side, classes = 2, 4, 4, 3
    net = Net(channels, hidden, side, classes)
    with torch.no_grad():
        net.bn1.weight.copy_(1 + 0.3 * torch.randn(hidden))
        net.bn1.bias.copy_(0.2 * torch.randn(hidden))
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    write_safetensors(os.path.join(args.out, "state.safetensors"), list(start.items()))
    batches = []
    for k in range(1, args.steps + 1):
        x = torch.randn(args.batch, channels, side, side)
        y = torch.randint(0, classes, (args.batch,))
        x_q = torch.rand(args.batch, channels, side, side) * 2 - 1
        write_safetensors(os.path.join(args.out, "in%d.safetensors" % k), [("x", x), ("y", y), ("x_q", x_q)])
        batches.append((x.double(), y, x_q.double()))
    final = {}
    for mode, rho, adaptive in (("asam", args.rho, True), ("sam", args.rho_plain, False), ("sgd", 0.0, False)):
        model = Net(channels, hidden, side, classes).double()
        model.load_state_dict(start)
        model.train()
        names = [n for n, _ in model.named_parameters()]
        params = [p for _, p in model.named_parameters()]
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
        oname = "opt_" + mode
        for k, batch in enumerate(batches, 1):
            loss, gnorm = sam_step(model, params, opt, batch, rho, adaptive)
            out = [("loss", loss)]
            out += [(n, t.detach()) for n, t in model.state_dict().items()]
            out += [("%s.momentum.%s" % (oname, n), opt.state[p]["momentum_buffer"]) for n, p in zip(names, params)]
            out += [("%s.step" % oname, torch.tensor(k, dtype=torch.int64)), ("%s.grad_norm" % oname, gnorm)]
            write_safetensors(os.path.join(args.out, "want_%s_%d.safetensors" % (mode, k)), out)
        final[mode] = {n: p.detach().clone() for n, p in zip(names, params)}

    def moved(a, b):
        return max(float((final[a][n] - final[b][n]).abs().max() / final[b][n].abs().max()) for n in final[b])
    print(json.dumps({"asam_vs_sgd": moved("asam", "sgd"), "sam_vs_sgd": moved("sam", "sgd")}))


if __name__ == "__main__":
    main()
