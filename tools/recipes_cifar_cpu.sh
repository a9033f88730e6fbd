#!/bin/sh
# tools/recipes_cifar_cpu.sh — JEM++ and SADA-JEM on CIFAR-10 without a GPU, in
# bounded time, beside tools/cifar_cpu.sh's JEM: WRN-28-2 with batch norm
# (graphs/jem_wrn28.graph -D widen=2 -D norm=1 -D gm_on=1, the official
# --norm batch and informative initialisation) on ../shared/data/cifar10's
# 10,000 training images (docs/evaluation.md "JEM++ and SADA-JEM").
#
#   1. classifier first, exactly as tools/cifar_cpu.sh's (train_step_ce, now in
#      train-mode batch norm, CE_EPOCHS epochs, Adam 1e-3, x0.3 at epochs 10
#      and 14, JEM's augmentation: 4-pixel crops, flips, noise 0.03). A fresh
#      run also fits the per-class Gaussians and fills the replay buffer from
#      them, so the recipes below start from informative chains;
#   2. from that checkpoint, at the same time, each on THREADS_EACH threads for
#      RECIPE_SECONDS seconds (--iters is only a ceiling):
#        jempp: --program train_step_jempp (PYLD, 10 steps of lr .2, 5% restarts
#               from the class Gaussians; SGD momentum .9, wd 4e-4)
#        sada:  --program train_step_sada (5 steps of clipped SGLD, lr 1;
#               ASAM rho 2 over SGD momentum .9, wd 5e-4)
#      both at SGD_LR after a WARMUP-iteration warm-up, the generative term
#      weighted PX_WEIGHT (JEM's CPU run used 0.1; the official 1.0 is for
#      runs from scratch), no data noise beyond the classifier's augmentation;
#   3. all three (the classifier as the starting point): accuracy and calibration on the 10,000 test images; OOD (log
#      p(x), max p(y|x), input-gradient norm) against MNIST, Fashion-MNIST
#      (padded to 32x32) and uniform noise on EVAL_LIMIT records of each; and
#      the replay buffer, fresh chains and long-run chains as pictures.
#
# The sampler table of docs/evaluation.md is tools/compare_samplers.sh on $OUT/jempp.
# Everything lands in $OUT (default build/cifarpp). STAGE=train|eval|samples runs one stage.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-build/cifarpp}
DATA=${DATA:-../shared/data/cifar10}
CE_EPOCHS=${CE_EPOCHS:-16}
RECIPE_SECONDS=${RECIPE_SECONDS:-2100}
THREADS_EACH=${THREADS_EACH:-1}
SGD_LR=${SGD_LR:-0.01}
WARMUP=${WARMUP:-50}
PX_WEIGHT=${PX_WEIGHT:-0.1}
EVAL_LIMIT=${EVAL_LIMIT:-1000}
STAGE=${STAGE:-all}
EXE=$OUT/jem_wrn28_2_bn
iterations() { head -c 8192 "$1" | tr ',' '\n' | sed -n 's/.*"jemc.train.iterations":"\([0-9]*\)".*/\1/p' | head -1; }
AUG="--crop 4 --flip --noise 0.03"

mkdir -p "$OUT"
if [ ! -x "$EXE" ]; then
    make -s all
    build/jemc compile graphs/jem_wrn28.graph -D widen=2 -D norm=1 -D gm_on=1 -o "$EXE"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = train ]; then
    head -c $((3073 * 2000)) "$DATA/test_batch.bin" > "$OUT/test2k.bin"
    if [ ! -f "$OUT/ce/last.safetensors" ]; then
        "$EXE" train --data "$DATA" --test "$OUT/test2k.bin" --baseline --epochs "$CE_EPOCHS" \
            --set lr=0.001 --set warmup=100 --decay-epochs 10,14 --decay-rate 0.3 $AUG \
            --log-every 50 --ckpt-every 0 --no-progress --out "$OUT/ce" > "$OUT/ce.log" 2>&1
    fi
    CE_ITERS=$(iterations "$OUT/ce/last.safetensors")
    for r in jempp sada; do
        "$EXE" train --data "$DATA" --test "$OUT/test2k.bin" --resume "$OUT/ce/last.safetensors" \
            --change baseline,program,decay-epochs,decay-rate,test --program "train_step_$r" \
            --iters $((CE_ITERS + 100000)) --max-seconds "$RECIPE_SECONDS" --threads "$THREADS_EACH" \
            --set sgd_lr="$SGD_LR" --set warmup="$WARMUP" --set px_weight="$PX_WEIGHT" $AUG \
            --log-every 10 --ckpt-every 100 --sample-every 100 --no-progress --out "$OUT/$r" > "$OUT/$r.log" 2>&1 &
    done
    wait
    for r in jempp sada; do "$EXE" plot --metrics "$OUT/$r/metrics.jsonl" --out "$OUT/$r"; done
fi

if [ "$STAGE" = all ] || [ "$STAGE" = eval ]; then
    for r in ce jempp sada; do
        CK=$OUT/$r/last.safetensors
        (
            "$EXE" eval accuracy --ckpt "$CK" --data "$DATA" --threads "$THREADS_EACH" --json "$OUT/$r/accuracy.json"
            "$EXE" eval calibration --ckpt "$CK" --data "$DATA" --threads "$THREADS_EACH" --report "$OUT/$r/report"
            "$EXE" eval ood --ckpt "$CK" --data "$DATA" --limit "$EVAL_LIMIT" --threads "$THREADS_EACH" --report "$OUT/$r/report" \
                --ood-data ../shared/data/mnist --ood-data ../shared/data/fashion-mnist --ood-noise
        ) > "$OUT/$r/eval.log" 2>&1 &
    done
    wait
fi

if [ "$STAGE" = all ] || [ "$STAGE" = samples ]; then
    for r in jempp sada; do
        CK=$OUT/$r/last.safetensors
        "$EXE" sample --ckpt "$CK" --from buffer --steps 0 --n 64 --out "$OUT/${r}_buffer.png"
        "$EXE" sample --ckpt "$CK" --program "sample_$(echo $r | sed 's/jempp/pyld/')" --n 8 --at 0,1,5,10,20,50 \
            --out "$OUT/${r}_fresh.png" --json "$OUT/${r}_fresh.json"
    done
fi
echo "recipes_cifar_cpu: done; figures and pictures in $OUT/"
