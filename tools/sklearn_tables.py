#!/usr/bin/env python3
"""sklearn_tables.py - small real tables for jemc, from the copies Debian's python3-sklearn
ships (no download, no scikit-learn import: the standard library reads its CSV files).

    tools/sklearn_tables.py [--out DIR] [--src DIR] [NAME ...]

NAME is digits, breast_cancer or wine (default: all three). Each becomes DIR/NAME.csv
(default DIR build/tables/) with a header line "f0,f1,...,label" and the label in the
last column, which is where `train` looks for it by default:

    digits.csv         1797 records, 64 features (8x8 pixel counts 0..16), 10 classes
    breast_cancer.csv   569 records, 30 features, 2 classes (0 malignant, 1 benign)
    wine.csv            178 records, 13 features, 3 classes

The sources, in --src (default /usr/lib/python3/dist-packages/sklearn/datasets/data):
digits.csv.gz (no header, 65 integers a line, the class last); breast_cancer.csv and
wine_data.csv (a first line "N,D,class names...", then D numbers and the class). Their
counts are checked against those first lines, and every label must be an integer.

For example (a held-out test split and standardisation are train's own):

    EXE train --data build/tables/wine.csv --test-split 0.2 --val-split 0.1 --program train_step_ce
    EXE eval accuracy --ckpt run/last.safetensors --data build/tables/wine.csv

The data are missing unless the package is installed: apt-get install python3-sklearn.
"""
import argparse
import csv
import gzip
import os
import sys

DEFAULT_SRC = "/usr/lib/python3/dist-packages/sklearn/datasets/data"

# name: (source file, has the "N,D,names" first line, expected records, features, classes)
SETS = {
    "digits": ("digits.csv.gz", False, 1797, 64, 10),
    "breast_cancer": ("breast_cancer.csv", True, 569, 30, 2),
    "wine": ("wine_data.csv", True, 178, 13, 3),
}


class TableError(Exception):
    pass


def read_rows(path, counted):
    """The records of a source file as (features, label) with their line numbers checked."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        reader = csv.reader(f)
        rows = []
        want = None
        first = True
        for lineno, fields in enumerate(reader, 1):
            if not fields or all(not x.strip() for x in fields):
                continue
            if counted and first:
                # "N,D,class names...": the record and feature counts
                try:
                    want = (int(fields[0]), int(fields[1]))
                except (ValueError, IndexError):
                    raise TableError(f"{path}:{lineno}:1: expected 'N,D,class names...' on the first line, got {','.join(fields)[:60]!r}")
                first = False
                continue
            first = False
            try:
                nums = [float(x) for x in fields]
            except ValueError:
                bad = next(i for i, x in enumerate(fields) if not _is_number(x))
                raise TableError(f"{path}:{lineno}:{bad + 1}: field {bad + 1} {fields[bad]!r} is not a number")
            label = nums[-1]
            if label != int(label) or label < 0:
                raise TableError(f"{path}:{lineno}:{len(fields)}: label {fields[-1]!r} is not an integer >= 0")
            rows.append((fields[:-1], int(label), lineno))
    return rows, want


def _is_number(x):
    try:
        float(x)
        return True
    except ValueError:
        return False


def convert(name, src, out):
    fname, counted, n_want, d_want, k_want = SETS[name]
    path = os.path.join(src, fname)
    if not os.path.isfile(path):
        raise TableError(f"{path}: not found (Debian's copy of scikit-learn's data: apt-get install python3-sklearn)")
    rows, declared = read_rows(path, counted)
    if declared and declared != (len(rows), d_want):
        raise TableError(f"{path}: the first line declares {declared[0]} records of {declared[1]} features, "
                         f"the file has {len(rows)} records (expected {n_want} of {d_want})")
    for feats, _, lineno in rows:
        if len(feats) != d_want:
            raise TableError(f"{path}:{lineno}: {len(feats)} features, expected {d_want}")
    classes = sorted({y for _, y, _ in rows})
    if len(rows) != n_want or classes != list(range(k_want)):
        raise TableError(f"{path}: {len(rows)} records with classes {classes[:12]}, expected {n_want} with 0..{k_want - 1}")
    os.makedirs(out, exist_ok=True)
    dest = os.path.join(out, name + ".csv")
    tmp = dest + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow([f"f{j}" for j in range(d_want)] + ["label"])
        for feats, y, _ in rows:
            w.writerow([x.strip() for x in feats] + [y])
    os.replace(tmp, dest)
    print(f"{dest}: {len(rows)} records, {d_want} features, {k_want} classes")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="build/tables", help="output folder (default build/tables)")
    ap.add_argument("--src", default=DEFAULT_SRC, help=f"scikit-learn's data folder (default {DEFAULT_SRC})")
    ap.add_argument("names", nargs="*", help="digits, breast_cancer, wine (default: all)")
    a = ap.parse_args(argv)
    names = a.names or list(SETS)
    for n in names:
        if n not in SETS:
            print(f"sklearn_tables.py: unknown table '{n}' (known: {', '.join(SETS)})", file=sys.stderr)
            return 2
    if not os.path.isdir(a.src):
        print(f"sklearn_tables.py: {a.src}: no such folder; scikit-learn's data come with Debian's python3-sklearn: "
              f"apt-get install python3-sklearn (or give --src)", file=sys.stderr)
        return 1
    try:
        for n in names:
            convert(n, a.src, a.out)
    except TableError as e:
        print(f"sklearn_tables.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
