#!/bin/sh
# tools/vera_demo.sh — `make demo-vera`: JEM-VERA learns MNIST on the CPU with a
# generator instead of SGLD chains (graphs/vera_mnist.graph), then the generator
# draws digits, refined by MALA in latent space, and the model is evaluated as
# `make demo`'s JEM is (docs/evaluation.md).
#
#   1. builds jemc (make) and compiles graphs/vera_mnist.graph into $OUT/vera_mnist;
#   2. trains JEM-VERA (train_step_vera, the recipe below) into $OUT/run;
#   3. writes generator samples (plain, after latent MALA, a row per class), the
#      training curves, and the held-out accuracy, calibration and OOD reports
#      (Fashion-MNIST and uniform noise) under $OUT.
#
# VERA_ITERS, VERA_SECONDS (training time budget), VERA_THREADS and VERA_OUT change
# the length, threads and folder; VERA_EVAL=0 skips the evaluation.
set -eu
cd "$(dirname "$0")/.."
OUT=${VERA_OUT:-build/demo-vera}
ITERS=${VERA_ITERS:-2300}
THREADS=${VERA_THREADS:-$(nproc)}
SECONDS_BUDGET=${VERA_SECONDS:-600}
EVAL=${VERA_EVAL:-1}
DATA=${VERA_DATA:-../shared/data/mnist}
OOD=${VERA_OOD:-../shared/data/fashion-mnist}
start=$(date +%s)

make -s all
if [ ! -f "$DATA/train-images-idx3-ubyte" ]; then
    echo "demo-vera: no MNIST in $DATA (run make demo once: it fetches MNIST into data/mnist; then VERA_DATA=data/mnist)" >&2
    exit 2
fi
mkdir -p "$OUT"
EXE=$OUT/vera_mnist
build/jemc compile graphs/vera_mnist.graph -o "$EXE"
echo "demo-vera: $($EXE info | tail -1)"

# The recipe (graphs/vera_mnist.graph; every number below is a run-time setting):
#  - JEM-VERA from the first iteration: the EBM's Adam (beta1 0, beta2 0.9) at
#    1e-3 and the generator's at 2e-3 after a 100-iteration warm-up, both x0.1 at
#    epochs 5 and 13; classification weight clf_weight, gradient penalty 0.1,
#    entropy weight 1e-4 (VERA's JEM command), generator sigma in [0.01, 0.3];
#  - data noise 0.03 as `make demo`'s JEM.
rm -rf "$OUT/run"
"$EXE" train --program train_step_vera --data "$DATA" --test "$DATA" --out "$OUT/run" --iters "$ITERS" \
    --threads "$THREADS" --set lr=0.001 --set glr=0.002 --set warmup=100 ${VERA_SET:-} \
    --decay-epochs 5,13 --decay-rate 0.1 --noise 0.03 --log-every 20 --ckpt-every 200 --sample-every 200 \
    --seed 1 --max-seconds "$SECONDS_BUDGET"
CK=$OUT/run/last.safetensors
"$EXE" sample --ckpt "$CK" --from generator --n 64 --out "$OUT/samples_generator.png" --threads "$THREADS"
"$EXE" sample --ckpt "$CK" --from generator --n 64 --mala-steps 100 --out "$OUT/samples_mala.png" --threads "$THREADS"
"$EXE" sample --ckpt "$CK" --from generator --class all --n 8 --mala-steps 100 --out "$OUT/samples_class.png" --threads "$THREADS"
"$EXE" plot --metrics "$OUT/run/metrics.jsonl" --out "$OUT"
"$EXE" eval accuracy --ckpt "$CK" --data "$DATA" --json "$OUT/test_accuracy.json" --threads "$THREADS"
if [ "$EVAL" = 1 ]; then
    "$EXE" eval calibration --ckpt "$CK" --data "$DATA" --report "$OUT/report" --threads "$THREADS"
    if [ -f "$OOD/t10k-images-idx3-ubyte" ]; then
        "$EXE" eval ood --ckpt "$CK" --data "$DATA" --ood-data "$OOD" --ood-noise --report "$OUT/report" --threads "$THREADS"
    else
        "$EXE" eval ood --ckpt "$CK" --data "$DATA" --ood-noise --report "$OUT/report" --threads "$THREADS"
    fi
fi
echo "demo-vera: done in $(( $(date +%s) - start )) s; pictures in $OUT/"
