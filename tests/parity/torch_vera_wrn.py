#!/usr/bin/python3
"""PyTorch reference for VERA's ResNetGenerator and the WRN VERA programs.

Run with Debian's interpreter (python3-torch, torch 1.13):

    /usr/bin/python3 tests/parity/torch_vera_wrn.py generator --feats 16 --batch 4 \
        --dtype float32 --seed 0 --out DIR
    /usr/bin/python3 tests/parity/torch_vera_wrn.py macs

`generator` builds ResNetGenerator(F) as VERA's models/resnet.py defines it
(jem-spec.md 7.1: Linear 128 -> 16F, three up-blocks, BN -> ReLU -> conv3x3
F -> 3 -> tanh, Xavier init, BN in training mode), names it `g` as VERA's
VERAGenerator does, draws h ~ N(0, 1) and r ~ U(-1, 1) and writes
  DIR/weights.safetensors   the state_dict (g.input_linear.weight, g.block1.bn1.running_mean, ...)
  DIR/inputs.safetensors    h [B, 128], r [B, 3, 32, 32]
  DIR/expected.safetensors  x = G(h), s = sum(x * r), grad.<param> = ds/dparam for every
                            parameter, and the BN buffers after the forward pass under their names
`macs` prints the generator's parameters and multiply-accumulates per sample at
F = 128 and 256 (forward hooks, as torch_ref.py counts) and checks them against
jem-spec.md's 0.40 / 1.59 GMAC and 4.08M parameters (F = 256).

tests/t_vera_wrn.c runs jemc on the same files; tests/parity/README.md.
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref  # noqa: E402  (write_safetensors, macs_per_image, the WRN)

NOISE_DIM = 128  # VERA hard-codes the input linear's 128 inputs (jem-spec 7.3a.9)


def bn(m, x, track):
    """m(x) in training mode; without track, the batch statistics alone."""
    if track:
        return m(x)
    return F.batch_norm(x, None, None, m.weight, m.bias, training=True, eps=m.eps)


class UpBlock(nn.Module):
    """VERA's GeneratorBlock(F, F, upsample=True): the shortcut is the upsampled input."""

    def __init__(self, feats):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(feats)
        self.conv1 = nn.Conv2d(feats, feats, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(feats)
        self.conv2 = nn.Conv2d(feats, feats, 3, padding=1)

    def forward(self, x, track=True):
        shortcut = F.interpolate(x, scale_factor=2, mode="nearest")
        h = F.relu(bn(self.bn1, x, track))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(bn(self.bn2, h, track)))
        return h + shortcut


class ResNetGenerator(nn.Module):
    def __init__(self, feats):
        super().__init__()
        self.feats = feats
        self.input_linear = nn.Linear(NOISE_DIM, 16 * feats)
        self.block1 = UpBlock(feats)
        self.block2 = UpBlock(feats)
        self.block3 = UpBlock(feats)
        self.output_bn = nn.BatchNorm2d(feats)
        self.output_conv = nn.Conv2d(feats, 3, 3, padding=1)
        # VERA's init: Xavier-uniform, gain calculate_gain('relu') = sqrt(2) except
        # the input linear's 1; biases zero
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                gain = 1.0 if m is self.input_linear else nn.init.calculate_gain("relu")
                nn.init.xavier_uniform_(m.weight, gain=gain)
                nn.init.zeros_(m.bias)

    def forward(self, h, track=True):
        """track=False: batch statistics, running ones untouched (jemc's gen_batch)."""
        x = self.input_linear(h).view(-1, self.feats, 4, 4)
        for blk in (self.block1, self.block2, self.block3):
            x = blk(x, track)
        return torch.tanh(self.output_conv(F.relu(bn(self.output_bn, x, track))))


class Wrapper(nn.Module):
    """Only for the names: VERA's VERAGenerator holds the network as `g`."""

    def __init__(self, g):
        super().__init__()
        self.g = g


def generator(args):
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    torch.manual_seed(args.seed)
    # initialised in float32, then cast (float64 weights are the float32 ones widened)
    g = ResNetGenerator(args.feats)
    # VERA's init leaves BN at weight 1, bias 0: perturb them so that a swapped
    # scale and shift, or a BN parameter whose gradient is lost, shows
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    g = g.to(dtype)
    g.train()
    h = torch.randn(args.batch, NOISE_DIM).to(dtype)
    r = (torch.rand(args.batch, 3, 32, 32) * 2 - 1).to(dtype)
    wrapped = Wrapper(g)
    weights = [(n, t.clone()) for n, t in wrapped.state_dict().items()]
    x = g(h)
    s = (x * r).sum()
    names = ["g." + n for n, _ in g.named_parameters()]
    grads = torch.autograd.grad(s, list(g.parameters()))
    buffers = [("g." + n, b.clone()) for n, b in g.named_buffers()]
    meta = {"what": "generator", "feats": args.feats, "batch": args.batch,
            "dtype": args.dtype, "seed": args.seed}
    os.makedirs(args.out, exist_ok=True)
    torch_ref.write_safetensors(os.path.join(args.out, "weights.safetensors"), weights, meta)
    torch_ref.write_safetensors(os.path.join(args.out, "inputs.safetensors"), [("h", h), ("r", r)], meta)
    expected = [("x", x.detach()), ("s", s.detach())]
    expected += [("grad." + n, gr) for n, gr in zip(names, grads)]
    expected += buffers
    torch_ref.write_safetensors(os.path.join(args.out, "expected.safetensors"), expected, meta)
    return {"n_params": sum(p.numel() for p in g.parameters())}


def generator_cost(feats):
    torch.manual_seed(0)
    g = ResNetGenerator(feats)
    g.eval()  # one sample: training-mode BN needs more than one value per channel
    return (sum(p.numel() for p in g.parameters()),
            torch_ref.macs_per_image(g, torch.zeros(1, NOISE_DIM)))


def macs(args):
    rows = []
    # jem-spec.md 7.1: F = 256 has 4.08M parameters and ~1.59 GMAC; F = 128 ~0.40 GMAC
    want = {128: (None, 0.40e9), 256: (4.08e6, 1.59e9)}
    for feats in (128, 256):
        p, m = generator_cost(feats)
        wp, wm = want[feats]
        ok = abs(m - wm) <= 0.005 * wm and (wp is None or abs(p - wp) <= 0.005 * wp)
        rows.append({"feats": feats, "n_params": p, "macs_per_sample": m,
                     "gmac": round(m / 1e9, 4), "spec_gmac": wm / 1e9, "ok": ok})
    for r in rows:
        print(json.dumps(r))
    return 0 if all(r["ok"] for r in rows) else 1


# --------------------------------------------------------------------------
# VERA on the WRN (graphs/vera_wrn28.graph): the pieces and one whole step,
# with tests/parity/torch_vera.py's VERA (helper "graphs"' reference of
# lib/vera.graph, written for vera_mnist.graph) on this file's models
# --------------------------------------------------------------------------

IMG = [3, 32, 32]


def vera_build(args):
    import torch_vera
    dt = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    torch.manual_seed(args.seed)
    f = torch_ref.JemWideResNet(args.depth, args.widen, 10)
    gen = torch_vera.VERAGenerator(NOISE_DIM, 1, args.sigma, args.post_sigma)
    gen.g = ResNetGenerator(args.feats)     # VERAGenerator around the ResNetGenerator, as VERA's CIFAR runs
    # BN affine parameters away from (1, 0), running statistics away from (0, 1)
    with torch.no_grad():
        for m in gen.g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return torch_vera, f.to(dt), gen.to(dt), dt


def vera_pieces(args):
    """tests/t_vera_wrn.c's vera_pieces / vera_mala_pieces programs (the draws given)."""
    tv, f, gen, dt = vera_build(args)
    B, D, K = args.batch, NOISE_DIM, args.K
    state0 = tv.state_list(f, gen)
    r32 = lambda *shape: torch.randn(*shape, dtype=torch.float32).to(dt)  # noqa: E731
    h, eps, noise, n1 = r32(B, D), r32(B, *IMG), r32(K, B, D), r32(B, D)
    if args.balanced:
        # every posterior draw at the same distance sqrt(D) from h: the proposal's log
        # density (sum noise^2 / 2 varies by ~8 nats over K draws at D = 128) is then
        # equal for all k, and with a wide sigma the weights are far from one-hot
        noise = (noise / noise.norm(dim=2, keepdim=True) * math.sqrt(D)).to(torch.float32).to(dt)
    x = (torch.rand(B, *IMG, dtype=torch.float32) * 2 - 1).to(dt)
    y = torch.randint(10, (B,), dtype=torch.int64)
    e, nh, ne = r32(B, *IMG), r32(B, D), r32(B, *IMG)
    plist = tv.param_list(f, gen)
    exp = []
    x_g, _ = gen.sample(h, eps)                      # the three training-mode forwards, in order
    ent, c, pl, w = gen.entropy_obj(x_g, h, noise, n1)
    exp += [("ent", ent.detach()), ("score", c)] + tv.grads_of(ent, plist, "gent")
    exp += [("pl", pl.detach())] + tv.grads_of(pl, plist, "gpl")
    el, parts = tv.ebm_loss(f, x, x_g, args, y)
    exp += [("el", el.detach())] + tv.grads_of(el, plist, "gel")
    lg = tv.lse(f(x_g))
    lgen = -(lg.mean() + args.ent_weight * ent)      # L_G (the G-step's loss before any update)
    exp += [("lgen", lgen.detach())] + tv.grads_of(lgen, plist, "glgen")
    for n, b in gen.g.named_buffers():
        exp.append(("g." + n, b.detach().clone()))
    eta = torch.tensor(args.eta, dtype=dt)
    summary = dict(tv.weight_stats(w), ent=float(ent), pl=float(pl), el=float(el), lgen=float(lgen))
    u = {}
    for name, cond in (("mala", False), ("mala_cond", True)):
        log_a, (uh, ue) = tv.mala_step(f, gen, h, e, eta, y, cond, args.mala_prior, nh, ne)
        a = log_a.exp()
        uu = torch.where(torch.arange(B) % 2 == 0, a / 2, a * 2)   # even rows accept, odd reject
        acc = uu < a
        hn = torch.where(acc[:, None], uh, h)
        en = torch.where(acc[:, None, None, None], ue, e)
        xn = gen.g(hn, track=False) + gen.logsigma.exp() * en
        u[name] = uu
        exp += [(name + "_h", hn.detach()), (name + "_e", en.detach()), (name + "_accept", acc.to(dt)),
                (name + "_samples", xn.detach()), (name + "_log_a", log_a)]
        summary[name + "_log_a"] = log_a.tolist()
    os.makedirs(args.out, exist_ok=True)
    torch_ref.write_safetensors(os.path.join(args.out, "state.safetensors"), state0)
    torch_ref.write_safetensors(os.path.join(args.out, "inputs.safetensors"),
                                [("h", h), ("eps", eps), ("noise", noise), ("n1", n1), ("x", x), ("y", y), ("e", e),
                                 ("nh", nh), ("ne", ne), ("eta", eta), ("u", u["mala"]), ("u_cond", u["mala_cond"])])
    torch_ref.write_safetensors(os.path.join(args.out, "expected.safetensors"), exp)
    return summary


def vera_step(args):
    """One whole train_step_vera / train_step_vera_unsup of vera_wrn28.graph, as
    VERA's train.py runs it, with jemc's draws (Philox, stream ids from --ir)."""
    tv, f, gen, dt = vera_build(args)
    B = args.batch
    unsup = args.program == "train_step_vera_unsup"
    state0 = tv.state_list(f, gen)
    x = (torch.rand(B, *IMG, dtype=torch.float32) * 2 - 1).to(dt)
    y = torch.randint(10, (B,), dtype=torch.int64)
    with open(args.ir) as fh:
        h, eps, noise, n1 = tv.step_draws(fh.read(), args.program, args.call, args.jemc_seed, dt)
    f_params = [(n, p) for n, p in f.named_parameters()]
    g_params = [("g." + n, p) for n, p in gen.g.named_parameters()] + [("g.logsigma", gen.logsigma)]
    post_params = [("post_logsigma", gen.post_logsigma)]
    betas = (args.beta1, args.beta2)
    e_opt = torch.optim.Adam([p for _, p in f_params], lr=args.lr * 1 / args.warmup, betas=betas, eps=1e-8)
    g_opt = torch.optim.Adam([p for _, p in g_params], lr=args.glr * 1 / args.warmup, betas=betas, eps=1e-8)
    post_opt = torch.optim.Adam([p for _, p in post_params], lr=args.post_lr)  # (0.9, 0.999), no warm-up
    sigma = gen.logsigma.exp().detach().clone()
    x_g, _ = gen.sample(h, eps)
    e_loss, parts = tv.ebm_loss(f, x, x_g, args, None if unsup else y)
    e_opt.zero_grad()
    e_loss.backward()
    gn_e = tv.grad_norm(f_params)
    e_opt.step()
    ent_weight = args.ent_weight_unsup if unsup else args.ent_weight
    lg = tv.lse(f(x_g))                                 # the UPDATED f
    ent, c, pl, w = gen.entropy_obj(x_g, h, noise, n1, post_opt)
    gn_post = gen.post_logsigma.grad.norm().detach()
    g_loss = -(lg.mean() + ent_weight * ent)
    g_opt.zero_grad()                                   # drops the ELBO's leaks into G (7.3a.3)
    g_loss.backward()
    gn_g = tv.grad_norm(g_params)
    g_opt.step()
    with torch.no_grad():
        gen.logsigma.clamp_(math.log(args.min_sigma), math.log(args.max_sigma))
    out = [("loss", e_loss.detach()), ("loss_g", g_loss.detach()), ("e_data", -parts["ld"].mean().detach()),
           ("e_sample", -parts["lg"].mean().detach()), ("entropy", ent.detach()), ("sigma", sigma)]
    if not unsup:
        out += [("loss_ce", parts["c_loss"].detach()), ("acc", tv.accuracy(parts["logits"], y).detach())]
    st = tv.state_list(f, gen)
    st += tv.adam_state(e_opt, f_params, "opt") + tv.adam_state(g_opt, g_params, "opt_g") + \
        tv.adam_state(post_opt, post_params, "opt_post")
    for name in ("opt", "opt_g", "opt_post"):
        st.append((name + ".step", torch.tensor(1, dtype=torch.int64)))
    st += [("opt.grad_norm", gn_e), ("opt_g.grad_norm", gn_g), ("opt_post.grad_norm", gn_post)]
    os.makedirs(args.out, exist_ok=True)
    torch_ref.write_safetensors(os.path.join(args.out, "state.safetensors"), state0)
    torch_ref.write_safetensors(os.path.join(args.out, "inputs.safetensors"), [("x", x)] if unsup else [("x", x), ("y", y)])
    torch_ref.write_safetensors(os.path.join(args.out, "expected.safetensors"), out + st)
    return dict(tv.weight_stats(w), loss=float(e_loss), loss_g=float(g_loss), entropy=float(ent),
                logsigma_after=float(gen.logsigma), post_loss=float(pl))


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["generator", "macs", "pieces", "step"])
    ap.add_argument("--feats", type=int, default=16, help="g_feats")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    # VERA (pieces, step): the EBM and VERA's settings, names as vera_wrn28.graph's config
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--widen", type=int, default=1)
    ap.add_argument("--program", choices=["train_step_vera", "train_step_vera_unsup"], default="train_step_vera")
    ap.add_argument("--K", type=int, default=20, help="posterior draws (post_samples)")
    ap.add_argument("--sigma", type=float, default=0.01, help="initial generator sigma")
    ap.add_argument("--post-sigma", dest="post_sigma", type=float, default=0.1, help="initial posterior width")
    ap.add_argument("--min-sigma", dest="min_sigma", type=float, default=0.01)
    ap.add_argument("--max-sigma", dest="max_sigma", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--glr", type=float, default=6e-5)
    ap.add_argument("--post-lr", dest="post_lr", type=float, default=3e-5)
    ap.add_argument("--beta1", type=float, default=0.0)
    ap.add_argument("--beta2", type=float, default=0.9)
    ap.add_argument("--warmup", type=int, default=2500)
    ap.add_argument("--ent-weight", dest="ent_weight", type=float, default=1e-4)
    ap.add_argument("--ent-weight-unsup", dest="ent_weight_unsup", type=float, default=1.0)
    ap.add_argument("--clf-weight", dest="clf_weight", type=float, default=100.0)
    ap.add_argument("--clf-ent-weight", dest="clf_ent_weight", type=float, default=0.0)
    ap.add_argument("--pg-control", dest="pg_control", type=float, default=0.1)
    ap.add_argument("--p-control", dest="p_control", type=float, default=0.0)
    ap.add_argument("--n-control", dest="n_control", type=float, default=0.0)
    ap.add_argument("--eta", type=float, default=0.01, help="MALA step (pieces)")
    ap.add_argument("--balanced", action="store_true",
                    help="pieces: posterior draws of equal norm (importance weights far from one-hot)")
    ap.add_argument("--mala-prior", dest="mala_prior", type=float, default=0.0)
    ap.add_argument("--jemc-seed", dest="jemc_seed", type=int, default=0, help="jemc's --seed (Philox key)")
    ap.add_argument("--call", type=int, default=0, help="Philox call of the step")
    ap.add_argument("--ir", help="jemc compile GRAPH PROGRAM --dump=ir (step: the draws' stream ids)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.what != "macs" and not args.out:
        ap.error("--out is required")
    if args.what == "step" and not args.ir:
        ap.error("step needs --ir")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(max(1, args.threads))
    if args.what == "macs":
        return macs(args)
    run = {"generator": generator, "pieces": vera_pieces, "step": vera_step}[args.what]
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
