#!/bin/sh
# bench/dp_scaling.sh — data-parallel JEM training on this machine
# (docs/data-parallel.md): MNIST JEM (graphs/jem_mnist.graph, K = 20 SGLD
# steps) at global batch 64, as
#   A  1 process x THREADS threads, batch 64              (the usual run)
#   B  2 processes x THREADS/2 threads, batch 32 each     (mpirun -np 2)
#   C  1 process x THREADS/2 threads, batch 32, --accumulate 2 (B's serial twin)
#   D  B with the gradients in buckets of 0.1 MB sent during the backward pass
#      (overlap: B sends its 0.6 MB as one 25 MB-capped bucket when the backward
#      pass ends), and E: B with one blocking exchange after it (--bucket-mb 0)
# ITERS iterations each (the first LOG-interval not counted: warm-up), alternated
# ROUNDS times so a busy machine slows all alike. Prints iterations per second
# and the exchange's milliseconds per iteration (metrics.jsonl's exchange_ms:
# reading the gradients back, the allreduce, writing the means), then one
# exchange by itself at the shipped graphs' gradient sizes (build/bench_allreduce).
#
#   bench/dp_scaling.sh [THREADS] [ITERS] [ROUNDS]      defaults: 2, 40, 2
set -eu
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ITERS=${2:-40}
ROUNDS=${3:-2}
HALF=$((THREADS / 2 > 0 ? THREADS / 2 : 1))
JEMC=${JEMC:-build/jemc}
DATA=${DATA:-../shared/data/mnist}
OUT=$(mktemp -d /tmp/jemc_dp_bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
[ -x "$JEMC" ] && [ -x build/bench_allreduce ] || make all build/bench_allreduce >/dev/null
# mpirun in a container, as tests/mpi_helpers.h runs it
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 \
    OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_plm=isolated
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $(mpirun --version | head -1)"
$JEMC compile graphs/jem_mnist.graph -o "$OUT/b64" >/dev/null
$JEMC compile graphs/jem_mnist.graph -D batch=32 -o "$OUT/b32" >/dev/null
LOG=10
# it/s and exchange ms over the logged intervals after the first
rate() {
    awk -v lg="$LOG" '/"it_per_s"/ { s = $0; sub(/.*"step": /, "", s); step = s + 0;
        if (step <= lg) next;
        r = $0; sub(/.*"it_per_s": /, "", r); n++; it += r;
        if ($0 ~ /exchange_ms/) { e = $0; sub(/.*"exchange_ms": /, "", e); ex += e; ne++ }
        if ($0 ~ /exchange_wait_ms/) { w = $0; sub(/.*"exchange_wait_ms": /, "", w); wt += w;
            b = $0; sub(/.*"buckets_early": /, "", b); be += b; nw++ } }
        END { printf "%8.3f it/s  exchange %s", it / n, ne ? sprintf("%.2f ms/it", ex / ne) : "-";
              if (nw) printf ", waited after backward %.2f ms/it, %.1f buckets/it sent during it", wt / nw, be / nw }' "$1/metrics.jsonl"
}
TRAIN="train --data $DATA --iters $ITERS --log-every $LOG --no-progress --sample-every 0 --ckpt-every 0"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    OMP_NUM_THREADS=$THREADS "$OUT/b64" $TRAIN --out "$OUT/a" --threads "$THREADS" 2>/dev/null
    mpirun -np 2 -x OMP_NUM_THREADS=$HALF "$OUT/b32" $TRAIN --out "$OUT/b" --threads "$HALF" 2>/dev/null
    OMP_NUM_THREADS=$HALF "$OUT/b32" $TRAIN --out "$OUT/c" --threads "$HALF" --accumulate 2 2>/dev/null
    mpirun -np 2 -x OMP_NUM_THREADS=$HALF "$OUT/b32" $TRAIN --out "$OUT/d" --threads "$HALF" --bucket-mb 0.1 2>/dev/null
    mpirun -np 2 -x OMP_NUM_THREADS=$HALF "$OUT/b32" $TRAIN --out "$OUT/e" --threads "$HALF" --bucket-mb 0 2>/dev/null
    echo "round $r"
    echo "  A 1 x $THREADS threads, batch 64:        $(rate "$OUT/a")"
    echo "  B 2 ranks x $HALF threads, 2 x 32:       $(rate "$OUT/b")"
    echo "  C 1 x $HALF threads, 32 --accumulate 2:  $(rate "$OUT/c")"
    echo "  D as B, 0.1 MB buckets (overlap):     $(rate "$OUT/d")"
    echo "  E as B, --bucket-mb 0 (no overlap):   $(rate "$OUT/e")"
    r=$((r + 1))
done
echo "one exchange, 2 ranks:"
mpirun -np 2 build/bench_allreduce 10
