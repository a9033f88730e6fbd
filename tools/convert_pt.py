#!/usr/bin/python3
"""Convert checkpoints of the official JEM code to jemc's and back.

    /usr/bin/python3 tools/convert_pt.py CKPT.pt -o model.safetensors
    /usr/bin/python3 tools/convert_pt.py --to-pt model.safetensors -o CKPT.pt

Forward: a .pt of wgrathwohl/JEM (or JEM++ / SADA-JEM trained with --norm None):
{"model_state_dict": CCF state_dict, "replay_buffer": [N, 3, 32, 32]} or a bare
state_dict, "module." prefixes (DataParallel) stripped. The result is a jemc
checkpoint of graphs/jem_wrn28.graph compiled with the printed -D flags
(`EXE eval ... --ckpt`, `EXE exec ... --state`); the names map as
tools/jem_layout.py says. Anything that cannot be mapped (a norm layer, an
unknown key, a missing key, a wrong shape) is refused with the key named.

Reverse (--to-pt): a jemc checkpoint of jem_wrn28 -> {"model_state_dict",
"replay_buffer"} that the official CCF(depth, width, norm=None, n_classes)
loads with load_state_dict(strict=True). The heads CCF never reads (f.linear,
energy_output) are not in a jemc checkpoint; they are written as zeros.
Optimizer moments and knobs (opt.*, config.*) have no official counterpart
and are left out. Exit status: 0, or 1 with one line naming the problem.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jem_layout  # noqa: E402
import st_io  # noqa: E402

GRAPH = "graphs/jem_wrn28.graph"


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
        # weights_only: official checkpoints hold only tensors; no pickled code runs
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several kinds for a file that is not a checkpoint
        raise ConvertError("%s: not a PyTorch checkpoint of tensors (torch.load: %s)"
                           % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if not isinstance(obj, dict):
        raise ConvertError("%s: holds a %s, not a dict (model_state_dict / replay_buffer or a state_dict)"
                           % (path, type(obj).__name__))
    if "model_state_dict" in obj:
        sd, buf = obj["model_state_dict"], obj.get("replay_buffer")
        extra = [k for k in obj if k not in ("model_state_dict", "replay_buffer")]
    else:
        sd, buf, extra = obj, None, []
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ConvertError("%s: 'model_state_dict' is not a dict of tensors" % path)
    return sd, buf, extra


def strip_module(sd):
    """DataParallel saves every key as module.KEY."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}, True
    return sd, False


def to_jemc(args):
    sd, buf, extra = load_pt(args.input)
    sd, had_module = strip_module(sd)
    out, dropped, official = {}, [], {}
    for k, v in sd.items():
        name = jem_layout.to_jemc_name(k)
        if name is None:
            dropped.append(k)
            continue
        out[name] = v
        official[name] = k
    depth, widen, classes = jem_layout.infer_config(out)
    want = jem_layout.check_params(out, depth, widen, classes, name_of=lambda n: official.get(n) or jem_layout.to_official_name(n))
    tensors = [(n, out[n].to(torch.float32)) for n, _ in want]
    flags = "-D depth=%d -D widen=%d -D classes=%d" % (depth, widen, classes)
    if buf is not None:
        if not torch.is_tensor(buf) or buf.dim() != 4 or list(buf.shape[1:]) != [3, 32, 32]:
            raise ConvertError("'replay_buffer' has shape %s, jem_wrn28's replay state is [N, 3, 32, 32]"
                               % (list(buf.shape) if torch.is_tensor(buf) else type(buf).__name__))
        tensors.append(("replay", buf.to(torch.float32)))
        flags += " -D buffer_size=%d" % buf.shape[0]
    meta = {"format": "pt", "jemc.graph": GRAPH, "jemc.convert.source": os.path.basename(args.input),
            "jemc.convert.compile": flags}
    st_io.write(args.output, tensors, meta)
    print("%s: WRN-%d-%d, %d classes%s -> %s (%d tensors)" % (
        args.input, depth, widen, classes,
        ", replay buffer of %d" % buf.shape[0] if buf is not None else ", no replay buffer", args.output, len(tensors)))
    if had_module:
        print("note: stripped the DataParallel prefix 'module.'")
    if dropped:
        print("note: dropped %s (CCF's logits and energy never read them)" % ", ".join(sorted(dropped)))
    if extra:
        print("note: ignored checkpoint entries %s" % ", ".join(sorted(map(str, extra))))
    print("compile with: jemc compile %s %s -o EXE" % (GRAPH, flags))


def to_pt(args):
    try:
        st, _ = st_io.read(args.input)
    except OSError as e:
        raise ConvertError("%s: %s" % (args.input, e.strerror))
    params, buf = {}, None
    for n, v in st.items():
        if n == "replay":
            buf = v
        elif n.startswith("opt.") or n.startswith("config."):
            continue            # jem_wrn28's Adam (moments, step, grad norm) and knobs
        elif n == "conv1.weight" or n == "conv1.bias" or n.startswith("layer") or n.startswith("linear."):
            params[n] = v
        else:
            raise ConvertError("%s: tensor '%s' has no counterpart in the official CCF model" % (args.input, n))
    depth, widen, classes = jem_layout.infer_config(params)
    want = jem_layout.check_params(params, depth, widen, classes)
    sd = {}
    trunk = [(n, s) for n, s in want if not n.startswith("linear.")]
    for n, _ in trunk:
        sd[jem_layout.to_official_name(n)] = params[n].to(torch.float32).clone()
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
    print("%s: WRN-%d-%d, %d classes -> %s (%s CCF(%d, %d, norm=None, n_classes=%d); unused heads %s are zeros)"
          % (args.input, depth, widen, classes, args.output, args.layout, depth, widen, classes,
             "f.linear and energy_output" if args.layout == "jem" else "energy_output"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help="official .pt (or, with --to-pt, a jemc .safetensors checkpoint)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--to-pt", action="store_true", help="jemc checkpoint -> official .pt")
    ap.add_argument("--layout", choices=["jem", "jempp"], default="jem",
                    help="--to-pt for JEM's CCF (with f.linear) or JEM++/SADA-JEM's (without)")
    args = ap.parse_args(argv)
    try:
        (to_pt if args.to_pt else to_jemc)(args)
    except (ConvertError, jem_layout.LayoutError, st_io.StError) as e:
        print("convert_pt: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
