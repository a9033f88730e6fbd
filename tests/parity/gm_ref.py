#!/usr/bin/python3
"""numpy reference for the informative initialisation (tests/t_gm.c,
runtime/app/rt_gm.c, graphs/lib/informative.graph). numpy only, float64.

  gm_ref.py fit --images IDX --labels IDX --classes C --out OUT.safetensors
      the records as jemc's loader scales them (float32(v / 255 * 2 - 1)); per
      class c: mean [C, D] (np.mean), chol [C, D, D] = np.linalg.cholesky of the
      biased covariance (np.cov(bias=True)) + 1e-4 I, cov0 [D, D] (class 0's
      covariance), and for the filled buffer's check, per value of each class:
      clamp_mean [C, D] = E[clamp(X, -1, 1)], X ~ N(mean, cov_ii + 1e-4), and
      sd [C, D] = sqrt(cov_ii + 1e-4).
  gm_ref.py draw --state CKPT --in IN --out OUT
      want [n, D] = gm_mean[c] + z @ gm_chol[c]^T from the checkpoint's float32
      Gaussians and IN's c (i64[n]) and z (f32[n, D]), in float64.

Writes safetensors with struct and json (no safetensors package)."""
import argparse
import json
import math
import os
import struct

import numpy as np

JITTER = 1e-4
_DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=_DT[v["dtype"]]).reshape(v["shape"])
    return out


def write_st(path, tensors):
    head, blobs, off = {}, [], 0
    names = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    for k, v in tensors.items():
        b = np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<"), copy=False).tobytes()
        head[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(head, separators=(",", ":")).encode()
    hj += b" " * ((-len(hj)) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    os.replace(path + ".tmp", path)


def read_idx(images, labels):
    im = open(images, "rb").read()
    magic, n, h, w = struct.unpack(">IIII", im[:16])
    assert magic == 0x803, "not an IDX images file"
    x = np.frombuffer(im[16:16 + n * h * w], dtype=np.uint8).reshape(n, h * w)
    lb = open(labels, "rb").read()
    y = np.frombuffer(lb[8:8 + n], dtype=np.uint8).astype(np.int64)
    # jemc's loader: float32(v / 255 * 2 - 1), computed in double
    table = (np.arange(256, dtype=np.float64) / 255.0 * 2.0 - 1.0).astype(np.float32)
    return table[x].astype(np.float64), y


def phi(t):
    return np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def Phi(t):
    return 0.5 * (1 + np.vectorize(math.erf)(t / math.sqrt(2)))


def clamp_moments(mu, s):
    """E[clamp(X, -1, 1)] for X ~ N(mu, s^2), elementwise"""
    a, b = (-1 - mu) / s, (1 - mu) / s
    inside = mu * (Phi(b) - Phi(a)) + s * (phi(a) - phi(b))
    return -Phi(a) + (1 - Phi(b)) + inside


def fit(args):
    x, y = read_idx(args.images, args.labels)
    C, D = args.classes, x.shape[1]
    mean = np.zeros((C, D))
    chol = np.zeros((C, D, D))
    cmean = np.zeros((C, D))
    sd = np.zeros((C, D))
    cov0 = None
    for c in range(C):
        xc = x[y == c]
        mean[c] = np.mean(xc, axis=0)
        cov = np.cov(xc, rowvar=False, bias=True)
        if c == 0:
            cov0 = cov
        chol[c] = np.linalg.cholesky(cov + JITTER * np.eye(D))
        sd[c] = np.sqrt(np.diag(cov) + JITTER)
        cmean[c] = clamp_moments(mean[c], sd[c])
    write_st(args.out, {"mean": mean, "chol": chol, "cov0": cov0, "clamp_mean": cmean, "sd": sd,
                        "counts": np.bincount(y, minlength=C).astype(np.int64)})


def draw(args):
    st = read_st(args.state)
    inp = read_st(args.inp)
    mu = st["gm_mean"].astype(np.float64)
    L = st["gm_chol"].astype(np.float64)
    c = inp["c"].astype(np.int64)
    z = inp["z"].astype(np.float64)
    want = np.stack([mu[c[i]] + L[c[i]] @ z[i] for i in range(len(c))])
    write_st(args.out, {"want": want})


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--images", required=True)
    f.add_argument("--labels", required=True)
    f.add_argument("--classes", type=int, default=10)
    f.add_argument("--out", required=True)
    d = sub.add_parser("draw")
    d.add_argument("--state", required=True)
    d.add_argument("--in", dest="inp", required=True)
    d.add_argument("--out", required=True)
    args = ap.parse_args()
    fit(args) if args.cmd == "fit" else draw(args)


if __name__ == "__main__":
    main()
