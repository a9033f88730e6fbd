#!/bin/sh
# 50 JEM iterations of graphs/jem_mnist.graph's train_step in jemc against
# PyTorch (tests/parity/torch_iteration.py: the official iteration, with jemc's
# own random draws): the interpreter in float64 and the compiled executable in
# float32, each chained through --state-out/--state as `train` does, from the
# same weights, replay buffer and batch (one fixed batch, so the loss falls).
# Prints the loss curves, the worst per-iteration difference and the state
# after the last iteration; the figures are in bench/iteration_curve.md.
#   bench/iteration_curve.sh [ITERS]      (B=build by default; OUT=/tmp/jemc_curve)
set -eu
ITERS=${1:-50}
B=${B:-build}
JEMC=${JEMC:-$B/jemc}
OUT=${OUT:-/tmp/jemc_curve}
SEED=2
DEFS="-D batch=8 -D buffer_size=64 -D sgld_steps=5 -D reinit=0.05 -D lr=0.001 -D warmup=10"
REF="--model mnist --batch 8 --buffer 64 --steps 5 --reinit 0.05 --lr 0.001 --warmup 10"
rm -rf "$OUT" && mkdir -p "$OUT"
"$JEMC" compile graphs/jem_mnist.graph train_step --dump=ir $DEFS > "$OUT/ir.txt"
t0=$(date +%s)
/usr/bin/python3 tests/parity/torch_iteration.py $REF --ir "$OUT/ir.txt" --seed 3 --jemc-seed $SEED --iters "$ITERS" --out "$OUT" > "$OUT/torch.json"
t1=$(date +%s)
"$JEMC" compile graphs/jem_mnist.graph $DEFS -o "$OUT/jem_mnist"
t2=$(date +%s)
for lab in interp_f64 exe_f32; do
    prev="$OUT/state.safetensors"
    k=1
    while [ "$k" -le "$ITERS" ]; do
        if [ "$lab" = interp_f64 ]; then
            "$JEMC" run graphs/jem_mnist.graph train_step $DEFS --precision f64 --seed $SEED --state "$prev" \
                --in "$OUT/inputs.safetensors" --out "$OUT/out_${lab}_$k.safetensors" --state-out "$OUT/state_${lab}.safetensors"
        else
            "$OUT/jem_mnist" exec train_step --seed $SEED --state "$prev" \
                --in "$OUT/inputs.safetensors" --out "$OUT/out_${lab}_$k.safetensors" --state-out "$OUT/state_${lab}.safetensors"
        fi
        cp "$OUT/state_${lab}.safetensors" "$OUT/prev_${lab}.safetensors"
        prev="$OUT/prev_${lab}.safetensors"
        k=$((k + 1))
    done
    eval "t_$lab=\$(date +%s)"
done
echo "seconds: torch $((t1 - t0)), compile $((t2 - t1)), interp f64 $((t_interp_f64 - t2)), exe f32 $((t_exe_f32 - t_interp_f64))"
/usr/bin/python3 bench/iteration_curve.py "$OUT" interp_f64 exe_f32
