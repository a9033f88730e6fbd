#!/usr/bin/python3
"""Compares jemc's per-iteration losses and final state with torch_iteration.py's.

    iteration_curve.py DIR LABEL...   (DIR holds curve.json, expected_last.safetensors,
                                       state.safetensors, and per LABEL out_LABEL_K.safetensors
                                       for K = 1..N and state_LABEL.safetensors)
Prints the curve as a table and, per LABEL, the worst relative loss difference
per iteration and the worst per-tensor relative error of the state after N
iterations; writes DIR/curve.tsv."""
import json
import struct
import sys

import numpy as np

DT = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "I32": np.int32, "BOOL": np.bool_, "U8": np.uint8}


def read(path):
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=DT[v["dtype"]]).reshape(v["shape"]).astype(np.float64)
    return out


def main():
    d, labels = sys.argv[1], sys.argv[2:]
    curve = json.load(open(d + "/curve.json"))
    ref = curve["loss"]
    n = len(ref)
    got = {lab: [float(read("%s/out_%s_%d.safetensors" % (d, lab, k + 1))["loss"]) for k in range(n)] for lab in labels}
    with open(d + "/curve.tsv", "w") as f:
        f.write("iter\ttorch_f64\t" + "\t".join(labels) + "\n")
        for k in range(n):
            f.write("%d\t%.10g\t" % (k + 1, ref[k]) + "\t".join("%.10g" % got[lab][k] for lab in labels) + "\n")
    print("iter  torch f64        " + "  ".join("%-16s rel.diff" % lab for lab in labels))
    for k in range(n):
        if k < 5 or k % 5 == 4:
            print("%4d  %.10f  " % (k + 1, ref[k]) + "  ".join("%.10f %8.1e" % (got[lab][k], abs(got[lab][k] - ref[k]) / abs(ref[k]))
                                                            for lab in labels))
    want, before = read(d + "/expected_last.safetensors"), read(d + "/state.safetensors")
    for lab in labels:
        worst = max(abs(got[lab][k] - ref[k]) / abs(ref[k]) for k in range(n))
        st = read("%s/state_%s.safetensors" % (d, lab))
        errs = []
        for name, w in want.items():
            if name in st:
                mw = np.abs(w).max()
                e = np.abs(st[name] - w).max() / (mw if mw > 0 else 1)
                u = ""
                if name in before:
                    mu = np.abs(w - before[name]).max()
                    errs.append((np.abs(st[name] - w).max() / mu, name + " (change over %d iterations)" % n))
                errs.append((e, name))
        errs.sort()
        print("%s: loss %.4f -> %.4f (torch %.4f -> %.4f); worst loss difference over %d iterations %.2g (relative);"
              " state after %d: worst tensor %.2g (%s), worst change %.2g (%s)"
              % (lab, got[lab][0], got[lab][-1], ref[0], ref[-1], n, worst, n,
                 max(e for e, nm in errs if "change" not in nm), [nm for e, nm in errs if "change" not in nm][-1],
                 max(e for e, nm in errs if "change" in nm), [nm for e, nm in errs if "change" in nm][-1]))


if __name__ == "__main__":
    main()
