#!/usr/bin/python3
"""PyTorch reference for VERA (jemc's graphs/lib/vera.graph and graphs/vera_mnist.graph).

Written from the semantics of the official code (wgrathwohl/VERA: models/generator.py
VERAGenerator, train.py's JEM iteration, utils/hmc.py MALA) and
../shared/research/jem-spec.md section 7 with its 7.3a corrections, on
vera_mnist.graph's models: the MNIST CNN EBM f of torch_ref.py and the 28x28
DCGAN-style generator of lib/generators.graph (dcgan28), whose parameter names
(g.first.N.*) this module reproduces; g.logsigma is VERA's logsigma (a scalar
here, shape [1] in VERA), post_logsigma VERA's.

--mode pieces (tests/parity/vera_pieces.graph, program vera_pieces): given h, eps,
  noise [K, B, D], n1 [B, D], x, y as inputs:
    x_g = G(h) + sigma eps (G in train mode)
    ent, score = VERA's entropy_obj surrogate with h' = h + s noise
    pl  = VERA's post_loss (-ELBO) with h'' = h + s n1
    el  = e_loss (p_control, n_control, pg_control, clf_ent_weight terms)
  and their gradients with respect to every parameter they depend on
  (gent.*, gpl.*, gel.*), plus the batch norms' running statistics after the
  three training-mode forwards; and one latent MALA step (program vera_mala_pieces:
  unconditional and class-conditional) from given draws, with the uniforms chosen
  so that even rows accept and odd rows reject (u = a/2 or 2a, a the acceptance
  probability).
--mode mlp (tests/parity/vera_mlp.graph): VERA's tabular generator
  (models/mlp.py large_mlp_generator) in its three batch-norm modes, with the
  gradient of sum(y t) and the running statistics.
--mode step: one whole train_step_vera (or train_step_vera_unsup) as VERA's
  train.py runs it: E-step (EBM Adam step), then the G-step against the UPDATED
  EBM, whose entropy_obj steps the posterior width's own Adam first, then the
  generator's Adam step and the clamp of log sigma. The draws (h, eps, the K
  posterior draws, the ELBO's draw) are jemc's: Philox from torch_iteration.py
  with the stream ids read from `jemc compile GRAPH train_step_vera --dump=ir`
  (--ir), in the order the program draws them.

Deviations from VERA's code, both without effect on the numbers: post_logsigma
is not in the generator's Adam (VERA's gets a zero gradient there and, with
beta1 = 0, never moves, 7.3a.2), and the generator's `stepsize` buffer (used by
the HMC variant only) is absent.

Writes DIR/state.safetensors (every parameter and buffer), DIR/inputs.safetensors,
DIR/expected.safetensors (float64 unless --dtype float32), and prints a JSON
summary (the importance weights' largest value and effective sample size, the
MALA acceptances, ...). Run with Debian's /usr/bin/python3 (python3-torch).
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
from torch_ref import JemMnist, write_safetensors  # noqa: E402
from torch_iteration import draw, read_draws  # noqa: E402


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

class DCGAN28(nn.Module):
    """lib/generators.graph's dcgan28 (VERA's DCGANGenerator with one stage less)."""

    def __init__(self, noise_dim, ngf, channels=1):
        super().__init__()
        self.first = nn.Sequential(
            nn.ConvTranspose2d(noise_dim, 2 * ngf, 7, 1, 0, bias=False),
            nn.BatchNorm2d(2 * ngf),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1),
            nn.Tanh())

    def forward(self, h, track=True):
        """track=False: batch statistics without touching the running ones (gen_batch)."""
        x = h.view(h.size(0), -1, 1, 1)
        for m in self.first:
            if isinstance(m, nn.BatchNorm2d) and not track:
                x = F.batch_norm(x, None, None, m.weight, m.bias, training=True, eps=m.eps)
            else:
                x = m(x)
        return x


class VERAGenerator(nn.Module):
    """VERA's VERAGenerator (models/generator.py) around dcgan28."""

    def __init__(self, noise_dim, ngf, sigma, post_sigma):
        super().__init__()
        self.g = DCGAN28(noise_dim, ngf)
        self.logsigma = nn.Parameter(torch.tensor(math.log(sigma)))
        self.post_logsigma = nn.Parameter(torch.ones(noise_dim) * math.log(post_sigma))
        self.noise_dim = noise_dim

    def sample(self, h, eps):
        x_mu = self.g(h)
        return x_mu + eps * self.logsigma.exp(), x_mu

    def logq_joint(self, x, h, return_mu=False):
        logph = distributions.Normal(0, 1).log_prob(h).sum(1)
        gmu = self.g(h)
        px_given_h = distributions.Normal(gmu, self.logsigma.exp())
        logpx_given_h = px_given_h.log_prob(x).flatten(start_dim=1).sum(1)
        if return_mu:
            return logpx_given_h + logph, gmu
        return logpx_given_h + logph

    def entropy_obj(self, x, h, noise, n1, post_optimizer=None):
        """VERAGenerator.entropy_obj with the draws given: inf_dist.sample((K,)) is
        h + s noise, post.rsample() is h + s n1. Steps post_optimizer when given
        (learn_post_sigma). Returns the surrogate, the score c, post_loss, w."""
        K = noise.size(0)
        s = self.post_logsigma.detach().exp()
        inf_dist = distributions.Normal(h, s)
        h_given_x = (h.detach()[None] + s * noise).detach()
        inf_logprob = inf_dist.log_prob(h_given_x).sum(2)
        xr = x[None].repeat(K, 1, 1, 1, 1)
        xr = xr.view(x.size(0) * K, x.size(1), x.size(2), x.size(3))
        logq, mean_output = self.logq_joint(xr, h_given_x.view(-1, h.size(1)), return_mu=True)
        mean_output = mean_output.view(K, x.size(0), x.size(1), x.size(2), x.size(3))
        logq = logq.view(K, x.size(0))
        w = (logq - inf_logprob).softmax(dim=0)
        fvals = (x[None] - mean_output) / (self.logsigma.exp() ** 2)
        c = (fvals * w[:, :, None, None, None]).sum(0).detach()
        g_error_entropy = torch.mul(c, x).mean(0).sum()

        post_sigma = self.post_logsigma.exp()
        post = distributions.Normal(h.detach(), post_sigma)
        h_g_post = h.detach() + post_sigma * n1          # post.rsample() with the given draw
        joint = self.logq_joint(x.detach(), h_g_post)
        post_ent = post.entropy().sum(1)
        elbo = joint + post_ent
        post_loss = -elbo.mean()
        if post_optimizer is not None:
            post_optimizer.zero_grad()
            post_loss.backward()
            post_optimizer.step()
        return g_error_entropy, c, post_loss, w.detach()


def lse(logits):
    return torch.logsumexp(logits, dim=1)


def accuracy(logits, y):
    picked = logits.gather(1, y[:, None])[:, 0]
    return (picked >= logits.max(dim=1).values).to(logits.dtype).mean()


def ebm_loss(f, x_d, x_g, args, y=None):
    """train.py's E-step loss. Returns e_loss (+ clf_weight CE when y is given), parts."""
    x_g_detach = x_g.detach().requires_grad_()
    lg_detach = lse(f(x_g_detach))                   # first, as train.py (7.3a.5)
    x_d = x_d.detach().requires_grad_()
    logits = f(x_d)
    ld = lse(logits)
    grad_ld = torch.autograd.grad(ld.sum(), x_d, create_graph=True)[0].flatten(start_dim=1).norm(2, 1)
    logp_obj = (ld - lg_detach).mean()
    unsup_ent = distributions.Categorical(logits=logits).entropy()
    e_loss = -logp_obj + (ld ** 2).mean() * args.p_control + (lg_detach ** 2).mean() * args.n_control + \
        (grad_ld ** 2. / 2.).mean() * args.pg_control + unsup_ent.mean() * args.clf_ent_weight
    out = {"ld": ld, "lg": lg_detach, "logits": logits}
    if y is not None:
        c_loss = F.cross_entropy(logits, y)
        out["c_loss"] = c_loss
        e_loss = e_loss + args.clf_weight * c_loss
    return e_loss, out


def mala_logp(f, gen, h, e, y, cond, prior):
    x = gen.g(h, track=False) + gen.logsigma.exp() * e
    logits = f(x)
    lp = logits.gather(1, y[:, None])[:, 0] if cond else lse(logits)
    if prior:
        lp = lp - prior * 0.5 * ((h * h).sum(1) + (e * e).flatten(1).sum(1))
    return lp


def mala_step(f, gen, h, e, eta, y, cond, prior, nh, ne):
    """utils/hmc.py MALA on (h, e) with the proposal noise given. Returns the
    log acceptance ratio and the proposal."""
    step_std = (2 * eta) ** .5
    vs = [h.detach().requires_grad_(), e.detach().requires_grad_()]
    logp_vars = mala_logp(f, gen, *vs, y, cond, prior)
    grads = torch.autograd.grad(logp_vars.sum(), vs)
    updates_mu = [v + eta * g for v, g in zip(vs, grads)]
    updates = [(u_mu + step_std * n).detach().requires_grad_() for u_mu, n in zip(updates_mu, (nh, ne))]
    logp_updates = mala_logp(f, gen, *updates, y, cond, prior)
    reverse_grads = torch.autograd.grad(logp_updates.sum(), updates)
    reverse_updates_mu = [v + eta * g for v, g in zip(updates, reverse_grads)]

    def update_logp(u, u_mu, std):
        return distributions.Normal(u_mu, std).log_prob(u).flatten(start_dim=1).sum(1)

    logp_forward = sum(update_logp(u, u_mu, step_std) for u, u_mu in zip(updates, updates_mu))
    logp_backward = sum(update_logp(v, ru_mu, step_std) for v, ru_mu in zip(vs, reverse_updates_mu))
    logp_accept = logp_updates + logp_backward - logp_vars - logp_forward
    return logp_accept.detach(), [u.detach() for u in updates]


# --------------------------------------------------------------------------
# Setup shared by both modes
# --------------------------------------------------------------------------

def build(args):
    dt = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    torch.manual_seed(args.seed)
    f = JemMnist(10)
    gen = VERAGenerator(args.noise_dim, args.g_feats, args.sigma, args.post_sigma)
    # BN affine parameters away from (1, 0), running statistics away from (0, 1),
    # so that a parameter or buffer mix-up shows
    with torch.no_grad():
        for m in gen.g.first:
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return f.to(dt), gen.to(dt), dt


def state_list(f, gen):
    ts = [(n, p.detach().clone()) for n, p in f.state_dict().items()]
    for n, p in gen.g.state_dict().items():
        ts.append(("g." + n, p.detach().clone()))
    ts.append(("g.logsigma", gen.logsigma.detach().clone()))
    ts.append(("post_logsigma", gen.post_logsigma.detach().clone()))
    return ts


def param_list(f, gen):
    """(jemc name, parameter) of every parameter."""
    ps = [(n, p) for n, p in f.named_parameters()]
    ps += [("g." + n, p) for n, p in gen.g.named_parameters()]
    ps += [("g.logsigma", gen.logsigma), ("post_logsigma", gen.post_logsigma)]
    return ps


def grads_of(loss, plist, prefix):
    """prefix.<name> = d loss / d p for every parameter the loss depends on."""
    ps = [p for _, p in plist]
    gs = torch.autograd.grad(loss, ps, retain_graph=True, allow_unused=True)
    return [(prefix + "." + n, g.detach().clone()) for (n, _), g in zip(plist, gs) if g is not None]


def weight_stats(w):
    """largest importance weight and the effective sample size per example (mean)."""
    ess = 1.0 / (w * w).sum(0)
    return {"w_max": float(w.max()), "ess_mean": float(ess.mean()), "ess_min": float(ess.min())}


# --------------------------------------------------------------------------
# --mode pieces
# --------------------------------------------------------------------------

def pieces(args):
    f, gen, dt = build(args)
    B, D, K = args.batch, args.noise_dim, args.K
    state0 = state_list(f, gen)
    h = torch.randn(B, D, dtype=torch.float32).to(dt)
    eps = torch.randn(B, 1, 28, 28, dtype=torch.float32).to(dt)
    noise = torch.randn(K, B, D, dtype=torch.float32).to(dt)
    n1 = torch.randn(B, D, dtype=torch.float32).to(dt)
    x = (torch.rand(B, 1, 28, 28, dtype=torch.float32) * 2 - 1).to(dt)
    y = torch.randint(10, (B,), dtype=torch.int64)
    e = torch.randn(B, 1, 28, 28, dtype=torch.float32).to(dt)
    nh = torch.randn(B, D, dtype=torch.float32).to(dt)
    ne = torch.randn(B, 1, 28, 28, dtype=torch.float32).to(dt)
    plist = param_list(f, gen)
    exp = []
    # the three training-mode generator forwards of vera_pieces, in its order
    x_g, _ = gen.sample(h, eps)
    ent, c, pl, w = gen.entropy_obj(x_g, h, noise, n1)
    exp += [("ent", ent.detach()), ("score", c)] + grads_of(ent, plist, "gent")
    exp += [("pl", pl.detach())] + grads_of(pl, plist, "gpl")
    el, _ = ebm_loss(f, x, x_g, args)
    exp += [("el", el.detach())] + grads_of(el, plist, "gel")
    for n, b in gen.g.named_buffers():
        exp.append(("g." + n, b.detach().clone()))
    # latent MALA (batch statistics, no tracking), both targets
    eta = torch.tensor(args.eta, dtype=dt)
    summary = dict(weight_stats(w), ent=float(ent), pl=float(pl), el=float(el))
    u = {}
    for name, cond in (("mala", False), ("mala_cond", True)):
        log_a, (uh, ue) = mala_step(f, gen, h, e, eta, y, cond, args.mala_prior, nh, ne)
        a = log_a.exp()
        # even rows: u = a/2 < a, accepted; odd rows: u = 2a > a, rejected
        uu = torch.where(torch.arange(B) % 2 == 0, a / 2, a * 2)
        acc = uu < a
        hn = torch.where(acc[:, None], uh, h)
        en = torch.where(acc[:, None, None, None], ue, e)
        xn = gen.g(hn, track=False) + gen.logsigma.exp() * en
        u[name] = uu
        exp += [(name + "_h", hn.detach()), (name + "_e", en.detach()), (name + "_accept", acc.to(dt)),
                (name + "_samples", xn.detach()), (name + "_log_a", log_a)]
        summary[name + "_log_a"] = log_a.tolist()
    write_safetensors(os.path.join(args.out, "state.safetensors"), state0)
    write_safetensors(os.path.join(args.out, "inputs.safetensors"),
                      [("h", h), ("eps", eps), ("noise", noise), ("n1", n1), ("x", x), ("y", y), ("e", e), ("nh", nh),
                       ("ne", ne), ("eta", eta), ("u", u["mala"]), ("u_cond", u["mala_cond"])])
    write_safetensors(os.path.join(args.out, "expected.safetensors"), exp)
    print(json.dumps(summary))


# --------------------------------------------------------------------------
# --mode mlp
# --------------------------------------------------------------------------

def large_mlp_generator(noise_dim, data_dim, hidden):
    """VERA's models/mlp.py large_mlp_generator with no_final_act (tabular data)."""
    return nn.Sequential(
        nn.Linear(noise_dim, hidden, bias=False), nn.BatchNorm1d(hidden, affine=True), nn.Softplus(),
        nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden, affine=True), nn.Softplus(),
        nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden, affine=True), nn.Softplus(),
        nn.Linear(hidden, data_dim, bias=True))


def mlp(args):
    """tests/parity/vera_mlp.graph's mlp_pieces: y in train mode (running statistics
    updated), d sum(y t) / d every parameter, then y in eval mode (the updated
    running statistics) and tanh(y) with batch statistics and no update."""
    dt = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    torch.manual_seed(args.seed)
    g = large_mlp_generator(args.noise_dim, args.data_dim, args.hidden)
    with torch.no_grad():
        for m in g:
            if isinstance(m, nn.BatchNorm1d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    g = g.to(dt)
    state0 = [("g." + n, p.detach().clone()) for n, p in g.state_dict().items()]
    h = torch.randn(args.batch, args.noise_dim, dtype=torch.float32).to(dt)
    t = torch.randn(args.batch, args.data_dim, dtype=torch.float32).to(dt)
    g.train()
    y = g(h)
    plist = [("g." + n, p) for n, p in g.named_parameters()]
    exp = [("y_train", y.detach())] + grads_of((y * t).sum(), plist, "grad")
    exp += [("g." + n, b.detach().clone()) for n, b in g.named_buffers()]
    g.eval()
    exp.append(("y_eval", g(h).detach()))
    x = h
    for m in g:
        x = F.batch_norm(x, None, None, m.weight, m.bias, training=True, eps=m.eps) if isinstance(m, nn.BatchNorm1d) else m(x)
    exp.append(("y_batch", torch.tanh(x).detach()))
    write_safetensors(os.path.join(args.out, "state.safetensors"), state0)
    write_safetensors(os.path.join(args.out, "inputs.safetensors"), [("h", h), ("t", t)])
    write_safetensors(os.path.join(args.out, "expected.safetensors"), exp)
    print(json.dumps({"y_train_max": float(y.abs().max())}))


# --------------------------------------------------------------------------
# --mode step
# --------------------------------------------------------------------------

def step_draws(ir_text, program, call, seed, dt):
    """The four normal draws of train_step_vera in program order: h [B, D],
    eps [B, 1, 28, 28], the posterior draws [K, B, D], the ELBO's draw [B, D]."""
    body = ir_text
    m = re.search(r"program %s\(" % program, ir_text)
    if m:
        body = ir_text[m.start():]
        nxt = re.search(r"\nprogram ", body[1:])
        body = body[:nxt.start() + 1] if nxt else body
    d = [x for x in read_draws(body) if x[5] == 0]
    if len(d) != 4 or any(kind != "normal" or a != 0 or b != 1 for kind, _, a, b, _, _ in d):
        raise SystemExit("%s: expected 4 top-level normal(0, 1) draws, got %s" % (program, d))
    return [torch.from_numpy(draw("normal", shape, 0.0, 1.0, stream, call, seed)).to(dt) for _, stream, _, _, shape, _ in d]


def adam_state(opt, plist, prefix):
    ts = []
    for n, p in plist:
        st = opt.state[p]
        ts.append((prefix + ".m." + n, st["exp_avg"].clone()))
        ts.append((prefix + ".v." + n, st["exp_avg_sq"].clone()))
    return ts


def grad_norm(plist):
    return torch.sqrt(sum((p.grad * p.grad).sum() for _, p in plist)).detach()


def step(args):
    f, gen, dt = build(args)
    B = args.batch
    unsup = args.program == "train_step_vera_unsup"
    state0 = state_list(f, gen)
    x = (torch.rand(B, 1, 28, 28, dtype=torch.float32) * 2 - 1).to(dt)
    y = torch.randint(10, (B,), dtype=torch.int64)
    with open(args.ir) as fh:
        h, eps, noise, n1 = step_draws(fh.read(), args.program, args.call, args.jemc_seed, dt)
    if noise.shape[0] != args.K:
        raise SystemExit("the IR draws %d posterior samples, --K is %d" % (noise.shape[0], args.K))
    f_params = [(n, p) for n, p in f.named_parameters()]
    g_params = [("g." + n, p) for n, p in gen.g.named_parameters()] + [("g.logsigma", gen.logsigma)]
    post_params = [("post_logsigma", gen.post_logsigma)]
    e_opt = torch.optim.Adam([p for _, p in f_params], lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8)
    g_opt = torch.optim.Adam([p for _, p in g_params], lr=args.glr, betas=(args.beta1, args.beta2), eps=1e-8)
    post_opt = torch.optim.Adam([p for _, p in post_params], lr=args.post_lr)   # (0.9, 0.999), no warm-up (7.3a.1)
    itr = 0
    if itr < args.warmup:                             # train.py: lr (itr + 1) / warmup_iters
        for grp in e_opt.param_groups:
            grp["lr"] = args.lr * (itr + 1) / float(args.warmup)
        for grp in g_opt.param_groups:
            grp["lr"] = args.glr * (itr + 1) / float(args.warmup)
    sigma = gen.logsigma.exp().detach().clone()
    x_g, _ = gen.sample(h, eps)
    # E-step
    e_loss, parts = ebm_loss(f, x, x_g, args, None if unsup else y)
    e_opt.zero_grad()
    e_loss.backward()
    gn_e = grad_norm(f_params)
    e_opt.step()
    # G-step against the updated f
    ent_weight = args.ent_weight
    lg = lse(f(x_g))
    ent, c, pl, w = gen.entropy_obj(x_g, h, noise, n1, post_opt)
    gn_post = gen.post_logsigma.grad.norm().detach()
    g_loss = -(lg.mean() + ent_weight * ent)
    g_opt.zero_grad()                                  # drops the ELBO's leaks into G (7.3a.3)
    g_loss.backward()
    gn_g = grad_norm(g_params)
    g_opt.step()
    pre_clamp = float(gen.logsigma)
    with torch.no_grad():
        gen.logsigma.clamp_(math.log(args.min_sigma), math.log(args.max_sigma))
    clamped = pre_clamp != float(gen.logsigma)
    out = [("loss", e_loss.detach()), ("loss_g", g_loss.detach()), ("e_data", -parts["ld"].mean().detach()),
           ("e_sample", -parts["lg"].mean().detach()), ("entropy", ent.detach()), ("sigma", sigma)]
    if not unsup:
        out += [("loss_ce", parts["c_loss"].detach()), ("acc", accuracy(parts["logits"], y).detach())]
    st = state_list(f, gen)
    st += adam_state(e_opt, f_params, "opt") + adam_state(g_opt, g_params, "opt_g") + adam_state(post_opt, post_params, "opt_post")
    for name in ("opt", "opt_g", "opt_post"):
        st.append((name + ".step", torch.tensor(1, dtype=torch.int64)))
    st += [("opt.grad_norm", gn_e), ("opt_g.grad_norm", gn_g), ("opt_post.grad_norm", gn_post)]
    write_safetensors(os.path.join(args.out, "state.safetensors"), state0)
    write_safetensors(os.path.join(args.out, "inputs.safetensors"), [("x", x)] if unsup else [("x", x), ("y", y)])
    write_safetensors(os.path.join(args.out, "expected.safetensors"), out + st)
    summary = dict(weight_stats(w), loss=float(e_loss), loss_g=float(g_loss), entropy=float(ent),
                   logsigma_after=float(gen.logsigma), logsigma_unclamped=pre_clamp, clamped=clamped, post_loss=float(pl))
    print(json.dumps(summary))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["pieces", "step", "mlp"], required=True)
    ap.add_argument("--program", choices=["train_step_vera", "train_step_vera_unsup"], default="train_step_vera")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--noise-dim", dest="noise_dim", type=int, default=128)
    ap.add_argument("--g-feats", dest="g_feats", type=int, default=32)
    ap.add_argument("--K", type=int, default=20, help="posterior draws (post_samples)")
    ap.add_argument("--data-dim", dest="data_dim", type=int, default=7, help="mlp: the data's dimension")
    ap.add_argument("--hidden", type=int, default=16, help="mlp: hidden width (VERA's 500)")
    ap.add_argument("--sigma", type=float, default=0.01, help="initial generator sigma")
    ap.add_argument("--post-sigma", dest="post_sigma", type=float, default=0.1, help="initial posterior width")
    ap.add_argument("--min-sigma", dest="min_sigma", type=float, default=0.01)
    ap.add_argument("--max-sigma", dest="max_sigma", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--glr", type=float, default=2e-4)
    ap.add_argument("--post-lr", dest="post_lr", type=float, default=1e-4)
    ap.add_argument("--beta1", type=float, default=0.0)
    ap.add_argument("--beta2", type=float, default=0.9)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--ent-weight", dest="ent_weight", type=float, default=1e-4)
    ap.add_argument("--clf-weight", dest="clf_weight", type=float, default=100.0)
    ap.add_argument("--clf-ent-weight", dest="clf_ent_weight", type=float, default=0.0)
    ap.add_argument("--pg-control", dest="pg_control", type=float, default=0.1)
    ap.add_argument("--p-control", dest="p_control", type=float, default=0.0)
    ap.add_argument("--n-control", dest="n_control", type=float, default=0.0)
    ap.add_argument("--eta", type=float, default=0.01, help="MALA step (pieces)")
    ap.add_argument("--mala-prior", dest="mala_prior", type=float, default=0.0)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--seed", type=int, default=0, help="torch seed: weights and data")
    ap.add_argument("--jemc-seed", dest="jemc_seed", type=int, default=0, help="jemc's --seed (Philox key)")
    ap.add_argument("--call", type=int, default=0, help="Philox call of the step")
    ap.add_argument("--ir", help="jemc compile GRAPH PROGRAM --dump=ir (step mode: the draws' stream ids)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.mode == "step" and not args.ir:
        ap.error("--mode step needs --ir")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(max(1, args.threads))
    os.makedirs(args.out, exist_ok=True)
    if args.mode == "pieces":
        pieces(args)
    elif args.mode == "mlp":
        mlp(args)
    else:
        step(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
