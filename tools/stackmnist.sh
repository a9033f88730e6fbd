#!/bin/sh
# tools/stackmnist.sh — StackMNIST mode counting end to end (jem-spec 7.6,
# docs/evaluation.md "StackMNIST"):
#
#   1. tools/stackmnist.py: three MNIST training digits per record as R, G, B
#      (IDX 3x28x28, int32 mode ids 100 d_R + 10 d_G + d_B) into $OUT/data;
#   2. the digit classifier (graphs/mnist_digit.graph) trained on the MNIST
#      training digits and checked on the t10k digits: the run stops when its
#      accuracy is below STACK_DIGIT_MIN (a counter that misreads digits
#      invents and loses modes);
#   3. unsupervised VERA (graphs/vera_stackmnist.graph, train_step_vera_unsup)
#      on the stacks, bounded by STACK_SECONDS of training;
#   4. `eval modes`: STACK_SAMPLES generator samples (no MCMC), the modes they
#      reach of 1,000 and KL(q || p) against the training labels, the counter
#      checked on the training records ($OUT/modes.json), and a sample grid.
#
# Settings (environment):
#   STACK_OUT        output folder (default build/stackmnist)
#   STACK_MNIST      MNIST directory (default ../shared/data/mnist)
#   STACK_SECONDS    VERA's training time budget in seconds (default 3600)
#   STACK_ITERS      VERA's iteration cap (default 100000: the time bound decides)
#   STACK_SAMPLES    generator samples counted (default 10000, as VERA's counter)
#   STACK_RECORDS    StackMNIST records (default 0: as many as MNIST digits, VERA's rule)
#   STACK_THREADS    threads (default nproc)
#   STACK_DIGIT_ITERS, STACK_DIGIT_MIN   the classifier's iterations (default 1400,
#                    ~10 epochs of 9,000 digits at batch 64) and the accuracy it must
#                    reach on the t10k digits (default 0.97)
#   STACK_SET        extra `train --set NAME=V ...` for VERA (after the recipe's)
#   STACK_DEFINES    extra `jemc compile -D ...` for graphs/vera_stackmnist.graph
#                    (e.g. "-D g_feats=64", VERA's DCGAN width; -D batch=N)
#   STACK_TARGET     `jemc compile --target` (cuda: both executables run on the GPU;
#                    default: this CPU)
#   STACK_BUILD      jemc's build folder (default build; `make B=... all` builds it)
#   STACK_TINY=1     a check of the whole pipeline in seconds: 256 records, 40
#                    classifier iterations (no accuracy gate), 10 VERA
#                    iterations, 200 samples. Its figures mean nothing.
set -eu
cd "$(dirname "$0")/.."
OUT=${STACK_OUT:-build/stackmnist}
MNIST=${STACK_MNIST:-../shared/data/mnist}
THREADS=${STACK_THREADS:-$(nproc)}
SECONDS_BUDGET=${STACK_SECONDS:-3600}
ITERS=${STACK_ITERS:-100000}
SAMPLES=${STACK_SAMPLES:-10000}
RECORDS=${STACK_RECORDS:-0}
DIGIT_ITERS=${STACK_DIGIT_ITERS:-1400}
DIGIT_MIN=${STACK_DIGIT_MIN:-0.97}
TINY=${STACK_TINY:-0}
BUILD=${STACK_BUILD:-build}
TARGET=""
[ -n "${STACK_TARGET:-}" ] && TARGET="--target $STACK_TARGET"
if [ "$TINY" = 1 ]; then
    RECORDS=256; DIGIT_ITERS=40; DIGIT_MIN=0; ITERS=10; SAMPLES=200; SECONDS_BUDGET=600
fi

make -s B="$BUILD" all
if [ ! -f "$MNIST/train-images-idx3-ubyte" ] || [ ! -f "$MNIST/t10k-images-idx3-ubyte" ]; then
    echo "stackmnist.sh: no MNIST (train- and t10k-images-idx3-ubyte) in $MNIST; set STACK_MNIST=DIR" >&2
    exit 2
fi
mkdir -p "$OUT"
start=$(date +%s)

# 1. the data
python3 tools/stackmnist.py --mnist "$MNIST" --out "$OUT/data" --n "$RECORDS" --seed 1

# 2. the digit classifier: Adam 1e-3, x0.1 at epochs 6 and 9 (VERA trains its Net
#    with Adadelta for 14 epochs; jemc has Adam), dropout as Net's
DIGIT=$OUT/mnist_digit
"$BUILD/jemc" compile graphs/mnist_digit.graph -o "$DIGIT" $TARGET
rm -rf "$OUT/digit_run"
$DIGIT train --program train_step_ce --data "$MNIST" --test "$MNIST" --out "$OUT/digit_run" --iters "$DIGIT_ITERS" \
    --decay-epochs 6,9 --decay-rate 0.1 --threads "$THREADS" --seed 1 --log-every 50 --ckpt-every 0 --sample-every 0 --no-progress
$DIGIT eval accuracy --ckpt "$OUT/digit_run/last.safetensors" --data "$MNIST" --json "$OUT/digit_accuracy.json" --threads "$THREADS"
acc=$(sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' "$OUT/digit_accuracy.json")
if ! awk -v a="$acc" -v m="$DIGIT_MIN" 'BEGIN { exit !(a + 0 >= m + 0) }'; then
    echo "stackmnist.sh: the digit classifier reaches $acc on the t10k digits, below STACK_DIGIT_MIN=$DIGIT_MIN; not counting with it" >&2
    exit 1
fi

# 3. unsupervised VERA. The recipe is graphs/vera_stackmnist.graph's defaults with
#    the settings unsupervised VERA on MNIST needed not to diverge
#    (docs/evaluation.md, "Unsupervised VERA on MNIST"): generator Adam 1e-3,
#    100-iteration warm-up, entropy weight 1e-3 (VERA's 1 exploded the energy
#    gap there); the EBM's Adam 1e-4 (VERA's). The divergence guard rolls back
#    and lowers the rates if it still diverges.
VERA=$OUT/vera_stackmnist
"$BUILD/jemc" compile graphs/vera_stackmnist.graph -o "$VERA" $TARGET ${STACK_DEFINES:-}
echo "stackmnist.sh: $($VERA info | tail -1)"
rm -rf "$OUT/vera_run"
$VERA train --program train_step_vera_unsup --data "$OUT/data" --out "$OUT/vera_run" --iters "$ITERS" \
    --max-seconds "$SECONDS_BUDGET" --threads "$THREADS" --seed 1 \
    --set glr=0.001 --set warmup=100 --set ent_weight=0.001 ${STACK_SET:-} \
    --log-every 20 --ckpt-every 500 --sample-every 500 --no-progress
CK=$OUT/vera_run/last.safetensors

# 4. the count
$VERA eval modes --ckpt "$CK" --classifier "$OUT/digit_run/last.safetensors" --data "$OUT/data" \
    --n "$SAMPLES" --seed 1 --json "$OUT/modes.json" --threads "$THREADS"
$VERA sample --ckpt "$CK" --from generator --n 64 --out "$OUT/samples_generator.png" --threads "$THREADS"
$VERA plot --metrics "$OUT/vera_run/metrics.jsonl" --out "$OUT"
echo "stackmnist.sh: done in $(( $(date +%s) - start )) s: $OUT/modes.json, $OUT/digit_accuracy.json, $OUT/samples_generator.png"
