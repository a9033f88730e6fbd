#!/bin/sh
# tools/compare_samplers.sh — the JEM family's samplers side by side on one
# trained model, at equal numbers of energy-gradient evaluations per chain.
#
#   tools/compare_samplers.sh mnist|cifar CKPT [OUT]
#
# mnist: graphs/jem_mnist.graph (the `make demo` model, build/demo/run/last.safetensors);
# cifar: graphs/jem_wrn28.graph -D widen=2 (tools/cifar_cpu.sh's WRN-28-2). The
# graph is compiled into OUT with -D hmc_lf=HMC_LF plus EXTRA_D (e.g. "-D norm=1"
# for a batch-norm checkpoint), then for each sampler program of the graph
# (`sample --program NAME`, docs/samplers.md "Comparing samplers"):
#
#   sample       JEM's SGLD kept in [-1, 1]          1 gradient per step
#   sample_pyld  JEM++'s PYLD-M-N (N 5, lr .2)       1 (the inner steps reuse it)
#   sample_sada  SADA-JEM's clipped SGLD             1
#   sample_mala  MALA, step adapted toward 57%       2 (at x and at the proposal)
#   sample_hmc   HMC, HMC_LF leapfrog steps a move   HMC_LF + 1
#
# it runs BUDGET / (gradients per step) steps of N chains from FROM (noise:
# uniform in [-1, 1], the same starting points for every sampler; buffer: the
# checkpoint's replay buffer) and records the mean energy of the samples, of
# their starting points and of N test images (`eval accuracy`), the acceptance
# rate (MALA, HMC), the time per step and per gradient evaluation, and a grid
# OUT/NAME.png. The table goes to OUT/table.md and stdout.
#
# JEMC (the compiler; default: make, then build/jemc), GRAPH (another graph with
# these programs), BUDGET (default 20, JEM's K), N (256), FROM (noise), THREADS (2), SEED (0),
# HMC_LF (4), DATA (the test set: ../shared/data/mnist/t10k-images-idx3-ubyte
# or ../shared/data/cifar10/test_batch.bin), SETS (extra `--set NAME=V` words,
# e.g. "--set hmc_eps=0.001 --set mala_step=1e-5").
set -eu
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
KIND=$1
CKPT=$2
BUDGET=${BUDGET:-20}
N=${N:-256}
FROM=${FROM:-noise}
THREADS=${THREADS:-2}
SEED=${SEED:-0}
HMC_LF=${HMC_LF:-4}
SETS=${SETS:-}
EXTRA_D=${EXTRA_D:-}
case $KIND in
    mnist) GRAPH=${GRAPH:-graphs/jem_mnist.graph}; DFLAGS=""; DATA=${DATA:-../shared/data/mnist/t10k-images-idx3-ubyte}
           LABELS="--labels ${LABELS:-../shared/data/mnist/t10k-labels-idx1-ubyte}" ;;
    cifar) GRAPH=${GRAPH:-graphs/jem_wrn28.graph}; DFLAGS="-D widen=2"; DATA=${DATA:-../shared/data/cifar10/test_batch.bin}; LABELS="" ;;
    *) echo "compare_samplers: the model is mnist or cifar, got '$KIND'" >&2; exit 2 ;;
esac
OUT=${3:-build/samplers_$KIND}
[ -f "$CKPT" ] || { echo "compare_samplers: no checkpoint $CKPT (mnist: make demo; cifar: tools/cifar_cpu.sh)" >&2; exit 2; }
case $BUDGET in ''|*[!0-9]*) echo "compare_samplers: BUDGET must be a positive integer, got '$BUDGET'" >&2; exit 2 ;; esac
mkdir -p "$OUT"
if [ -z "${JEMC:-}" ]; then
    make -s all
    JEMC=build/jemc
fi
EXE=$OUT/exe
# shellcheck disable=SC2086
"$JEMC" compile "$GRAPH" $DFLAGS $EXTRA_D -D hmc_lf="$HMC_LF" -o "$EXE"

# the data's own energy: N test images through `evaluate`
# shellcheck disable=SC2086
"$EXE" eval accuracy --ckpt "$CKPT" --data "$DATA" $LABELS --limit "$N" --threads "$THREADS" --json "$OUT/data.json" > "$OUT/data.log"

for prog in sample sample_pyld sample_sada sample_mala sample_hmc; do
    case $prog in
        sample_mala) per=2 ;;
        sample_hmc) per=$((HMC_LF + 1)) ;;
        *) per=1 ;;
    esac
    steps=$((BUDGET / per))
    [ "$steps" -ge 1 ] || { echo "compare_samplers: BUDGET $BUDGET is less than one step of $prog ($per gradients)" >&2; exit 2; }
    echo "compare_samplers: $prog, $steps steps ($per gradient evaluation(s) a step)" >&2
    # shellcheck disable=SC2086
    "$EXE" sample --program "$prog" --ckpt "$CKPT" --from "$FROM" --n "$N" --steps "$steps" --seed "$SEED" \
        --threads "$THREADS" --nrow 16 --out "$OUT/$prog.png" --json "$OUT/$prog.json" $SETS > "$OUT/$prog.log"
    echo "$per" > "$OUT/$prog.per"
done

python3 - "$OUT" "$BUDGET" "$N" "$FROM" "$KIND" "$CKPT" <<'EOF'
import json, os, sys
out, budget, n, start, kind, ckpt = sys.argv[1:7]
data = json.load(open(os.path.join(out, "data.json")))
rows = ["| sampler | steps | grad evals | E(samples) | E(start) | E(data) | acceptance | final step | s / step | s / grad eval | grid |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
fmt = lambda v, f: "n/a" if v is None else f % v
for prog in ("sample", "sample_pyld", "sample_sada", "sample_mala", "sample_hmc"):
    j = json.load(open(os.path.join(out, prog + ".json")))
    per = int(open(os.path.join(out, prog + ".per")).read())
    o = j["outputs"]
    # `accepts` is the accepted moves per chain over the run
    acc = o["accepts"] / j["steps"] if "accepts" in o and j["steps"] else None
    sps = j["seconds_per_step"]
    rows.append("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s.png |" % (
        prog, j["steps"], j["steps"] * per, fmt(j["energy"], "%.3f"), fmt(j["energy_start"], "%.3f"),
        fmt(data.get("energy"), "%.3f"), fmt(None if acc is None else 100 * acc, "%.1f%%"),
        fmt(o.get("eta"), "%.3g"), fmt(sps, "%.4f"), fmt(sps / per if sps else None, "%.4f"), prog))
head = ("%s model %s, %s chains from %s, %s gradient evaluations each; E(data): %s test images.\n\n"
        % (kind, ckpt, n, start, budget, data.get("records", n)))
text = head + "\n".join(rows) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text, end="")
EOF
