"""Safetensors read/write with torch tensors (struct + json; no safetensors package).

Used by tools/convert_pt.py. The writer pads the JSON header to 8 bytes, as
jemc's reader expects; the reader refuses a file that is not safetensors with
one sentence naming it.
"""

import json
import os
import struct

import torch

_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}
_FROM_ST = {v: k for k, v in _TO_ST.items()}


class StError(Exception):
    pass


def write(path, tensors, metadata=None):
    """tensors: list of (name, tensor) in file order; written atomically."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        if t.dtype not in _TO_ST:
            raise StError("%s: unsupported dtype %s" % (name, t.dtype))
        data = t.numpy().tobytes(order="C")     # little-endian on every machine jemc runs on
        header[name] = {"dtype": _TO_ST[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read(path):
    """-> (dict name -> tensor in file order, metadata dict)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise StError("%s: not a safetensors file (%d bytes)" % (path, len(blob)))
    (hl,) = struct.unpack("<Q", blob[:8])
    if hl > len(blob) - 8:
        raise StError("%s: not a safetensors file (header length %d past the end)" % (path, hl))
    try:
        header = json.loads(blob[8:8 + hl].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StError("%s: not a safetensors file (header: %s)" % (path, e))
    meta = header.pop("__metadata__", {}) or {}
    base, out = 8 + hl, {}
    for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        dt = _FROM_ST.get(h["dtype"])
        if dt is None:
            raise StError("%s: tensor '%s': unsupported dtype %s" % (path, name, h["dtype"]))
        a, b = h["data_offsets"]
        t = torch.frombuffer(bytearray(blob[base + a:base + b]), dtype=dt) if b > a else torch.empty(0, dtype=dt)
        out[name] = t.reshape(h["shape"]).clone()
    return out, meta
