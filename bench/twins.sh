#!/bin/sh
# bench/twins.sh — what twin batching (--batch-twins, docs/passes.md §5b) does on
# this machine: the same graph compiled with the pass off and on, timed side by
# side (`EXE exec PROGRAM --repeat N`, median of the runs after the first), for
# the programs that evaluate the classifier twice (jem_loss, train_step).
# Also times jem_loss at batch B and 2B: when 2B costs twice B, batching cannot pay.
#
#   bench/twins.sh [THREADS] [REPS] [ROUNDS]     defaults: all cores, 8, 2
set -eu
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
REPS=${2:-8}
ROUNDS=${3:-2}
JEMC=${JEMC:-build/jemc}
OUT=$(mktemp -d /tmp/jemc_twins.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
[ -x "$JEMC" ] || make >/dev/null
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $THREADS"
printf '%-18s %-11s %10s %10s %8s\n' model program "off ms" "on ms" "off/on"
med() { "$1" exec "$2" --state "$3/weights.safetensors" --in "$3/inputs.safetensors" --out "$OUT/o.safetensors" \
        --threads "$THREADS" --repeat $((REPS + 1)) 2>&1 | sed -n 's/.*(median \([0-9.]*\), min.*/\1/p'; }
run() {   # label graph defines torch-args batch
    label=$1 graph=$2 defs=$3 targs=$4 b=$5
    # shellcheck disable=SC2086
    $JEMC compile "$graph" $defs -D batch=$b -o "$OUT/off" >/dev/null
    # shellcheck disable=SC2086
    $JEMC compile "$graph" $defs -D batch=$b --batch-twins=on -o "$OUT/on" >/dev/null
    # shellcheck disable=SC2086
    $JEMC compile "$graph" $defs -D batch=$((2 * b)) -o "$OUT/off2" >/dev/null
    /usr/bin/python3 tests/parity/torch_ref.py $targs --batch "$b" --dtype float32 --out "$OUT/d" >/dev/null
    /usr/bin/python3 tests/parity/torch_ref.py $targs --batch $((2 * b)) --dtype float32 --out "$OUT/d2" >/dev/null
    r=1
    while [ $r -le "$ROUNDS" ]; do
        for prog in jem_loss train_step; do
            a=$(med "$OUT/off" $prog "$OUT/d") c=$(med "$OUT/on" $prog "$OUT/d")
            printf '%-18s %-11s %10s %10s %8s\n' "$label b$b" "$prog" "$a" "$c" "$(echo "$a $c" | awk '{printf "%.2f", $1 / $2}')"
        done
        a=$(med "$OUT/off" jem_loss "$OUT/d") c=$(med "$OUT/off2" jem_loss "$OUT/d2")
        printf '%-18s %-11s %10s %10s %8s\n' "$label" "b$b vs b$((2 * b))" "$a" "$c" "$(echo "$a $c" | awk '{printf "%.2f", $2 / $1}')"
        r=$((r + 1))
    done
}
run jem_mnist graphs/jem_mnist.graph "" "--model mnist" 64
run jem_mnist graphs/jem_mnist.graph "" "--model mnist" 16
run "jem_wrn28 w2" graphs/jem_wrn28.graph "-D widen=2" "--model wrn --depth 28 --widen 2" 64
