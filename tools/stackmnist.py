#!/usr/bin/env python3
"""StackMNIST (jem-spec 7.6): records of three MNIST training digits stacked as
the R, G and B channels of one 3x28x28 image, for mode counting
(`EXE eval modes`, docs/evaluation.md).

Writes, into OUT (default build/stackmnist):
  train-images-idx4-ubyte   IDX, magic 0x00000804: u32 n, 3, 28, 28, then n*3*28*28
                            u8 pixels, each record channel-major (R plane, G, B)
  train-labels-idx1-ubyte   IDX, magic 0x00000C01: u32 n, then n big-endian int32
                            mode ids (the IDX type byte 0x0C says int32; the name
                            is the one jemc derives from the images file's)
  info.json                 what was made: source, n, seed, the id rule

The mode id of a record whose R, G, B channels hold digits d_R, d_G, d_B is

    id = 100 * d_R + 10 * d_G + d_B        (channel 0 is the hundreds)

and `eval modes` builds its ids from the classifier's digits with the same
rule, channel 0 first. (VERA's stack_mnist labels its training data
d_0 + 10 d_1 + 100 d_2, the reverse of its counter's 100 c_0 + 10 c_1 + c_2:
the mode count is unaffected, but its KL compares permuted histograms.
jem-spec 7.6.)

Each record takes three digits drawn independently, uniformly and with
replacement from the source's training digits (VERA: np.random.randint over
the training set, seeded); as many records as source digits unless --n says
otherwise (VERA's rule: its 60,000 MNIST digits give 60,000 records; the
9,000 of ../shared/data/mnist give 9,000, about 9 per mode). The draws are
Python's random.Random(seed) (Mersenne Twister): the same seed gives the same
files on every machine. Only the standard library is used.

Usage: stackmnist.py [--mnist DIR] [--out DIR] [--n N] [--seed S]
"""
import argparse
import json
import os
import random
import struct
import sys


def read_idx(path, magic, header_words):
    """The header words after the magic and the payload of an IDX file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.exit("stackmnist.py: cannot read %s: %s" % (path, e.strerror))
    need = 4 + 4 * header_words
    if len(data) < need:
        sys.exit("stackmnist.py: %s: %d bytes, too short for an IDX header" % (path, len(data)))
    got = struct.unpack(">I", data[:4])[0]
    if got != magic:
        sys.exit("stackmnist.py: %s: magic 0x%08x, expected 0x%08x" % (path, got, magic))
    return struct.unpack(">" + "I" * header_words, data[4:need]), data[need:]


def load_mnist(d):
    (n, rows, cols), pixels = read_idx(os.path.join(d, "train-images-idx3-ubyte"), 0x803, 3)
    (nl,), labels = read_idx(os.path.join(d, "train-labels-idx1-ubyte"), 0x801, 1)
    if (rows, cols) != (28, 28):
        sys.exit("stackmnist.py: %s: images are %dx%d, expected 28x28" % (d, rows, cols))
    if len(pixels) != n * 784 or len(labels) != nl or nl != n:
        sys.exit("stackmnist.py: %s: %d images (%d pixel bytes) and %d labels (%d bytes) do not match"
                 % (d, n, len(pixels), nl, len(labels)))
    bad = [i for i, v in enumerate(labels) if v > 9]
    if bad:
        sys.exit("stackmnist.py: %s: record %d: label %d is not a digit" % (d, bad[0], labels[bad[0]]))
    return n, pixels, labels


def write_atomic(path, chunks):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="StackMNIST: three MNIST digits as the R, G, B channels")
    ap.add_argument("--mnist", help="MNIST directory (train-images-idx3-ubyte, train-labels-idx1-ubyte); "
                    "default ../shared/data/mnist, else data/mnist")
    ap.add_argument("--out", default="build/stackmnist", help="output directory (default build/stackmnist)")
    ap.add_argument("--n", type=int, default=0, help="records (default: as many as source digits, VERA's rule)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the digit draws (default 1)")
    a = ap.parse_args()
    src = a.mnist
    if src is None:
        for cand in ("../shared/data/mnist", "data/mnist"):
            if os.path.isfile(os.path.join(cand, "train-images-idx3-ubyte")):
                src = cand
                break
        else:
            sys.exit("stackmnist.py: no MNIST in ../shared/data/mnist or data/mnist; pass --mnist DIR")
    n_src, pixels, labels = load_mnist(src)
    n = a.n if a.n > 0 else n_src
    if a.n < 0 or n > 10_000_000:
        sys.exit("stackmnist.py: --n %d: expected 1..10000000" % a.n)
    rng = random.Random(a.seed)
    images = bytearray(n * 3 * 784)
    ids = []
    counts = [0] * 1000
    for i in range(n):
        mode = 0
        for c in range(3):              # channel 0 (R) first: the hundreds
            k = rng.randrange(n_src)
            o = (i * 3 + c) * 784
            images[o:o + 784] = pixels[k * 784:(k + 1) * 784]
            mode = 10 * mode + labels[k]
        ids.append(mode)
        counts[mode] += 1
    os.makedirs(a.out, exist_ok=True)
    write_atomic(os.path.join(a.out, "train-images-idx4-ubyte"),
                 [struct.pack(">IIIII", 0x804, n, 3, 28, 28), bytes(images)])
    write_atomic(os.path.join(a.out, "train-labels-idx1-ubyte"),
                 [struct.pack(">II", 0xC01, n), struct.pack(">%di" % n, *ids)])
    covered = sum(1 for v in counts if v)
    info = {"source": os.path.abspath(src), "source_digits": n_src, "records": n, "seed": a.seed,
            "channels": ["R", "G", "B"], "mode_id": "100 * digit(R) + 10 * digit(G) + digit(B)",
            "modes_present": covered, "draws": "python random.Random(seed).randrange(source_digits), R, G, B per record"}
    with open(os.path.join(a.out, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print("stackmnist.py: %s: %d records of 3x28x28 from %d digits of %s (seed %d); %d of 1000 modes present"
          % (a.out, n, n_src, src, a.seed, covered))


if __name__ == "__main__":
    main()
