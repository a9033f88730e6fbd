#!/bin/sh
# tools/vera_cifar_cpu.sh — JEM-VERA on CIFAR-10 without a GPU, in bounded time, next
# to tools/cifar_cpu.sh's JEM and baseline: WRN-28-2 EBM (graphs/vera_wrn28.graph
# -D widen=2) with VERA's ResNetGenerator (-D g_feats=G_FEATS), started from the
# same classifier checkpoint ($OUT/ce/last.safetensors, tools/cifar_cpu.sh STAGE=train).
#
#   1. init: the VERA executable's fresh state (generator, log sigma, posterior
#      width, optimizers) with the classifier's parameters copied in by name
#      (conv1.*, layer*.*, linear.*: the WRN's names are the same in both graphs;
#      the classifier's Adam moments are not copied: VERA's Adam has beta1 0);
#   2. train_step_vera for VERA_SECONDS seconds (--iters is only a ceiling) at
#      VERA's rates (lr 3e-5, glr 6e-5, post_lr 3e-5, warm-up WARMUP), with the
#      classifier run's augmentation, generator samples every 100 iterations;
#   3. eval: accuracy, calibration, OOD and robustness as tools/cifar_cpu.sh's;
#   4. samples: generator samples, and after 100 steps of latent MALA, a row per class.
#
# VERA_ITERS caps the iterations (e.g. JEM's count, for a comparison at equal updates
# whatever else shares the CPU), VERA_SET adds run-time settings ("--set lr=0.0001 ...").
# Everything lands in $OUT/vera (default build/cifar/vera). STAGE=init|train|eval|samples
# runs one stage only (default: all). Tiny check (seconds): DEFS="-D depth=10 -D widen=1
# -D g_feats=16 -D batch=8" VERA_SECONDS=10 EVAL_LIMIT=16 CE=path/to/ce.safetensors.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-build/cifar}
DATA=${DATA:-../shared/data/cifar10}
CE=${CE:-$OUT/ce/last.safetensors}
G_FEATS=${G_FEATS:-64}
DEFS=${DEFS:--D widen=2 -D g_feats=$G_FEATS}
VERA_SECONDS=${VERA_SECONDS:-1900}
VERA_ITERS=${VERA_ITERS:-100000}
VERA_SET=${VERA_SET:-}
WARMUP=${WARMUP:-2500}
EVAL_LIMIT=${EVAL_LIMIT:-1000}
STAGE=${STAGE:-all}
JEMC=${JEMC:-build/jemc}
V=$OUT/vera
EXE=$V/vera_wrn28
AUG="--crop 4 --flip --noise 0.03"

mkdir -p "$V"
if [ ! -x "$EXE" ]; then
    [ -x "$JEMC" ] || make -s all
    # shellcheck disable=SC2086
    "$JEMC" compile graphs/vera_wrn28.graph $DEFS -o "$EXE"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = init ]; then
    [ -f "$CE" ] || { echo "vera: no classifier checkpoint $CE (run STAGE=train tools/cifar_cpu.sh first)" >&2; exit 1; }
    BATCH=$("$EXE" info | sed -n '/^program generate/{n;s/.*h: f32\[\([0-9]*\),.*/\1/p;}' | head -1)
    # a latent batch for `exec generate`, whose --state-out is the fresh state
    python3 - "$V/h.safetensors" "${BATCH:-40}" <<'EOF'
import json, struct, sys
n = int(sys.argv[2]) * 128
hdr = json.dumps({"h": {"dtype": "F32", "shape": [int(sys.argv[2]), 128], "data_offsets": [0, 4 * n]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + b"\0" * (4 * n))
EOF
    "$EXE" exec generate --in "$V/h.safetensors" --out "$V/h_out.safetensors" --state-out "$V/fresh.safetensors"
    # the classifier's parameters into the fresh state, by name (same name, dtype and shape)
    python3 - "$V/fresh.safetensors" "$CE" "$V/init.safetensors" <<'EOF'
import json, struct, sys
def read(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
fh, fd = read(sys.argv[1])
ch, cd = read(sys.argv[2])
meta = fh.pop("__metadata__", None)
ch.pop("__metadata__", None)
out, blobs, off, copied = {}, [], 0, 0
for name, t in sorted(fh.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    a, b = t["data_offsets"]
    data = fd[a:b]
    c = ch.get(name)
    if c and not name.startswith(("opt", "config.", "jemc")) and c["dtype"] == t["dtype"] and c["shape"] == t["shape"]:
        data = cd[c["data_offsets"][0]:c["data_offsets"][1]]
        copied += 1
    out[name] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [off, off + len(data)]}
    blobs.append(data)
    off += len(data)
if meta:
    out["__metadata__"] = meta
hdr = json.dumps(out).encode()
hdr += b" " * (-len(hdr) % 8)
with open(sys.argv[3], "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))
print("vera: %d tensors of the classifier copied into %s" % (copied, sys.argv[3]))
if copied == 0:
    sys.exit("vera: no tensor of the classifier matched")
EOF
fi

if [ "$STAGE" = all ] || [ "$STAGE" = train ]; then
    head -c $((3073 * 2000)) "$DATA/test_batch.bin" > "$V/test2k.bin"
    # a checkpoint without the run's options: this command line's (docs/runtime.md)
    "$EXE" train --data "$DATA" --test "$V/test2k.bin" --resume "$V/init.safetensors" --program train_step_vera \
        --iters "$VERA_ITERS" --max-seconds "$VERA_SECONDS" --set warmup="$WARMUP" $VERA_SET $AUG \
        --log-every 10 --ckpt-every 100 --sample-every 100 --no-progress --out "$V/run"
    "$EXE" plot --metrics "$V/run/metrics.jsonl" --out "$V/run"
fi

CK=$V/run/last.safetensors
if [ "$STAGE" = all ] || [ "$STAGE" = eval ]; then
    R=$V/report
    "$EXE" eval accuracy --ckpt "$CK" --data "$DATA" --json "$V/accuracy.json"
    "$EXE" eval calibration --ckpt "$CK" --data "$DATA" --report "$R"
    "$EXE" eval ood --ckpt "$CK" --data "$DATA" --limit "$EVAL_LIMIT" --report "$R" \
        --ood-data ../shared/data/mnist --ood-data ../shared/data/fashion-mnist --ood-noise
    "$EXE" eval robust --ckpt "$CK" --data "$DATA" --limit "$EVAL_LIMIT" --eps 0.00784 --eps 0.03137 --report "$R"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = samples ]; then
    "$EXE" sample --ckpt "$CK" --from generator --n 64 --out "$V/samples_generator.png"
    "$EXE" sample --ckpt "$CK" --from generator --n 64 --mala-steps 100 --out "$V/samples_mala.png"
    "$EXE" sample --ckpt "$CK" --from generator --class all --n 8 --mala-steps 100 \
        --class-names "$DATA/batches.meta.txt" --out "$V/samples_class.png"
fi
echo "vera: done; figures and pictures in $V/"
