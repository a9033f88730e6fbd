#!/usr/bin/python3
"""Loads a jemc checkpoint of graphs/jem_mnist.graph into the PyTorch model of
tests/parity/torch_ref.py with load_state_dict(strict=True), then checks that
PyTorch's logits on random inputs match the compiled executable's
(`EXE exec logits --state CKPT`). Usage: torch_load.py CKPT EXE TMPDIR.
Run with Debian's /usr/bin/python3 (python3-torch)."""
import json
import os
import struct
import subprocess
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "parity"))
from torch_ref import JemMnist  # noqa: E402

DT = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + a:base + b]), dtype=DT[h["dtype"]]) if b > a else torch.zeros(0, dtype=DT[h["dtype"]])
        out[name] = t.reshape(h["shape"])
    return out, header.get("__metadata__", {})


def write(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main(ckpt, exe, tmp):
    tensors, meta = read(ckpt)
    model = JemMnist(10)
    keys = set(model.state_dict().keys())
    # the checkpoint also holds optimizer moments, the replay buffer, counters and settings
    state = {k: v for k, v in tensors.items() if k in keys}
    model.load_state_dict(state, strict=True)
    print("load_state_dict(strict=True) ok: %d tensors (%d in the checkpoint; graph %s)"
          % (len(state), len(tensors), meta.get("jemc.graph", "?")))
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    write(os.path.join(tmp, "x.safetensors"), {"x": x})
    subprocess.run([exe, "exec", "logits", "--state", ckpt, "--in", os.path.join(tmp, "x.safetensors"),
                    "--out", os.path.join(tmp, "logits.safetensors")], check=True)
    got = read(os.path.join(tmp, "logits.safetensors"))[0]["logits"]
    with torch.no_grad():
        want = model(x)
    err = (got - want).abs().max().item() / max(want.abs().max().item(), 1e-6)
    print("logits: worst relative error %.2e" % err)
    if err > 1e-4:
        sys.exit("logits differ")


if __name__ == "__main__":
    main(*sys.argv[1:4])
