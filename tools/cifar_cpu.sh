#!/bin/sh
# tools/cifar_cpu.sh — JEM on CIFAR-10 without a GPU, in bounded time: WRN-28-2
# (graphs/jem_wrn28.graph -D widen=2, 1.47M parameters) on ../shared/data/cifar10
# (10,000 training images), JEM and the classifier-only baseline side by side,
# evaluated with the same commands as MNIST (docs/evaluation.md).
#
#   1. classifier first: train_step_ce for CE_EPOCHS epochs (Adam 1e-3, x0.3 at
#      epochs 10 and 14, JEM's augmentation: 4-pixel crops, flips, noise 0.03);
#   2. JEM: from that checkpoint, train_step (SGLD_STEPS steps of SGLD kept in
#      [-1, 1], the generative term weighted PX_WEIGHT, energies held near 0 by
#      ENERGY_REG * (E(data)^2 + E(samples)^2)) at Adam 1e-4 for JEM_SECONDS
#      seconds. Without the regulariser the first run on this machine pushed
#      E(data) to -60 within 60 iterations while 5-step chains from the noise-filled
#      buffer stayed near -3, and the cross-entropy rose from 0.9 to 4.9;
#   3. the baseline: from the same checkpoint, train_step_ce at Adam 1e-4 for as
#      many iterations as JEM got;
#   4. both: accuracy and calibration on the 10,000 test images; OOD (log p(x),
#      max p(y|x), input-gradient norm) against MNIST and Fashion-MNIST (padded to
#      32x32, the channel repeated) and uniform noise, EVAL_LIMIT records of each;
#      L-inf PGD at 2/255 and 8/255 on EVAL_LIMIT test images; JEM also with 10
#      SGLD steps of purification;
#   5. JEM's samples: the replay buffer, fresh chains from noise after 0, 1, 5, 10,
#      20, 50 and 100 steps, long-run chains from the buffer, a row per class.
#
# Everything lands in $OUT (default build/cifar): runs, report folders, PNGs.
# STAGE=train|eval|samples runs one stage only (default: all).
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-build/cifar}
DATA=${DATA:-../shared/data/cifar10}
CE_EPOCHS=${CE_EPOCHS:-16}
JEM_SECONDS=${JEM_SECONDS:-1900}
SGLD_STEPS=${SGLD_STEPS:-5}
PX_WEIGHT=${PX_WEIGHT:-0.1}
ENERGY_REG=${ENERGY_REG:-0.01}
EVAL_LIMIT=${EVAL_LIMIT:-1000}
STAGE=${STAGE:-all}
EXE=$OUT/jem_wrn28_2
# the iteration count a checkpoint's metadata records (at the start of its header)
iterations() { head -c 8192 "$1" | tr ',' '\n' | sed -n 's/.*"jemc.train.iterations":"\([0-9]*\)".*/\1/p' | head -1; }
AUG="--crop 4 --flip --noise 0.03"

mkdir -p "$OUT"
if [ ! -x "$EXE" ]; then
    make -s all
    build/jemc compile graphs/jem_wrn28.graph -D widen=2 -o "$EXE"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = train ]; then
    # a 2,000-image slice of the test set for the per-epoch accuracy (the whole
    # 10,000 would cost ~30 s an epoch on 2 cores); the final figures use all.
    head -c $((3073 * 2000)) "$DATA/test_batch.bin" > "$OUT/test2k.bin"
    if [ ! -f "$OUT/ce/last.safetensors" ]; then
        "$EXE" train --data "$DATA" --test "$OUT/test2k.bin" --baseline --epochs "$CE_EPOCHS" \
            --set lr=0.001 --set warmup=100 --decay-epochs 10,14 --decay-rate 0.3 $AUG \
            --log-every 50 --ckpt-every 0 --no-progress --out "$OUT/ce"
    fi
    CE_ITERS=$(iterations "$OUT/ce/last.safetensors")
    # JEM: as many iterations as JEM_SECONDS allow (--iters is only a ceiling); the
    # classifier's run was --baseline with a decay schedule: --change says this one is not
    "$EXE" train --data "$DATA" --test "$OUT/test2k.bin" --resume "$OUT/ce/last.safetensors" \
        --change baseline,decay-epochs,decay-rate \
        --iters $((CE_ITERS + 100000)) --max-seconds "$JEM_SECONDS" \
        --set lr=0.0001 --set sgld_steps="$SGLD_STEPS" --set px_weight="$PX_WEIGHT" --set energy_reg="$ENERGY_REG" $AUG \
        --log-every 10 --ckpt-every 100 --sample-every 100 --no-progress --out "$OUT/jem"
    JEM_ITERS=$(iterations "$OUT/jem/last.safetensors")
    "$EXE" train --data "$DATA" --test "$OUT/test2k.bin" --resume "$OUT/ce/last.safetensors" --baseline \
        --change decay-epochs,decay-rate \
        --iters "$JEM_ITERS" --set lr=0.0001 $AUG --log-every 50 --ckpt-every 0 --no-progress --out "$OUT/base"
    "$EXE" plot --metrics "$OUT/jem/metrics.jsonl" --out "$OUT/jem"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = eval ]; then
    for m in jem base; do
        CK=$OUT/$m/last.safetensors
        R=$OUT/$m/report
        "$EXE" eval accuracy --ckpt "$CK" --data "$DATA" --json "$OUT/$m/accuracy.json"
        "$EXE" eval calibration --ckpt "$CK" --data "$DATA" --report "$R"
        "$EXE" eval ood --ckpt "$CK" --data "$DATA" --limit "$EVAL_LIMIT" --report "$R" \
            --ood-data ../shared/data/mnist --ood-data ../shared/data/fashion-mnist --ood-noise
        "$EXE" eval robust --ckpt "$CK" --data "$DATA" --limit "$EVAL_LIMIT" --eps 0.00784 --eps 0.03137 --report "$R"
    done
    "$EXE" eval robust --ckpt "$OUT/jem/last.safetensors" --data "$DATA" --limit "$EVAL_LIMIT" \
        --eps 0.00784 --eps 0.03137 --purify 10 --report "$OUT/jem/report_purified"
fi

if [ "$STAGE" = all ] || [ "$STAGE" = samples ]; then
    CK=$OUT/jem/last.safetensors
    "$EXE" sample --ckpt "$CK" --from buffer --steps 0 --n 64 --out "$OUT/samples_buffer.png"
    "$EXE" sample --ckpt "$CK" --n 8 --at 0,1,5,10,20,50,100 --out "$OUT/samples_fresh.png" \
        --json "$OUT/samples_fresh.json" --plot "$OUT/samples_fresh_energy.png"
    "$EXE" sample --ckpt "$CK" --from buffer --n 8 --at 0,20,100,200 --out "$OUT/samples_longrun.png" \
        --json "$OUT/samples_longrun.json"
    "$EXE" sample --ckpt "$CK" --class all --n 8 --steps 50 --from buffer \
        --class-names "$DATA/batches.meta.txt" --out "$OUT/samples_class.png"
fi
echo "cifar: done; figures and pictures in $OUT/"
