#!/usr/bin/python3
"""PyTorch reference for jemc's semi-supervised tabular graph (graphs/ssl_tabular.graph,
graphs/lib/vat.graph), for tests/t_ssl.c.

Written from the official VERA code's semantics (wgrathwohl/VERA: utils/vat.py
VATLoss, train.py's --vat, --jem_baseline and VERA branches with labels_per_class
> 0, models/mlp.py large_mlp_ebm without weight norm, models/jem.py JEM), on a
small EBM: nn.Sequential(Flatten, Linear, LeakyReLU(0.2), ..., Linear) wrapped as
`logp_net` (parameter names logp_net.1.weight ... logp_net.13.bias, as jemc's).

--mode pieces (tests/parity/ssl_pieces.graph, program ssl_pieces): given x (the
  unlabelled batch), x_lab, y_lab, d0 (VAT's random start) and x_neg (the EBM's
  negatives) as inputs:
    vat_*  the VAT step's loss clf_weight CE + clf_ent_weight H + vat_weight LDS,
           its parts, the adversarial direction and the gradients gvat.*, glds.*
    ebm_*  the EBM loss of the JEM / VERA SSL step (train.py's e_loss with
           unsup_ent, + clf_weight CE), the classifier-entropy term and the
           gradients gebm.*, gent.*
--mode step --program train_step_vat|train_step_jem: one whole step as jemc
  runs it, its draws jemc's Philox (streams read from `jemc compile ...
  --dump=ir`, --ir): VAT's random start; JEM's buffer indices, restart test,
  fresh chains and SGLD noise (the replay buffer is written to the state),
  then one Adam step (betas (0, 0.9), the warm-up's first rate). Writes every
  output, every parameter and Adam moment after the step, opt.step,
  opt.grad_norm (and JEM's replay buffer after the step).

Writes DIR/state.safetensors, DIR/inputs.safetensors and DIR/expected.safetensors
(float64), prints a JSON summary. Run with Debian's /usr/bin/python3 (python3-torch).
"""

import argparse
import json
import math
import os
import re
import sys

import torch
import torch.distributions as distributions
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ref import write_safetensors  # noqa: E402
from torch_iteration import draw, read_draws  # noqa: E402
from torch_vera import large_mlp_generator  # noqa: E402


def large_mlp_ebm(widths, classes):
    """models/mlp.py large_mlp_ebm(weight_norm=False) with the given widths."""
    layers = [nn.Flatten(start_dim=1)]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(.2)]
    layers.append(nn.Linear(widths[-1], classes, bias=True))
    return nn.Sequential(*layers)


class JEM(nn.Module):
    """models/jem.py JEM: forward = logsumexp of the logits, classify = the logits."""

    def __init__(self, logp_net):
        super().__init__()
        self.logp_net = logp_net

    def forward(self, x, return_logits=False):
        logits = self.logp_net(x)
        return (logits.logsumexp(1), logits) if return_logits else logits.logsumexp(1)

    def classify(self, x):
        return self.logp_net(x)


def l2_normalize(d):
    """utils/vat.py _l2_normalize (not in place)."""
    d_reshaped = d.view(d.shape[0], -1, *(1 for _ in range(d.dim() - 2)))
    return d / (torch.norm(d_reshaped, dim=1, keepdim=True) + 1e-8)


def vat_lds(model, x, d0, xi, eps):
    """utils/vat.py VATLoss.forward with the random start d0 given (VERA draws
    torch.rand(x.shape) - 0.5). Returns the LDS and the adversarial direction."""
    with torch.no_grad():
        pred = F.softmax(model.classify(x), dim=1)
    d = l2_normalize(d0.clone()).detach().requires_grad_()
    pred_hat = model.classify(x + xi * d)
    logp_hat = F.log_softmax(pred_hat, dim=1)
    adv_distance = F.kl_div(logp_hat, pred, reduction="batchmean")
    g = torch.autograd.grad(adv_distance, d)[0]
    d = l2_normalize(g)
    r_adv = d * eps
    logp_hat = F.log_softmax(model.classify(x + r_adv), dim=1)
    return F.kl_div(logp_hat, pred, reduction="batchmean"), d.detach()


def vat_objective(model, x, x_l, y_l, d0, a):
    """train.py's --vat step: clf_weight CE(x_l) + clf_ent_weight H(p(y|x)) + vat_weight LDS(x)."""
    _, ld_logits = model(x_l, return_logits=True)
    c_loss = nn.CrossEntropyLoss()(ld_logits, y_l)
    _, unsup_logits = model(x, return_logits=True)
    unsup_ent = distributions.Categorical(logits=unsup_logits).entropy().mean()
    lds, d_adv = vat_lds(model, x, d0, a.vat_xi, a.vat_eps)
    loss = a.clf_weight * c_loss + a.clf_ent_weight * unsup_ent + a.vat_weight * lds
    return loss, c_loss, lds, unsup_ent, d_adv, ld_logits


def ebm_objective(model, x_d, x_l, y_l, x_g, a):
    """train.py's E-step with labels_per_class (the VERA branch, and --jem_baseline
    with the SGLD chains as x_g): lg on x_g (first), ld and the unlabelled logits on
    x_d, the labelled logits on x_l, the gradient penalty on x_d."""
    x_g_detach = x_g.detach().requires_grad_()
    lg_detach = model(x_g_detach).squeeze()
    x_d = x_d.detach().requires_grad_()
    ld, unsup_logits = model(x_d, return_logits=True)
    _, ld_logits = model(x_l, return_logits=True)
    unsup_ent = distributions.Categorical(logits=unsup_logits).entropy()
    grad_ld = torch.autograd.grad(ld.sum(), x_d, create_graph=True)[0].flatten(start_dim=1).norm(2, 1)
    logp_obj = (ld - lg_detach).mean()
    e_loss = -logp_obj + (ld ** 2).mean() * a.p_control + (lg_detach ** 2).mean() * a.n_control + \
        (grad_ld ** 2. / 2.).mean() * a.pg_control + unsup_ent.mean() * a.clf_ent_weight
    c_loss = nn.CrossEntropyLoss()(ld_logits, y_l)
    return e_loss + a.clf_weight * c_loss, c_loss, unsup_ent.mean(), ld, lg_detach


def grads_of(loss, plist, prefix):
    gs = torch.autograd.grad(loss, [p for _, p in plist], retain_graph=True, allow_unused=True)
    return [(prefix + "." + n, g.detach().clone()) for (n, _), g in zip(plist, gs) if g is not None]


def accuracy(logits, y):
    picked = logits.gather(1, y[:, None])[:, 0]
    return (picked >= logits.max(dim=1).values).to(logits.dtype).mean()


def build(a):
    torch.manual_seed(a.seed)
    widths = [a.features] + [int(w) for w in a.hidden.split(",")]
    if len(widths) != 7:
        raise SystemExit("--hidden takes the six widths hidden1..hidden6")
    model = JEM(large_mlp_ebm(widths, a.classes)).to(torch.float64)
    # weights a.gain times PyTorch's init: logits of a few units, as a trained
    # classifier's, so that the KL terms are not differences at rounding level
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(a.gain)
    plist = [("logp_net." + n, p) for n, p in model.logp_net.named_parameters()]
    B, L, D = a.batch, a.lab_batch, a.features
    data = {
        "x": torch.randn(B, D, dtype=torch.float32).to(torch.float64),
        "x_lab": torch.randn(L, D, dtype=torch.float32).to(torch.float64),
        "y_lab": torch.randint(a.classes, (L,), dtype=torch.int64),
        "d0": (torch.rand(B, D, dtype=torch.float32) - 0.5).to(torch.float64),
        "x_neg": (torch.rand(B, D, dtype=torch.float32) * 2 - 1).to(torch.float64),
        # for the programs t_ssl runs compiled and interpreted: labels of x, latents
        "y": torch.randint(a.classes, (B,), dtype=torch.int64),
        "h": torch.randn(B, a.noise_dim, dtype=torch.float32).to(torch.float64),
    }
    state0 = [(n, p.detach().clone()) for n, p in plist]
    # the generator's parameters and buffers (the graph has them; these tests do
    # not use them): VERA's large_mlp_generator with no_final_act, log sigma and
    # the posterior width at their initial values
    g = large_mlp_generator(a.noise_dim, a.features, a.g_hidden).to(torch.float64)
    a.gen_net = g
    state0 += [("g." + n, p.detach().clone()) for n, p in g.state_dict().items()]
    state0 += [("g.logsigma", torch.tensor(math.log(a.sigma), dtype=torch.float64)),
               ("post_logsigma", torch.full((a.noise_dim,), math.log(0.1), dtype=torch.float64))]
    return model, plist, data, state0


def pieces(a):
    model, plist, t, state0 = build(a)
    exp = []
    loss, ce, lds, ent, d_adv, _ = vat_objective(model, t["x"], t["x_lab"], t["y_lab"], t["d0"], a)
    exp += [("vat_loss", loss.detach()), ("vat_ce", ce.detach()), ("vat_lds", lds.detach()),
            ("vat_ent", ent.detach()), ("vat_dir", d_adv)]
    exp += grads_of(loss, plist, "gvat") + grads_of(lds, plist, "glds")
    el, ece, eent, ld, lg = ebm_objective(model, t["x"], t["x_lab"], t["y_lab"], t["x_neg"], a)
    exp += [("ebm_loss", el.detach()), ("ebm_ce", ece.detach()), ("ebm_ent", eent.detach()),
            ("ebm_ld", ld.detach()), ("ebm_lg", lg.detach())]
    exp += grads_of(el, plist, "gebm") + grads_of(eent, plist, "gent")
    write_safetensors(os.path.join(a.out, "state.safetensors"), state0)
    write_safetensors(os.path.join(a.out, "inputs.safetensors"), list(t.items()))
    write_safetensors(os.path.join(a.out, "expected.safetensors"), exp)
    dn = d_adv.flatten(1).norm(dim=1)
    print(json.dumps({"vat_loss": float(loss), "vat_lds": float(lds), "ebm_loss": float(el),
                      "dir_norm_min": float(dn.min()), "dir_norm_max": float(dn.max())}))


def program_draws(ir, program):
    """The top-level and loop-body rng nodes of one program of an IR dump."""
    m = re.search(r"program %s\(" % program, ir)
    body = ir[m.start():] if m else ir
    nxt = re.search(r"\nprogram ", body[1:])
    return read_draws(body[:nxt.start() + 1] if nxt else body)


def sgld(model, x0, noises, sgld_lr, sgld_std):
    """lib/jem.graph's sgld (VERA's sample_q): x + lr d/dx logsumexp f(x) + std noise."""
    x = x0.clone()
    for eps in noises:
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xg).sum(), xg)
        x = x.detach() + sgld_lr * g + sgld_std * eps
    return x.detach()


class TabularVERA(nn.Module):
    """models/generator.py VERAGenerator around the tabular generator (x [B, D])."""

    def __init__(self, g, noise_dim, sigma, post_sigma):
        super().__init__()
        self.g = g
        self.logsigma = nn.Parameter(torch.tensor(math.log(sigma), dtype=torch.float64))
        self.post_logsigma = nn.Parameter(torch.full((noise_dim,), math.log(post_sigma), dtype=torch.float64))

    def sample(self, h, eps):
        mu = self.g(h)
        return mu + eps * self.logsigma.exp(), mu

    def logq_joint(self, x, h):
        logph = distributions.Normal(0, 1).log_prob(h).sum(1)
        gmu = self.g(h)
        return distributions.Normal(gmu, self.logsigma.exp()).log_prob(x).sum(1) + logph, gmu

    def entropy_obj(self, x, h, noise, n1, post_optimizer):
        """entropy_obj with the draws given (h + s noise, h + s n1); steps the posterior Adam."""
        K, B, D = noise.size(0), x.size(0), x.size(1)
        s = self.post_logsigma.detach().exp()
        h_given_x = (h.detach()[None] + s * noise).detach()
        inf_logprob = distributions.Normal(h, s).log_prob(h_given_x).sum(2)
        logq, mean_output = self.logq_joint(x[None].repeat(K, 1, 1).view(K * B, D), h_given_x.view(-1, h.size(1)))
        w = (logq.view(K, B) - inf_logprob).softmax(dim=0)
        c = ((x[None] - mean_output.view(K, B, D)) / (self.logsigma.exp() ** 2) * w[:, :, None]).sum(0).detach()
        ent = torch.mul(c, x).mean(0).sum()
        post_sigma = self.post_logsigma.exp()
        joint = self.logq_joint(x.detach(), h.detach() + post_sigma * n1)[0]
        post_loss = -(joint + distributions.Normal(h.detach(), post_sigma).entropy().sum(1)).mean()
        post_optimizer.zero_grad()
        post_loss.backward()
        post_optimizer.step()
        return ent


def step_vera(a, model, plist, t, state0, d, seed):
    """One train_step_vera: E-step (the SSL EBM loss with x_g), then the posterior
    width's and the generator's steps against the updated f, then the clamp."""
    top = [x for x in d if x[5] == 0]
    if len(top) != 4 or len(d) != 4 or any(x[0] != "normal" for x in top):
        raise SystemExit("train_step_vera: expected 4 top-level normal draws, got %s" % d)
    h, eps, noise, n1 = [torch.from_numpy(draw("normal", sh, lo, hi, st, a.call, seed)) for _, st, lo, hi, sh, _ in top]
    gen = TabularVERA(a.gen_net, a.noise_dim, a.sigma, 0.1)
    gen.g.train()
    g_params = [("g." + n, p) for n, p in gen.g.named_parameters()] + [("g.logsigma", gen.logsigma)]
    e_opt = torch.optim.Adam([p for _, p in plist], lr=a.lr / a.warmup, betas=(0.0, 0.9), eps=1e-8)
    g_opt = torch.optim.Adam([p for _, p in g_params], lr=a.glr / a.warmup, betas=(0.0, 0.9), eps=1e-8)
    post_opt = torch.optim.Adam([gen.post_logsigma], lr=a.post_lr)
    sigma = gen.logsigma.exp().detach().clone()
    x_g, _ = gen.sample(h, eps)
    loss, ce, ent_u, ld, lg = ebm_objective(model, t["x"], t["x_lab"], t["y_lab"], x_g, a)
    _, logits_l = model(t["x_lab"], return_logits=True)
    e_opt.zero_grad()
    loss.backward()
    gn_e = torch.sqrt(sum((p.grad * p.grad).sum() for _, p in plist)).detach()
    e_opt.step()
    lg_new = model(x_g)
    ent = gen.entropy_obj(x_g, h, noise, n1, post_opt)
    gn_post = gen.post_logsigma.grad.norm().detach()
    g_loss = -(lg_new.mean() + a.ent_weight * ent)
    g_opt.zero_grad()
    g_loss.backward()
    gn_g = torch.sqrt(sum((p.grad * p.grad).sum() for _, p in g_params)).detach()
    g_opt.step()
    with torch.no_grad():
        gen.logsigma.clamp_(math.log(0.01), math.log(0.3))
    out = [("loss", loss.detach()), ("loss_ce", ce.detach()), ("e_data", -ld.mean().detach()),
           ("e_sample", -lg.mean().detach()), ("clf_entropy", ent_u.detach()),
           ("acc", accuracy(logits_l, t["y_lab"]).detach()), ("sigma", sigma), ("entropy", ent.detach()),
           ("loss_g", g_loss.detach())]
    st = [(n, p.detach().clone()) for n, p in plist]
    st += [("g." + n, b.detach().clone()) for n, b in gen.g.state_dict().items()]
    st += [("g.logsigma", gen.logsigma.detach().clone()), ("post_logsigma", gen.post_logsigma.detach().clone())]
    for name, opt, ps in (("opt", e_opt, plist), ("opt_g", g_opt, g_params), ("opt_post", post_opt, [("post_logsigma", gen.post_logsigma)])):
        for n, p in ps:
            st += [(name + ".m." + n, opt.state[p]["exp_avg"].clone()), (name + ".v." + n, opt.state[p]["exp_avg_sq"].clone())]
        st.append((name + ".step", torch.tensor(1, dtype=torch.int64)))
    st += [("opt.grad_norm", gn_e), ("opt_g.grad_norm", gn_g), ("opt_post.grad_norm", gn_post)]
    write_safetensors(os.path.join(a.out, "state.safetensors"), state0)
    write_safetensors(os.path.join(a.out, "inputs.safetensors"), [(k, t[k]) for k in ("x", "x_lab", "y_lab")])
    write_safetensors(os.path.join(a.out, "expected.safetensors"), out + st)
    print(json.dumps({"loss": float(loss), "loss_g": float(g_loss), "entropy": float(ent)}))


def step(a):
    """One train_step_vat or train_step_jem with jemc's Philox draws, then Adam."""
    model, plist, t, state0 = build(a)
    with open(a.ir) as fh:
        d = program_draws(fh.read(), a.program)
    seed = a.jemc_seed
    if a.program == "train_step_vera":
        return step_vera(a, model, plist, t, state0, d, seed)
    opt = torch.optim.Adam([p for _, p in plist], lr=a.lr, betas=(0.0, 0.9), eps=1e-8)
    for grp in opt.param_groups:                      # train.py's warm-up, iteration 0
        grp["lr"] = a.lr * 1 / float(a.warmup)
    extra_state = []
    if a.program == "train_step_vat":
        top = [x for x in d if x[5] == 0]
        if len(d) != 1 or len(top) != 1 or top[0][0] != "uniform" or top[0][2] != -0.5 or top[0][3] != 0.5:
            raise SystemExit("train_step_vat: expected one uniform(-0.5, 0.5) draw, got %s" % d)
        kind, stream, lo, hi, shape, _ = top[0]
        d0 = torch.from_numpy(draw(kind, shape, lo, hi, stream, a.call, seed))
        loss, ce, lds, ent, _, logits_l = vat_objective(model, t["x"], t["x_lab"], t["y_lab"], d0, a)
        out = [("loss", loss.detach()), ("loss_ce", ce.detach()), ("vat", lds.detach()),
               ("clf_entropy", ent.detach()), ("acc", accuracy(logits_l, t["y_lab"]).detach())]
    else:
        # the replay buffer, its draws: indices, the restart test, fresh chains, SGLD noise
        torch.manual_seed(a.seed + 1000)
        replay = (torch.rand(a.buffer_size, a.features, dtype=torch.float32) * 2 - 1).to(torch.float64)
        extra_state.append(("replay", replay.clone()))
        pick = {}
        for kind, stream, lo, hi, shape, depth in d:
            key = {("randint", 0): "idx", ("normal", 1): "noise"}.get((kind, depth))
            if kind == "uniform" and depth == 0:
                key = "restart" if (lo, hi) == (0.0, 1.0) else "fresh" if (lo, hi) == (-1.0, 1.0) else None
            if key is None or key in pick:
                raise SystemExit("train_step_jem: unexpected draw rng_%s %s" % (kind, (stream, lo, hi, shape, depth)))
            pick[key] = (kind, stream, lo, hi, shape)
        if set(pick) != {"idx", "restart", "fresh", "noise"}:
            raise SystemExit("train_step_jem: draws %s" % sorted(pick))
        dr = {k: torch.from_numpy(draw(kd, sh, lo, hi, st, a.call, seed)) for k, (kd, st, lo, hi, sh) in pick.items() if k != "noise"}
        kd, st, lo, hi, sh = pick["noise"]
        noises = [torch.from_numpy(draw(kd, sh, lo, hi, st, a.call, seed, iteration=k)) for k in range(a.sgld_steps)]
        idx = dr["idx"]
        x0 = torch.where(dr["restart"] < a.reinit, dr["fresh"], replay[idx])
        x_q = sgld(model, x0, noises, a.sgld_lr, a.sgld_std)
        for i in range(len(idx)):                     # a repeated index: the later row wins
            replay[idx[i]] = x_q[i]
        loss, ce, ent, ld, lg = ebm_objective(model, t["x"], t["x_lab"], t["y_lab"], x_q, a)
        _, logits_l = model(t["x_lab"], return_logits=True)
        out = [("loss", loss.detach()), ("loss_ce", ce.detach()), ("e_data", -ld.mean().detach()),
               ("e_sample", -lg.mean().detach()), ("clf_entropy", ent.detach()),
               ("acc", accuracy(logits_l, t["y_lab"]).detach()), ("replay", replay)]
    opt.zero_grad()
    loss.backward()
    gn = torch.sqrt(sum((p.grad * p.grad).sum() for _, p in plist)).detach()
    opt.step()
    st = [(n, p.detach().clone()) for n, p in plist]
    for n, p in plist:
        st += [("opt.m." + n, opt.state[p]["exp_avg"].clone()), ("opt.v." + n, opt.state[p]["exp_avg_sq"].clone())]
    st += [("opt.step", torch.tensor(1, dtype=torch.int64)), ("opt.grad_norm", gn)]
    write_safetensors(os.path.join(a.out, "state.safetensors"), state0 + extra_state)
    write_safetensors(os.path.join(a.out, "inputs.safetensors"), [(k, t[k]) for k in ("x", "x_lab", "y_lab")])
    write_safetensors(os.path.join(a.out, "expected.safetensors"), out + st)
    print(json.dumps({"loss": float(loss), "grad_norm": float(gn)}))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["pieces", "step"], required=True)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--lab-batch", dest="lab_batch", type=int, default=4)
    ap.add_argument("--features", type=int, default=6)
    ap.add_argument("--hidden", default="16,12,12,8,8,8", help="hidden1..hidden6")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--gain", type=float, default=2.0, help="the EBM's weights times PyTorch's init")
    ap.add_argument("--sigma", type=float, default=0.01, help="the generator's sigma in the state")
    ap.add_argument("--noise-dim", dest="noise_dim", type=int, default=4)
    ap.add_argument("--g-hidden", dest="g_hidden", type=int, default=8)
    ap.add_argument("--clf-weight", dest="clf_weight", type=float, default=1.0)
    ap.add_argument("--clf-ent-weight", dest="clf_ent_weight", type=float, default=1.0)
    ap.add_argument("--vat-weight", dest="vat_weight", type=float, default=1.0)
    ap.add_argument("--vat-xi", dest="vat_xi", type=float, default=10.0)
    ap.add_argument("--vat-eps", dest="vat_eps", type=float, default=3.0)
    ap.add_argument("--pg-control", dest="pg_control", type=float, default=0.1)
    ap.add_argument("--p-control", dest="p_control", type=float, default=0.0)
    ap.add_argument("--n-control", dest="n_control", type=float, default=0.0)
    ap.add_argument("--program", choices=["train_step_vat", "train_step_jem", "train_step_vera"], default="train_step_vat")
    ap.add_argument("--buffer-size", dest="buffer_size", type=int, default=50)
    ap.add_argument("--sgld-steps", dest="sgld_steps", type=int, default=5)
    ap.add_argument("--sgld-lr", dest="sgld_lr", type=float, default=1.0)
    ap.add_argument("--sgld-std", dest="sgld_std", type=float, default=0.01)
    ap.add_argument("--reinit", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--glr", type=float, default=2e-4)
    ap.add_argument("--post-lr", dest="post_lr", type=float, default=1e-4)
    ap.add_argument("--ent-weight", dest="ent_weight", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="torch seed: weights and data")
    ap.add_argument("--jemc-seed", dest="jemc_seed", type=int, default=0)
    ap.add_argument("--call", type=int, default=0)
    ap.add_argument("--ir", help="step: jemc compile GRAPH PROGRAM --dump=ir")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.mode == "step" and not a.ir:
        ap.error("--mode step needs --ir")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    pieces(a) if a.mode == "pieces" else step(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
