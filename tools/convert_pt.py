#!/usr/bin/python3
"""Convert checkpoints of the official JEM code to jemc's and back.

    /usr/bin/python3 tools/convert_pt.py CKPT.pt -o model.safetensors
    /usr/bin/python3 tools/convert_pt.py --to-pt model.safetensors -o CKPT.pt

Forward: a .pt of wgrathwohl/JEM, JEM++ or SADA-JEM (--norm None or --norm batch):
{"model_state_dict": CCF state_dict, "replay_buffer": [N, 3, 32, 32]} or a bare
state_dict, "module." prefixes (DataParallel) stripped. The result is a jemc
checkpoint of graphs/jem_wrn28.graph compiled with the printed -D flags
(`EXE eval ... --ckpt`, `EXE exec ... --state`); the names map as
tools/jem_layout.py says. A --norm batch model keeps its batch norms (weight, bias,
running_mean, running_var, num_batches_tracked as i64) under the same names without
"f.", for jem_wrn28 -D norm=1 (printed). Anything that cannot be mapped (an instance,
layer or act norm, an unknown key, a missing key, a wrong shape) is refused with the
key named.

VERA: a .pt of wgrathwohl/VERA's train.py ({"model": {"logp_net", "g"}, "optimizer",
"scheduler", "epoch", ...}) with the Wide_ResNet EBM (--wide_resnet / --thicc_resnet,
--norm None; any --dropout) converts the same way: model.logp_net ("logp_net." prefix
of JEM(...) stripped) to the EBM's parameters, names unchanged, and the generator model.g
(VERAGenerator(ResNetGenerator(feats))) to graphs/vera_wrn28.graph's g.* (batch-norm
running statistics included), logsigma [1] to the scalar g.logsigma, post_logsigma as it
is; VERAHMCGenerator's stepsize (an HMC step jemc takes as an input) is dropped with a
note. The result is a checkpoint of vera_wrn28 with both networks (compile flags printed,
g_feats and noise_dim included). --ebm-only leaves model.g out: a checkpoint of
jem_wrn28. The optimizers and schedulers are left out (named in a note). VERA also saves
Adam's and MultiStepLR's states (floats, a collections.Counter) that PyTorch 1.13's
weights_only loader refuses: such files load through a restricted unpickler that
builds tensors, OrderedDict, Counter and torch.Size, nothing else (a file that
would run code is refused, naming the callable).

Reverse (--to-pt): a jemc checkpoint of jem_wrn28 -> {"model_state_dict",
"replay_buffer"} that the official CCF(depth, width, norm, n_classes) loads with
load_state_dict(strict=True), norm=None or, from a -D norm=1 checkpoint, "batch". The heads CCF never reads (f.linear,
energy_output) are not in a jemc checkpoint; they are written as zeros.
With --layout vera: {"model": {"logp_net": ..., "g": ...}}
that VERA's JEM(Wide_ResNet(depth, widen, classes)) (or, for one class, the bare
Wide_ResNet) and, where the checkpoint has vera_wrn28's generator, VERAGenerator(
ResNetGenerator(g_feats), noise_dim) load strictly (eval.py's load of both); stepsize is
written as its initial 1/noise_dim; no replay buffer.
Optimizer states and knobs (opt*.*, config.*) have no official counterpart
and are left out, and so are lib/informative.graph's gm_mean and gm_chol (JEM++ and
SADA-JEM keep their class means and covariances in separate files, not in the
checkpoint; a note names them when they are not empty). Exit status: 0, or 1 with
one line naming the problem.
"""

import argparse
import collections
import pickle
import re
import types
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jem_layout  # noqa: E402
import st_io  # noqa: E402

GRAPH = "graphs/jem_wrn28.graph"
VERA_GRAPH = "graphs/vera_wrn28.graph"


class ConvertError(Exception):
    pass


def load_pt(path):
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK..) or, before PyTorch 1.6, a pickle (protocol byte 0x80)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise ConvertError("%s: not a PyTorch .pt file (neither a zip archive nor a pickle)" % path)
    try:
        obj = _torch_load(path)
    except ConvertError:
        raise
    except Exception as e:  # torch raises several kinds for a file that is not a checkpoint
        raise ConvertError("%s: not a PyTorch checkpoint of tensors (torch.load: %s)"
                           % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if not isinstance(obj, dict):
        raise ConvertError("%s: holds a %s, not a dict (model_state_dict / replay_buffer or a state_dict)"
                           % (path, type(obj).__name__))
    if "model" in obj:           # VERA's train.py
        model = obj["model"]
        if not isinstance(model, dict) or "logp_net" not in model:
            raise ConvertError("%s: has 'model' but no 'model.logp_net' (VERA's checkpoints hold model.logp_net "
                               "and model.g)" % path)
        sd, gen = model["logp_net"], model.get("g")
        extra = [k for k in obj if k != "model"] + ["model." + k for k in model if k not in ("logp_net", "g")]
        if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
            raise ConvertError("%s: 'model.logp_net' is not a dict of tensors" % path)
        if gen is not None and (not isinstance(gen, dict) or not all(torch.is_tensor(v) for v in gen.values())):
            raise ConvertError("%s: 'model.g' is not a dict of tensors" % path)
        return sd, None, extra, "vera", gen
    if "model_state_dict" in obj:
        sd, buf = obj["model_state_dict"], obj.get("replay_buffer")
        extra = [k for k in obj if k not in ("model_state_dict", "replay_buffer")]
    else:
        sd, buf, extra = obj, None, []
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ConvertError("%s: 'model_state_dict' is not a dict of tensors" % path)
    return sd, buf, extra, "jem", None


def _torch_load(path):
    """weights_only: official checkpoints hold only tensors and plain values; no pickled code runs.
    VERA's also hold Adam's and MultiStepLR's states (floats, a collections.Counter), which
    PyTorch 1.13's weights_only loader refuses (it has no BINFLOAT): those zip-format files are
    read by torch's own zip reader with _Restricted, which builds nothing outside _ALLOWED.
    (torch.load itself cannot take it: 1.13 replaces any pickle_module by pickle when
    weights_only is False.)"""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = e
    if hasattr(torch.serialization, "safe_globals"):          # PyTorch >= 2.5: floats are fine there
        try:
            with torch.serialization.safe_globals([collections.Counter]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise first
    with open(path, "rb") as f:
        if not torch.serialization._is_zipfile(f):
            raise first
    with open(path, "rb") as f, torch.serialization._open_zipfile_reader(f) as z:
        try:
            return torch.serialization._load(z, "cpu", _RESTRICTED_PICKLE, encoding="utf-8")
        except pickle.UnpicklingError as e:
            raise ConvertError("%s: not a checkpoint of tensors and plain values (%s)" % (path, e))


_ALLOWED = {("collections", "OrderedDict"), ("collections", "Counter"), ("torch", "Size"),
            ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
            ("torch._utils", "_rebuild_parameter_with_state")} | {
            ("torch", t) for t in ("float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16",
                                   "int32", "int64", "bool")}


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError("it would build %s.%s" % (module, name))


_RESTRICTED_PICKLE = types.SimpleNamespace(Unpickler=_Restricted, __name__="pickle",
                                           load=lambda f, **kw: _Restricted(f, **kw).load())


def strip_module(sd):
    """DataParallel saves every key as module.KEY."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}, True
    return sd, False


def to_jemc(args):
    sd, buf, extra, layout, gen = load_pt(args.input)
    if gen is not None and args.ebm_only:
        extra.append("model.g")
        gen = None
    sd, had_module = strip_module(sd)
    prefix = ""
    if layout == "vera" and sd and all(k.startswith("logp_net.") for k in sd):
        prefix = "logp_net."     # JEM(Wide_ResNet) of --clf / --jem
    out, dropped, official = {}, [], {}
    for k, v in sd.items():
        if layout == "vera":
            name = jem_layout.vera_to_jemc_name(k[len(prefix):], prefix)
        else:
            name = jem_layout.to_jemc_name(k)
        if name is None:
            dropped.append(k)
            continue
        out[name] = v
        official[name] = k

    def name_of(n):
        return official.get(n) or (prefix + n if layout == "vera" else jem_layout.to_official_name(n))
    norm = jem_layout.check_norm(out, name_of)
    depth, widen, classes = jem_layout.infer_config(out)
    want = jem_layout.check_params(out, depth, widen, classes, name_of=name_of, norm=norm)
    tensors = [(n, out[n].to(_dtype(n))) for n, _ in want]
    flags = "-D depth=%d -D widen=%d -D classes=%d" % (depth, widen, classes)
    if norm:
        flags += " -D norm=1"
    graph, gnote = GRAPH, ""
    if gen is not None:
        gt, feats, noise_dim, gdrop = jem_layout.vera_gen_to_jemc(gen)
        tensors += [(n, gt[n].to(_dtype(n)))
                    for n, _, _ in jem_layout.gen_params(feats, noise_dim)]
        flags += " -D g_feats=%d -D noise_dim=%d" % (feats, noise_dim)
        graph = VERA_GRAPH
        gnote = ", generator ResNetGenerator(%d), noise_dim %d" % (feats, noise_dim)
    if buf is not None:
        if not torch.is_tensor(buf) or buf.dim() != 4 or list(buf.shape[1:]) != [3, 32, 32]:
            raise ConvertError("'replay_buffer' has shape %s, jem_wrn28's replay state is [N, 3, 32, 32]"
                               % (list(buf.shape) if torch.is_tensor(buf) else type(buf).__name__))
        tensors.append(("replay", buf.to(torch.float32)))
        flags += " -D buffer_size=%d" % buf.shape[0]
    meta = {"format": "pt", "jemc.graph": graph, "jemc.convert.source": os.path.basename(args.input),
            "jemc.convert.compile": flags}
    st_io.write(args.output, tensors, meta)
    print("%s: %sWRN-%d-%d, %d classes%s%s%s -> %s (%d tensors)" % (
        args.input, "VERA " if layout == "vera" else "", depth, widen, classes,
        ", batch norm (running statistics included)" if norm else "", gnote,
        ", replay buffer of %d" % buf.shape[0] if buf is not None else ", no replay buffer", args.output, len(tensors)))
    if had_module:
        print("note: stripped the DataParallel prefix 'module.'")
    if dropped:
        print("note: dropped %s (CCF's logits and energy never read them)" % ", ".join(sorted(dropped)))
    if extra:
        print("note: ignored checkpoint entries %s%s" % (", ".join(sorted(map(str, extra))),
              " (model.g: VERA's generator, left out by --ebm-only)" if "model.g" in extra else ""))
    if gen is not None and gdrop:
        print("note: dropped model.g.stepsize (VERAHMCGenerator's HMC step; jemc's mala_latent takes its step "
              "eta as an input)")
    print("compile with: jemc compile %s %s -o EXE" % (graph, flags))


def _dtype(name):
    """BatchNorm2d's step counter is int64 in PyTorch and i64 in jemc; everything else float32."""
    return torch.int64 if name.endswith("num_batches_tracked") else torch.float32


def to_pt(args):
    try:
        st, _ = st_io.read(args.input)
    except OSError as e:
        raise ConvertError("%s: %s" % (args.input, e.strerror))
    params, buf, gparams, gm = {}, None, {}, []
    for n, v in st.items():
        if n == "replay":
            buf = v
        elif n in ("gm_mean", "gm_chol"):
            gm.append(n)        # lib/informative.graph's per-class Gaussians (empty unless -D gm_on=1)
        elif re.match(r"^opt\w*\.", n) or n.startswith("config."):
            continue            # the graphs' optimizers (opt, opt_g, opt_post, opt_jempp, opt_sada: moments,
                                # momentum buffers, step, grad norm) and knobs
        elif n.startswith("g.") or n == "post_logsigma":
            if args.layout != "vera":
                raise ConvertError("%s: tensor '%s' is vera_wrn28's generator; only --layout vera writes it"
                                   % (args.input, n))
            gparams[n] = v
        elif (n == "conv1.weight" or n == "conv1.bias" or n.startswith("layer") or n.startswith("linear.")
              or n.startswith("bn1.")):
            params[n] = v
        else:
            raise ConvertError("%s: tensor '%s' has no counterpart in the official CCF model" % (args.input, n))
    norm = jem_layout.check_norm(params)
    depth, widen, classes = jem_layout.infer_config(params)
    want = jem_layout.check_params(params, depth, widen, classes, norm=norm)
    if any(st[n].numel() for n in gm):
        print("note: left out %s (JEM++'s informative initialisation: the official code keeps its class means "
              "and covariances in separate files, DATASET_mean.pt and DATASET_cov.pt, not in the checkpoint)"
              % " and ".join(gm))
    if args.layout == "vera":
        if norm:
            raise ConvertError("%s: a batch-norm WRN (jem_wrn28 -D norm=1): VERA's Wide_ResNet skips layer1.0's "
                               "bn1, so --layout vera takes only norm-free checkpoints" % args.input)
        return to_pt_vera(args, params, buf, depth, widen, classes, want, gparams)
    sd = {}
    trunk = [(n, s) for n, s in want if not n.startswith("linear.")]
    for n, _ in trunk:
        sd[jem_layout.to_official_name(n)] = params[n].to(_dtype(n)).clone()
    for n, shape in jem_layout.unused_heads(widen, args.layout):
        sd[n] = torch.zeros(shape)
    sd["class_output.weight"] = params["linear.weight"].to(torch.float32).clone()
    sd["class_output.bias"] = params["linear.bias"].to(torch.float32).clone()
    obj = {"model_state_dict": sd}
    if buf is not None:
        obj["replay_buffer"] = buf.to(torch.float32).clone()
    tmp = "%s.tmp.%d" % (args.output, os.getpid())
    torch.save(obj, tmp)
    os.replace(tmp, args.output)
    print("%s: WRN-%d-%d, %d classes -> %s (%s CCF(%d, %d, norm=%s, n_classes=%d); unused heads %s are zeros)"
          % (args.input, depth, widen, classes, args.output, args.layout, depth, widen,
             "'batch'" if norm else "None", classes,
             "f.linear and energy_output" if args.layout == "jem" else "energy_output"))


def to_pt_vera(args, params, buf, depth, widen, classes, want, gparams):
    """VERA's Wide_ResNet has jemc's names; JEM(...) (--clf, classes > 1) prefixes them with logp_net.
    vera_wrn28's generator goes to model.g in VERAGenerator's state_dict order."""
    prefix = "logp_net." if classes > 1 else ""
    sd = {prefix + n: params[n].to(torch.float32).clone() for n, _ in want}
    model, gdesc = {"logp_net": sd}, "no generator model.g"
    if gparams:
        if "g.input_linear.weight" not in gparams or "post_logsigma" not in gparams:
            raise ConvertError("%s: has generator tensors but no '%s'" % (
                args.input, "g.input_linear.weight" if "g.input_linear.weight" not in gparams else "post_logsigma"))
        feats, noise_dim = gparams["g.input_linear.weight"].shape[0] // 16, gparams["post_logsigma"].numel()
        gwant = jem_layout.gen_params(feats, noise_dim)
        names = {n for n, _, _ in gwant}
        for n in gparams:
            if n not in names:
                raise ConvertError("%s: tensor '%s' has no counterpart in VERA's VERAGenerator(ResNetGenerator(%d))"
                                   % (args.input, n, feats))
        g = {}
        for n, shape, key in gwant:
            if n not in gparams:
                raise ConvertError("%s: missing tensor '%s' (vera_wrn28's generator, g_feats %d)" % (args.input, n, feats))
            v = gparams[n]
            if list(v.shape) != shape:
                raise ConvertError("%s: tensor '%s' has shape %s, g_feats %d needs %s"
                                   % (args.input, n, list(v.shape), feats, shape))
            g[key] = v.to(torch.int64 if n.endswith("num_batches_tracked") else torch.float32).clone()
        g["logsigma"] = g["logsigma"].reshape(1)
        g["stepsize"] = torch.tensor(1.0 / noise_dim)
        order = ["logsigma", "stepsize", "post_logsigma"] + [k for _, _, k in gwant if k.startswith("g.")]
        model["g"] = {k: g[k] for k in order}
        gdesc = "VERAGenerator(ResNetGenerator(feats=%d), noise_dim=%d), stepsize 1/%d" % (feats, noise_dim, noise_dim)
    tmp = "%s.tmp.%d" % (args.output, os.getpid())
    torch.save({"model": model}, tmp)
    os.replace(tmp, args.output)
    print("%s: WRN-%d-%d, %d classes -> %s (VERA %s(depth=%d, widen_factor=%d, num_classes=%d, norm=None)%s; "
          "%s)" % (args.input, depth, widen, classes, args.output,
                   "JEM(Wide_ResNet" if prefix else "Wide_ResNet", depth, widen, classes,
                   ")" if prefix else "", gdesc))
    if buf is not None:
        print("note: left out the replay buffer (VERA's checkpoints have none)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help="official .pt (or, with --to-pt, a jemc .safetensors checkpoint)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--to-pt", action="store_true", help="jemc checkpoint -> official .pt")
    ap.add_argument("--layout", choices=["jem", "jempp", "vera"], default="jem",
                    help="--to-pt for JEM's CCF (with f.linear), JEM++/SADA-JEM's (without) or VERA's "
                         "logp_net (model.logp_net)")
    ap.add_argument("--ebm-only", action="store_true",
                    help="VERA: convert model.logp_net alone (a jem_wrn28 checkpoint), leaving the generator out")
    args = ap.parse_args(argv)
    try:
        (to_pt if args.to_pt else to_jemc)(args)
    except (ConvertError, jem_layout.LayoutError, st_io.StError) as e:
        print("convert_pt: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
