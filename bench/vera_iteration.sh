#!/bin/sh
# bench/vera_iteration.sh — one JEM-VERA iteration against one SGLD-JEM iteration
# (K = 20 steps) on MNIST, side by side: graphs/vera_mnist.graph's train_step_vera
# and graphs/jem_mnist.graph's train_step, the same CNN EBM and the same batch of
# 64 (tests/parity/torch_ref.py's inputs; every parameter from its declared
# initialiser, which the cost does not depend on). Times `EXE exec PROGRAM --repeat N` (median of the
# runs after the first), alternating the two executables ROUNDS times so that a
# busy machine slows both alike. Prints milliseconds per iteration and the ratio.
#
#   bench/vera_iteration.sh [THREADS] [REPS] [ROUNDS]     defaults: 1, 10, 3
set -eu
cd "$(dirname "$0")/.."
THREADS=${1:-1}
REPS=${2:-10}
ROUNDS=${3:-3}
JEMC=${JEMC:-build/jemc}
OUT=$(mktemp -d /tmp/jemc_vera_bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
[ -x "$JEMC" ] || make >/dev/null
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $THREADS; $($JEMC --version | tail -1)"
$JEMC compile graphs/jem_mnist.graph -o "$OUT/jem" >/dev/null
$JEMC compile graphs/vera_mnist.graph -o "$OUT/vera" >/dev/null
/usr/bin/python3 tests/parity/torch_ref.py --model mnist --batch 64 --dtype float32 --out "$OUT/data" >/dev/null
time_of() {   # exe program -> median ms
    "$OUT/$1" exec "$2" --in "$OUT/data/inputs.safetensors" \
        --out "$OUT/o.safetensors" --threads "$THREADS" --repeat $((REPS + 1)) 2>&1 | sed -n 's/.*(median \([0-9.]*\), min.*/\1/p'
}
printf '%-6s %22s %26s %8s\n' round "jem_mnist train_step ms" "vera_mnist train_step_vera ms" "jem/vera"
r=1
while [ $r -le "$ROUNDS" ]; do
    j=$(time_of jem train_step)
    v=$(time_of vera train_step_vera)
    printf '%-6s %22s %26s %8s\n' "$r" "$j" "$v" "$(echo "$j $v" | awk '{printf "%.2f", $1 / $2}')"
    r=$((r + 1))
done
