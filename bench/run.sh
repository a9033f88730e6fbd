#!/bin/sh
# bench/run.sh — jemc against PyTorch, side by side on this machine.
#
# For jem_mnist and jem_wrn28 (widen 2) at batch 64: compiles the graph with
# jemc, times `EXE exec PROGRAM --repeat N` (median of the runs after the first), and
# times the same computation in PyTorch (bench/torch_bench.py, Debian's
# python3-torch) with the same number of threads. Prints milliseconds per call
# and the ratio PyTorch / jemc (above 1: jemc is faster).
#
#   bench/run.sh [THREADS] [REPS]        defaults: all cores, 10
set -eu
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
REPS=${2:-10}
JEMC=${JEMC:-build/jemc}
OUT=$(mktemp -d /tmp/jemc_bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
[ -x "$JEMC" ] || make >/dev/null
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $THREADS; $($JEMC --version | tail -1)"
echo "torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
printf '%-22s %-10s %12s %12s %10s\n' model program "jemc ms" "torch ms" "torch/jemc"
run() {   # label graph defines torch-args
    label=$1 graph=$2 defs=$3 targs=$4
    # shellcheck disable=SC2086
    $JEMC compile "$graph" $defs -o "$OUT/exe" >/dev/null
    /usr/bin/python3 tests/parity/torch_ref.py $targs --batch 64 --dtype float32 --out "$OUT/data" >/dev/null
    /usr/bin/python3 bench/torch_bench.py $targs --batch 64 --threads "$THREADS" --reps "$REPS" --programs "$(echo $PROGS | tr ' ' ',')" > "$OUT/torch.txt"
    for prog in $PROGS; do
        jt=$("$OUT/exe" exec "$prog" --state "$OUT/data/weights.safetensors" --in "$OUT/data/inputs.safetensors" \
                --out "$OUT/o.safetensors" --threads "$THREADS" --repeat $((REPS + 1)) 2>&1 | sed -n 's/.*(median \([0-9.]*\), min.*/\1/p')
        tt=$(sed -n "s/^$prog //p" "$OUT/torch.txt")
        printf '%-22s %-10s %12s %12s %10s\n' "$label" "$prog" "$jt" "$tt" "$(echo "$tt $jt" | awk '{printf "%.2f", $1 / $2}')"
    done
}
PROGS="logits sgld_grad jem_loss train_step"
run jem_mnist graphs/jem_mnist.graph "" "--model mnist"
PROGS="logits sgld_grad jem_loss train_step"
run "jem_wrn28 widen 2" graphs/jem_wrn28.graph "-D widen=2" "--model wrn --depth 28 --widen 2"
