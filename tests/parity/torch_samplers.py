#!/usr/bin/python3
"""PyTorch references for graphs/lib/samplers.graph (tests/t_samplers.c).

--mode parity: the official loops, written from the official code, on
tests/parity/samplers.graph's MLP energy E(x) = -logsumexp f(x) (f: fc1, leaky
ReLU 0.2, out; PyTorch's nn.Linear init times --gain):
  pyld       JEM++ train_jempp.py sample_q: per outer step the gradient g and
             p = d sum LSE / d fc1(x); the inner loop ascends the Hamiltonian
             H = sum(fc1(x) * p) by autograd at every inner step (NOT
             collapsed: jemc's collapse to g is what this checks), clipped to
             [-eps, eps], times pyld_lr, x clamped to [-1, 1]; then std * noise
  sada_sgld  SADA-JEM train_sadajem.py sample_q
  mala       VERA utils/hmc.py MALA (with distributions.Normal log-densities,
             normalisers included), and mala_adapt: VERA's step rule after
             every step
  hmc        VERA utils/hmc.py get_ebm_samples (one move per outer step)
The draws are jemc's Philox (torch_iteration.draw) at the stream ids of
`jemc compile tests/parity/samplers.graph PROGRAM --dump=ir` (--ir-dir DIR holds
DIR/PROGRAM.ir), iteration k for a sampler's step k, call 0, --jemc-seed.
Writes DIR/state.safetensors (the MLP, f32), DIR/inputs.safetensors (x, eta0)
and DIR/expected.safetensors (every output of the five programs, float64).

--mode gauss: double-precision Monte Carlo references on E(x) = |x|^2 / (2 s^2)
started from the target: the mean acceptance of one MALA step (--eta) and of
one HMC move (--eps, --leapfrog), and of MALA at --eta-adapted if given;
printed as JSON with their standard errors.
"""
import argparse
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.distributions as distributions
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import write_safetensors  # noqa: E402
from torch_iteration import draw, read_draws  # noqa: E402

DT = torch.float64


class Mlp(nn.Module):
    """f of tests/parity/samplers.graph: fc1 (the stem JEM++'s PYLD hooks), out"""

    def __init__(self, features, hidden, classes):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x, stem=None):
        h = self.fc1(x) if stem is None else stem
        return self.out(F.leaky_relu(h, 0.2))


def lse(f, x):
    return torch.logsumexp(f(x), dim=1)


# --------------------------------------------------------------------------
# the official loops
# --------------------------------------------------------------------------

def pyld(f, x0, n_steps, in_steps, pyld_lr, eps, std, noises):
    """train_jempp.py sample_q with sgld_lr 0 (its script), unconditional"""
    x_k = x0.clone().requires_grad_(True)
    for it in range(n_steps):
        stem = f.fc1(x_k)                      # f.f.layer_one_out
        e_x = torch.logsumexp(f(x_k, stem=stem), dim=1).sum()
        _, p = torch.autograd.grad(e_x, [x_k, stem])
        p = p.detach()
        tmp_inp = x_k.data
        tmp_inp.requires_grad_()
        for _ in range(in_steps):
            H = torch.sum(f.fc1(tmp_inp) * p)  # utils.py Hamiltonian(layer_one)
            eta_grad = torch.autograd.grad(H, [tmp_inp], only_inputs=True, retain_graph=True)[0]
            eta_step = torch.clamp(eta_grad, -eps, eps) * pyld_lr
            tmp_inp.data = tmp_inp.data + eta_step
            tmp_inp = torch.clamp(tmp_inp, -1, 1)
        x_k.data = tmp_inp.data
        if std > 0.0:
            x_k.data += std * noises[it]
    return x_k.detach()


def sada(f, x0, n_steps, sgld_lr, std, noises):
    """train_sadajem.py sample_q"""
    x_k = x0.clone().requires_grad_(True)
    for it in range(n_steps):
        eta = torch.autograd.grad(lse(f, x_k).sum(), [x_k], retain_graph=True)[0]
        tmp_inp = x_k + torch.clamp(eta, -1, 1) * sgld_lr
        x_k.data = tmp_inp.data
        if std > 0.0:
            x_k.data += std * noises[it]
        x_k.data = torch.clamp(x_k.data, -1, 1)
    return x_k.detach()


def mala(logp_fn, x, step_lr, noise, unif):
    """utils/hmc.py MALA on one variable, torch.randn_like -> noise, torch.rand_like -> unif"""
    x = x.detach().requires_grad_(True)
    step_std = (2 * step_lr) ** .5
    logp_vars = logp_fn(x)
    g = torch.autograd.grad(logp_vars.sum(), [x])[0]
    update_mu = x + step_lr * g
    update = (update_mu + step_std * noise).detach().requires_grad_(True)
    logp_update = logp_fn(update)
    rg = torch.autograd.grad(logp_update.sum(), [update])[0]
    reverse_mu = update + step_lr * rg

    def update_logp(u, u_mu, std):
        return distributions.Normal(u_mu, std).log_prob(u).flatten(start_dim=1).sum(1)

    logp_forward = update_logp(update, update_mu, step_std)
    logp_backward = update_logp(x, reverse_mu, step_std)
    logp_accept = logp_update + logp_backward - logp_vars - logp_forward
    accept = (unif < logp_accept.exp()).to(x.dtype)
    nxt = accept[:, None] * update + (1 - accept[:, None]) * x
    return nxt.detach(), accept.detach(), logp_accept.detach()


def hmc_move(logp_fn, current_x, stepsize, leapfrog_steps, p, unif):
    """one move of utils/hmc.py get_ebm_samples: p = torch.randn_like, unif = torch.rand"""
    def helper(x):
        x = x.clone().detach().requires_grad_(True)
        lv = logp_fn(x)
        return lv.detach(), torch.autograd.grad(lv.sum(), [x])[0]

    bsz = current_x.size(0)
    x = current_x
    current_p = p
    logjoint_vect, grad_logjoint = helper(current_x)
    current_U = -logjoint_vect.view(-1, 1)
    grad_U = -grad_logjoint
    p = p - stepsize * grad_U / 2.0
    for j in range(leapfrog_steps):
        x = x + stepsize * p
        if j < leapfrog_steps - 1:
            logjoint_vect, grad_logjoint = helper(x)
            grad_U = -grad_logjoint
            p = p - stepsize * grad_U
    logjoint_vect, grad_logjoint = helper(x)
    proposed_U = -logjoint_vect.view(-1, 1)
    grad_U = -grad_logjoint
    p = p - stepsize * grad_U / 2.0
    p = -p
    current_K = (0.5 * (current_p ** 2).flatten(start_dim=1).sum(dim=1)).view(-1, 1)
    proposed_K = (0.5 * (p ** 2).flatten(start_dim=1).sum(dim=1)).view(-1, 1)
    unif = unif.view(-1, 1)
    accept = unif.lt(torch.exp(current_U - proposed_U + current_K - proposed_K))
    accept = accept.to(DT).view(bsz)
    nxt = current_x.clone()
    ind = accept.nonzero().flatten()
    nxt[ind, :] = x[ind, :]
    return nxt.detach(), accept


# --------------------------------------------------------------------------
# jemc's draws
# --------------------------------------------------------------------------

def program_draws(ir_dir, program):
    """(loop draws, top-level draws) of a program's IR, each [(kind, stream, a, b, shape)]"""
    with open(os.path.join(ir_dir, program + ".ir")) as fh:
        text = fh.read()
    m = re.search(r"program %s\(" % program, text)
    if not m:
        raise SystemExit("%s: no program %s in the IR" % (ir_dir, program))
    d = read_draws(text[m.start():])
    return [x[:5] for x in d if x[5] >= 1], [x[:5] for x in d if x[5] == 0]


def expect(draws, kinds, what):
    got = [d[0] for d in draws]
    if got != kinds:
        raise SystemExit("%s: expected the draws %s, the IR has %s" % (what, kinds, got))
    return draws


def sample(d, it, seed):
    kind, stream, a, b, shape = d
    return torch.from_numpy(draw(kind, shape, a, b, stream, 0, seed, iteration=it)).to(DT)


def parity(args):
    torch.manual_seed(args.seed)
    f = Mlp(args.features, args.hidden, args.classes)
    with torch.no_grad():
        for prm in f.parameters():
            prm.mul_(args.gain)
    x = torch.rand(args.batch, args.features) * 2 - 1
    state = [(n, p.detach().clone().float()) for n, p in f.named_parameters()]
    f = f.to(DT)
    x = x.to(DT)
    logp = lambda v: lse(f, v)  # noqa: E731
    seed, K = args.jemc_seed, args.steps
    out = []

    # pyld_run: the first loop draws its noise, the second (std 0) none
    loop, top = program_draws(args.ir_dir, "pyld_run")
    expect(loop, ["normal"], "pyld_run")
    noises = [sample(loop[0], k, seed) for k in range(K)]
    out.append(("x_pyld", pyld(f, x, K, args.inner, args.pyld_lr, 1.0, args.pyld_std, noises)))
    out.append(("x_pyld0", pyld(f, x, K, args.inner, args.pyld_lr, 1.0, 0.0, None)))

    loop, top = program_draws(args.ir_dir, "sada_run")
    expect(loop, ["normal"], "sada_run")
    noises = [sample(loop[0], k, seed) for k in range(K)]
    out.append(("x_sada", sada(f, x, K, args.sada_lr, args.sada_std, noises)))
    out.append(("x_sada0", sada(f, x, K, args.sada_lr, 0.0, None)))

    loop, top = program_draws(args.ir_dir, "mala_run")
    expect(loop, ["normal", "uniform"], "mala_run's loop")
    expect(top, ["normal", "uniform"], "mala_run's step")
    xm = x
    for k in range(K):
        xm = mala(logp, xm, args.eta, sample(loop[0], k, seed), sample(loop[1], k, seed))[0]
    out.append(("x_mala", xm))
    x1, acc, log_a = mala(logp, x, args.eta, sample(top[0], 0, seed), sample(top[1], 0, seed))
    out += [("mala1_x", x1), ("mala1_accept", acc), ("mala1_log_a", log_a)]
    mala_accept = float(acc.mean())

    loop, _ = program_draws(args.ir_dir, "mala_adapt_run")
    expect(loop, ["normal", "uniform"], "mala_adapt_run")
    # eta0 is an f32 input: jemc starts from its float32 value
    xa, eta, count = x, float(torch.tensor(args.eta0, dtype=torch.float32)), torch.zeros(args.batch, dtype=DT)
    etas = []
    for k in range(K):
        xa, acc, _ = mala(logp, xa, eta, sample(loop[0], k, seed), sample(loop[1], k, seed))
        count = count + acc
        eta = eta + args.rate * (acc.mean() - args.target) * eta   # VERA's rule, every step
        etas.append(float(eta))
    out += [("x_adapt", xa), ("eta_adapt", torch.tensor(float(eta), dtype=DT)), ("accepts_adapt", count)]

    loop, top = program_draws(args.ir_dir, "hmc_run")
    expect(loop, ["normal", "uniform"], "hmc_run's loop")
    expect(top, ["normal", "uniform"], "hmc_run's move")
    xh = x
    for k in range(K):
        xh = hmc_move(logp, xh, args.eps, args.leapfrog, sample(loop[0], k, seed), sample(loop[1], k, seed))[0]
    out.append(("x_hmc", xh))
    x1, acc = hmc_move(logp, x, args.eps, args.leapfrog, sample(top[0], 0, seed), sample(top[1], 0, seed))
    out += [("hmc1_x", x1), ("hmc1_accept", acc)]
    hmc_accept = float(acc.mean())

    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "state.safetensors"), state)
    write_safetensors(os.path.join(args.out, "inputs.safetensors"),
                      [("x", x.float()), ("eta0", torch.tensor(args.eta0, dtype=torch.float32))])
    write_safetensors(os.path.join(args.out, "expected.safetensors"), out)
    xg = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(lse(f, xg).sum(), [xg])[0]
    print(json.dumps({
        "mala_accept": mala_accept, "hmc_accept": hmc_accept, "etas": etas,
        # the share of |g| > 1, where SADA's and PYLD's gradient clip engages
        "clipped": float((grad.abs() > 1).to(DT).mean()),
        "pyld_outside": float((out[0][1].abs() > 1).to(DT).mean()),
    }))


# --------------------------------------------------------------------------
# --mode gauss
# --------------------------------------------------------------------------

def gauss_mala_accept(rng, n, d, s, eta):
    x = s * rng.standard_normal((n, d))
    g = lambda v: -v / s ** 2  # noqa: E731
    lp = lambda v: -0.5 * (v * v).sum(1) / s ** 2  # noqa: E731
    mu = x + eta * g(x)
    u = mu + math.sqrt(2 * eta) * rng.standard_normal((n, d))
    back = u + eta * g(u)
    la = lp(u) - lp(x) + (((u - mu) ** 2).sum(1) - ((x - back) ** 2).sum(1)) / (4 * eta)
    return np.minimum(1.0, np.exp(la))   # E[accept | x, u]: a smaller variance than 0/1 draws


def gauss_hmc_accept(rng, n, d, s, eps, leap):
    gU = lambda v: v / s ** 2  # noqa: E731
    U = lambda v: 0.5 * (v * v).sum(1) / s ** 2  # noqa: E731
    x = s * rng.standard_normal((n, d))
    p0 = rng.standard_normal((n, d))
    p = p0 - eps * gU(x) / 2
    y = x
    for j in range(leap):
        y = y + eps * p
        if j < leap - 1:
            p = p - eps * gU(y)
    p = p - eps * gU(y) / 2
    la = U(x) - U(y) + 0.5 * (p0 ** 2).sum(1) - 0.5 * (p ** 2).sum(1)
    return np.minimum(1.0, np.exp(la))


def gauss(args):
    rng = np.random.default_rng(args.seed)
    res = {}
    cases = [("mala", lambda n: gauss_mala_accept(rng, n, args.dims, args.s, args.eta)),
             ("hmc", lambda n: gauss_hmc_accept(rng, n, args.dims, args.s, args.eps, args.leapfrog))]
    if args.eta_adapted is not None:
        cases.append(("mala_adapted", lambda n: gauss_mala_accept(rng, n, args.dims, args.s, args.eta_adapted)))
    for name, fn in cases:
        a = np.concatenate([fn(500000) for _ in range(args.draws // 500000)])
        res[name] = float(a.mean())
        res[name + "_se"] = float(a.std() / math.sqrt(len(a)))
    print(json.dumps(res))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["parity", "gauss"], required=True)
    ap.add_argument("--ir-dir")
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jemc-seed", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--features", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--gain", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--pyld-lr", type=float, default=0.2)
    ap.add_argument("--pyld-std", type=float, default=0.05)
    ap.add_argument("--sada-lr", type=float, default=1.0)
    ap.add_argument("--sada-std", type=float, default=0.01)
    ap.add_argument("--eta", type=float, default=0.4)
    ap.add_argument("--eta0", type=float, default=0.8)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--target", type=float, default=0.57)
    ap.add_argument("--eps", type=float, default=0.5)
    ap.add_argument("--leapfrog", type=int, default=4)
    # gauss
    ap.add_argument("--dims", type=int, default=4)
    ap.add_argument("--s", type=float, default=0.7)
    ap.add_argument("--eta-adapted", type=float)
    ap.add_argument("--draws", type=int, default=4000000)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.mode == "parity":
        if not args.ir_dir or not args.out:
            raise SystemExit("--mode parity needs --ir-dir and --out")
        parity(args)
    else:
        gauss(args)


if __name__ == "__main__":
    main()
