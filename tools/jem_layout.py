"""The official JEM code's model layout and jemc's jem_wrn28 names (tools/convert_pt.py).

Official JEM (wgrathwohl/JEM 3d01161 train_wrn_ebm.py; JEM++ and SADA-JEM copy it) saves
{"model_state_dict": CCF.state_dict(), "replay_buffer": [N, 3, 32, 32]} where CCF has
  f               wideresnet.Wide_ResNet(depth, width, norm): conv1, layer1..3 of
                  wide_basic (bn1, conv1, bn2, conv2, shortcut.0), bn1, linear;
                  f(x) returns the pooled features lrelu(bn1(h)) -> avg_pool 8 -> flatten
  class_output    Linear(64k, classes): CCF's logits = class_output(f(x))
  energy_output   Linear(64k, 1): the energy of the unconditional model F (--uncond) only
jemc's lib/wrn.graph computes the same logits with the head named `linear`:
  f.conv1.*, f.layerS.I.{conv1,conv2,shortcut.0}.*  ->  the same name without "f."
  class_output.*                                    ->  linear.*
  f.linear.*      Wide_ResNet's own head (Linear(64k, 10) whatever the classes): f's forward
                  never calls it, so CCF's outputs do not depend on it: dropped
  energy_output.* not used by CCF (logits-based energy): dropped
  f.bn1.*, f.layerS.I.bn{1,2}.*  the norm slots (get_norm; Identity, no keys, at --norm None):
                  --norm batch (JEM++'s and SADA-JEM's recipes) -> the same name without "f."
                  in jem_wrn28 -D norm=1, all five of BatchNorm2d's tensors: weight, bias,
                  running_mean, running_var, num_batches_tracked (i64 []).
                  --norm instance (InstanceNorm2d affine: weight, bias), layer (GroupNorm(1):
                  weight, bias) and act (ActNorm: loc, scale, initialized): refused, jemc's
                  WRN has batch norm only.
Batch norm in the official code, checked in wgrathwohl/JEM 3d01161 (wideresnet.py get_norm),
sndnyang/JEMPP fba6ba5 and sndnyang/SADAJEM 9d8f3c7 (models/norms.py get_norm): the same
nn.BatchNorm2d(C, momentum=0.9) (PyTorch's convention: running <- 0.1 running + 0.9 batch),
eps 1e-5, affine, track_running_stats, so num_batches_tracked is in every state_dict.
wide_basic.bn1 normalises the block input (in_planes channels), bn2 conv1's output
(planes), Wide_ResNet.bn1 layer3's output (64k); every block applies both (unlike VERA).
JEM++/SADA-JEM differences: Wide_ResNet.linear commented out (no f.linear), leak passed
through (0.2 everywhere), get_norm also maps the string "none" to Identity; JEMPP's F calls
self.f(x, feature=True) (its wideresnet_yopo variant has the same keys); SADA-JEM's Wide_ResNet
adds layer4 and re-creates bn1 at 128k channels for 64-pixel datasets (not jem_wrn28's
32x32: such a file is refused as an unknown key). Their checkpoint() saves
{"model_state_dict", "replay_buffer"} as JEM; SADA-JEM's eval also loads a bare state_dict
and wraps f in DataParallel for several GPUs ("module." keys); both evaluate in f.eval().
--norm defaults: batch in eval_jempp.py, train_sadajem.py and eval_sadajem.py, None in
train_jempp.py (JEM++'s published recipe passes --norm batch).

Official VERA (wgrathwohl/VERA train.py save_ckpt) saves {"model": {"logp_net": ...,
"g": ...}, "optimizer", "scheduler", "epoch", "itr", metric lists}; logp_net is
JEM(Wide_ResNet(28, k, classes)) with --clf/--jem (keys "logp_net.*") or the bare
Wide_ResNet with one output (an unconditional EBM, energy -f(x)). VERA's Wide_ResNet
returns linear(pooled features), so its names are jemc's as they are:
  logp_net.conv1.*, logp_net.layerS.I.{conv1,conv2,shortcut.0}.*, logp_net.linear.*
                  ->  the name without "logp_net."
  logp_net.bn1.*, logp_net.layerS.I.bn{1,2}.*  norm layers: refused. VERA's wide_basic
                  (91ff0dd models/wideresnet.py) has a `first` flag: layer1.0 creates bn1
                  (its keys are in the state_dict) but its forward skips it, which
                  jemc's -D norm=1 WRN does not model.
Dropout (--dropout) has no parameters.

VERA's generator "g" (VERAGenerator(ResNetGenerator(feats), noise_dim)) maps to
graphs/vera_wrn28.graph's (docs/graph-language.md 15.4, 15.6):
  g.input_linear.*, g.blockI.{bn1,conv1,bn2,conv2}.*, g.output_bn.*, g.output_conv.*
                  ->  the same name (the blocks are called `as g`); batch norms with
                      running_mean, running_var, num_batches_tracked
  logsigma [1]    ->  g.logsigma, a scalar []
  post_logsigma [noise_dim]  ->  post_logsigma
  stepsize []     the HMC step of VERAHMCGenerator (requires_grad False, 1/noise_dim);
                  jemc's latent MALA takes its step as an input (eta): dropped, and
                  written back as 1/noise_dim
"""

import re


class LayoutError(Exception):
    pass


BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn_params(prefix, channels):
    """BatchNorm2d's state_dict entries (jemc's batch_norm has the same): [(name, shape)]."""
    return [(prefix + "." + f, [] if f == "num_batches_tracked" else [channels]) for f in BN_FIELDS]


def wrn_params(depth, widen, classes, norm=False):
    """jemc's tensors of jem_wrn28 -D depth -D widen -D classes [-D norm=1], in the official
    state_dict's order: [(name, shape)]. With norm, each block's bn1 (on the block input) and
    bn2 (on conv1's output) and the model's bn1 (before the head) are batch norms."""
    n, k = (depth - 4) // 6, widen
    bn = bn_params if norm else (lambda p, c: [])
    out = [("conv1.weight", [16, 3, 3, 3]), ("conv1.bias", [16])]
    cin = 16
    for s, cout in ((1, 16 * k), (2, 32 * k), (3, 64 * k)):
        for i in range(n):
            p = "layer%d.%d." % (s, i)
            out += bn(p + "bn1", cin) + [(p + "conv1.weight", [cout, cin, 3, 3]), (p + "conv1.bias", [cout])]
            out += bn(p + "bn2", cout) + [(p + "conv2.weight", [cout, cout, 3, 3]), (p + "conv2.bias", [cout])]
            if i == 0 and (s != 1 or cin != cout):       # stride 2, or a change of width
                out += [(p + "shortcut.0.weight", [cout, cin, 1, 1]), (p + "shortcut.0.bias", [cout])]
            cin = cout
    out += bn("bn1", 64 * k)
    out += [("linear.weight", [classes, 64 * k]), ("linear.bias", [classes])]
    return out


def unused_heads(widen, layout="jem"):
    """Official tensors CCF's logits never read: (name, shape); filled with zeros by --to-pt.
    JEM++'s (and SADA-JEM's) Wide_ResNet has its `linear` commented out: no f.linear there."""
    d = 64 * widen
    f_linear = [("f.linear.weight", [10, d]), ("f.linear.bias", [10])] if layout == "jem" else []
    return f_linear + [("energy_output.weight", [1, d]), ("energy_output.bias", [1])]


_NORM = re.compile(r"^f\.(bn1|layer\d+\.\d+\.bn[12])\.(\w+)$")


def to_jemc_name(key):
    """Official key (after "module." is stripped) -> jemc name, None for a dropped head.
    A norm slot's weight/bias map as batch norm's; check_norm tells batch norm from
    instance/layer norm (the same two keys) by the running statistics."""
    m = _NORM.match(key)
    if m and m.group(2) not in BN_FIELDS:
        raise LayoutError("'%s' is an ActNorm tensor (the model was trained with --norm act); jemc's WRN "
                          "(graphs/lib/wrn.graph) has batch norm only, so --norm None and --norm batch "
                          "checkpoints convert" % key)
    if key.startswith("f.linear.") or key.startswith("energy_output."):
        return None
    if key.startswith("class_output."):
        return "linear." + key[len("class_output."):]
    if key.startswith("f."):
        return key[2:]
    raise LayoutError("'%s' is not a key of the official CCF model (f.*, class_output.*, energy_output.*)" % key)


def check_norm(sd, name_of=lambda n: n):
    """jemc-named tensors: True for a batch-norm model, False for none; a norm slot with an
    affine weight but no running statistics is InstanceNorm2d or GroupNorm(1): refused."""
    slots = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in sd if re.match(r"^(bn1|layer\d+\.\d+\.bn[12])\.", n)))
    for slot in slots:
        if slot + ".running_mean" not in sd and slot + ".running_var" not in sd:
            raise LayoutError("'%s' is a normalisation layer without running statistics (the model was trained "
                              "with --norm instance or layer); jemc's WRN (graphs/lib/wrn.graph) has batch norm "
                              "only, so --norm None and --norm batch checkpoints convert"
                              % name_of(next(n for n in sd if n.startswith(slot + "."))))
    return bool(slots)


_VERA_NORM = re.compile(r"^(bn1|layer\d+\.\d+\.bn[12])\.")
_VERA_KEY = re.compile(r"^(conv1|layer\d+\.\d+\.(conv[12]|shortcut\.0)|linear)\.(weight|bias)$")


def vera_to_jemc_name(key, prefix=""):
    """VERA Wide_ResNet key (prefix "logp_net." already removed) -> jemc name; errors show prefix + key."""
    if _VERA_NORM.match(key):
        raise LayoutError("'%s%s' is a normalisation layer (VERA trained with --norm): VERA's layer1.0 skips its "
                          "bn1, which jemc's batch-norm WRN (-D norm=1) applies, so only --norm None VERA "
                          "checkpoints convert" % (prefix, key))
    if not _VERA_KEY.match(key):
        raise LayoutError("'%s%s' is not a key of VERA's Wide_ResNet (--wide_resnet / --thicc_resnet: conv1, "
                          "layerS.I.conv1/conv2/shortcut.0, linear); other VERA EBMs do not convert" % (prefix, key))
    return key


def to_official_name(name):
    """jemc parameter name -> official CCF key."""
    if name.startswith("linear."):
        return "class_output." + name[len("linear."):]
    return "f." + name


def infer_config(sd):
    """depth, widen, classes from the jemc-named parameters' shapes (check_norm tells norm)."""
    for need in ("conv1.weight", "layer1.0.conv1.weight", "linear.weight"):
        if need not in sd:
            raise LayoutError("missing key '%s' (needed to tell the depth, width and classes)" % need)
    blocks = {int(m.group(1)) for m in (re.match(r"^layer1\.(\d+)\.", k) for k in sd) if m}
    n = max(blocks) + 1
    width = sd["layer1.0.conv1.weight"].shape[0]
    if width % 16:
        raise LayoutError("'layer1.0.conv1.weight' has %d output channels, not a multiple of 16" % width)
    return 6 * n + 4, width // 16, sd["linear.weight"].shape[0]


def check_params(sd, depth, widen, classes, name_of=lambda n: n, norm=False):
    """Every tensor of the configuration present with its shape, nothing else (errors name the key)."""
    want = wrn_params(depth, widen, classes, norm)
    names = {n for n, _ in want}
    for n, shape in want:
        if n not in sd:
            raise LayoutError("missing key '%s' (WRN-%d-%d, %d classes%s)"
                              % (name_of(n), depth, widen, classes, ", batch norm" if norm else ""))
        if list(sd[n].shape) != shape:
            raise LayoutError("key '%s' has shape %s, WRN-%d-%d with %d classes needs %s"
                              % (name_of(n), list(sd[n].shape), depth, widen, classes, shape))
    for n in sd:
        if n not in names:
            raise LayoutError("key '%s' has no place in WRN-%d-%d (blocks per stage: %d)"
                              % (name_of(n), depth, widen, (depth - 4) // 6))
    return want


def gen_params(feats, noise_dim):
    """vera_wrn28's generator tensors -D g_feats -D noise_dim: [(jemc name, shape, VERA key)]."""
    def bn(p):
        return [(p + ".weight", [feats]), (p + ".bias", [feats]), (p + ".running_mean", [feats]),
                (p + ".running_var", [feats]), (p + ".num_batches_tracked", [])]
    g = [("input_linear.weight", [16 * feats, noise_dim]), ("input_linear.bias", [16 * feats])]
    for i in (1, 2, 3):
        b = "block%d." % i
        g += bn(b + "bn1") + [(b + "conv1.weight", [feats, feats, 3, 3]), (b + "conv1.bias", [feats])]
        g += bn(b + "bn2") + [(b + "conv2.weight", [feats, feats, 3, 3]), (b + "conv2.bias", [feats])]
    g += bn("output_bn") + [("output_conv.weight", [3, feats, 3, 3]), ("output_conv.bias", [3])]
    return ([("g.logsigma", [], "logsigma"), ("post_logsigma", [noise_dim], "post_logsigma")] +
            [("g." + n, s, "g." + n) for n, s in g])


def vera_gen_to_jemc(gsd):
    """VERA's model.g state_dict -> ({jemc name: tensor}, feats, noise_dim, dropped keys).
    Errors name the key as model.g.KEY."""
    for need in ("g.input_linear.weight", "post_logsigma", "logsigma"):
        if need not in gsd:
            raise LayoutError("missing key 'model.g.%s' (VERA's VERAGenerator(ResNetGenerator))" % need)
    w = gsd["g.input_linear.weight"]
    if w.dim() != 2 or w.shape[0] % 16:
        raise LayoutError("'model.g.g.input_linear.weight' has shape %s, ResNetGenerator's is [16 feats, 128]"
                          % list(w.shape))
    feats, noise_dim = w.shape[0] // 16, gsd["post_logsigma"].numel()
    want = gen_params(feats, noise_dim)
    by_key = {k: (n, s) for n, s, k in want}
    out, dropped = {}, []
    for k, v in gsd.items():
        if k == "stepsize":
            dropped.append(k)
            continue
        if k not in by_key:
            raise LayoutError("'model.g.%s' is not a key of VERA's VERAGenerator(ResNetGenerator(%d)) "
                              "(other VERA generators do not convert)" % (k, feats))
        n, shape = by_key[k]
        if k == "logsigma":
            if v.numel() != 1:
                raise LayoutError("'model.g.logsigma' has shape %s, VERA's is [1]" % list(v.shape))
            v = v.reshape([])
        if list(v.shape) != shape:
            raise LayoutError("key 'model.g.%s' has shape %s, ResNetGenerator(%d) with noise_dim %d needs %s"
                              % (k, list(v.shape), feats, noise_dim, shape))
        out[n] = v
    for n, _, k in want:
        if n not in out:
            raise LayoutError("missing key 'model.g.%s' (ResNetGenerator(%d))" % (k, feats))
    return out, feats, noise_dim, dropped
