#!/bin/sh
# tools/ssl_tabular.sh — semi-supervised classification of real tables (VERA's
# tabular experiment, jem-spec.md 7.5, on the UCI tables Debian's python3-sklearn
# ships): classifier-only, VAT, JEM with SGLD and JEM-VERA, the same network
# (graphs/ssl_tabular.graph: D-1000-500-500-250-250-250-C, LeakyReLU 0.2) and the
# same LABELS labelled records per class, over SEEDS seeds; the table of test
# accuracy (mean and spread) lands in $OUT/table.md, every run's figures in
# $OUT/<data>/<method>/s<seed>/.
#
#   data:    tools/sklearn_tables.py (digits 1797 x 64, 10 classes; breast cancer
#            569 x 30, 2 classes; wine 178 x 13, 3 classes), standardised by train
#            with the training split's mean and std;
#   splits:  --test-split TEST_SPLIT held out (drawn from the seed), labelled records
#            --labels-per-class LABELS drawn from the rest (the seed again); the
#            unlabelled batch x of the semi-supervised programs is every training
#            record; a seed changes the split, the labelled subset, the
#            initialisation and every random draw;
#   methods: ce   train_step_ce (the labelled records alone, VERA's --clf_only)
#            vat  train_step_vat (VERA's --vat: xi 10, eps 3, weight 1)
#            jem  train_step_jem (VERA's --jem_baseline: SGLD, replay buffer)
#            vera train_step_vera (VERA's --jem with labels_per_class)
#            each for ITERS iterations (Adam 1e-4 after a WARMUP-iteration warm-up);
#            JEM and VERA weigh the labelled cross-entropy CLF_WEIGHT (100) and VERA's
#            generator entropy is weighted ENT_WEIGHT (1e-4): VERA's own JEM command
#            line's values (jem-spec 7.4). With VERA's unsupervised defaults (1 and 1)
#            a 300-iteration run on digits drove E(data) to -200 and stayed at 16%;
#   eval:    `eval accuracy` of the last checkpoint on the held-out split (the run's
#            own file: train remembers the split): accuracy, Brier score, AUROC.
#
# Runs go JOBS at a time with one thread each (independent seeds; results do not
# depend on the thread count). Knobs: DATASETS, METHODS, SEEDS, ITERS, LABELS,
# TEST_SPLIT, JOBS, OUT, WARMUP, CLF_WEIGHT, ENT_WEIGHT, TRAIN_ARGS (more train options, e.g. --set warmup=100). Tiny check (a minute): ITERS=20 SEEDS=1 DATASETS=wine.
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-build/ssl}
DATASETS=${DATASETS:-digits breast_cancer}
METHODS=${METHODS:-ce vat jem vera}
SEEDS=${SEEDS:-1 2 3}
ITERS=${ITERS:-600}
LABELS=${LABELS:-10}
TEST_SPLIT=${TEST_SPLIT:-0.2}
JOBS=${JOBS:-2}
WARMUP=${WARMUP:-100}
CLF_WEIGHT=${CLF_WEIGHT:-100}
ENT_WEIGHT=${ENT_WEIGHT:-0.0001}
TRAIN_ARGS=${TRAIN_ARGS:-}
JEMC=${JEMC:-build/jemc}
TABLES=$OUT/tables

mkdir -p "$OUT"
[ -x "$JEMC" ] || make -s all
python3 tools/sklearn_tables.py --out "$TABLES" $DATASETS

# one executable per table: its width, classes and labelled batch (VERA: the
# labelled batch is min(batch, number of labelled records))
header() { head -1 "$TABLES/$1.csv"; }
for d in $DATASETS; do
    D=$(($(header "$d" | tr ',' '\n' | wc -l) - 1))
    C=$(tail -n +2 "$TABLES/$d.csv" | awk -F, '{print $NF}' | sort -un | wc -l)
    LB=$((LABELS * C < 64 ? LABELS * C : 64))
    EXE=$OUT/$d/ssl_$d
    mkdir -p "$OUT/$d"
    [ -x "$EXE" ] || "$JEMC" compile graphs/ssl_tabular.graph -D features="$D" -D classes="$C" -D lab_batch="$LB" -o "$EXE"
    # the classifier alone sees only the labelled records: its batch is theirs
    [ -x "${EXE}_ce" ] || "$JEMC" compile graphs/ssl_tabular.graph -D features="$D" -D classes="$C" -D batch="$LB" -o "${EXE}_ce"
done

# the job list: one line per (data, method, seed)
LIST=$OUT/jobs.txt
: > "$LIST"
for d in $DATASETS; do for m in $METHODS; do for s in $SEEDS; do echo "$d $m $s" >> "$LIST"; done; done; done

run_one() {
    d=$1 m=$2 s=$3
    R=$OUT/$d/$m/s$s
    EXE=$OUT/$d/ssl_$d
    [ "$m" = ce ] && EXE=${EXE}_ce
    if [ -f "$R/accuracy.json" ]; then return 0; fi
    rm -rf "$R"
    mkdir -p "$R"
    case $m in
        jem) A="--set clf_weight=$CLF_WEIGHT" ;;
        vera) A="--set clf_weight=$CLF_WEIGHT --set ent_weight=$ENT_WEIGHT" ;;
        *) A="" ;;
    esac
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$EXE" train --data "$TABLES/$d.csv" --test-split "$TEST_SPLIT" --labels-per-class "$LABELS" \
        --program "train_step_$m" --iters "$ITERS" --seed "$s" --data-seed "$s" --threads 1 --set warmup="$WARMUP" $A $TRAIN_ARGS \
        --log-every 100 --ckpt-every 0 --no-progress --out "$R/run" > "$R/train.log" 2>&1 || {
        echo "ssl: $d $m seed $s: train failed (see $R/train.log)" >&2; return 1; }
    t1=$(date +%s)
    "$EXE" eval accuracy --ckpt "$R/run/last.safetensors" --data "$TABLES/$d.csv" --threads 1 \
        --json "$R/accuracy.json" > "$R/eval.log" 2>&1 || {
        echo "ssl: $d $m seed $s: eval failed (see $R/eval.log)" >&2; return 1; }
    echo $((t1 - t0)) > "$R/seconds"
    echo "ssl: $d $m seed $s: $(cat "$R/seconds") s, $(sed 's/.*"accuracy": *\([0-9.]*\).*/\1/' "$R/accuracy.json")"
}

# JOBS runs at a time: job i goes to worker i mod JOBS
w=0
while [ $w -lt "$JOBS" ]; do
    (
        i=0
        while read -r d m s; do
            if [ $((i % JOBS)) -eq $w ]; then run_one "$d" "$m" "$s" || :; fi
            i=$((i + 1))
        done < "$LIST"
    ) &
    w=$((w + 1))
done
wait

python3 - "$OUT" "$LIST" "$LABELS" "$ITERS" <<'EOF'
import json, os, statistics, sys
out, listfile, labels, iters = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = {}
for line in open(listfile):
    d, m, s = line.split()
    p = os.path.join(out, d, m, "s" + s)
    try:
        a = json.load(open(os.path.join(p, "accuracy.json")))
        sec = float(open(os.path.join(p, "seconds")).read())
    except (OSError, ValueError):
        continue
    rows.setdefault((d, m), []).append((a, sec))
names = {"ce": "classifier only", "vat": "VAT", "jem": "JEM (SGLD)", "vera": "JEM-VERA"}
def ms(v, scale=1.0, fmt="%.1f"):
    v = [x * scale for x in v if x == x]
    if not v:
        return "-"
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return (fmt + " ± " + fmt) % (statistics.mean(v), sd)
lines = ["| data | method | seeds | test accuracy (%) | Brier | AUROC | s / run |", "|---|---|---:|---:|---:|---:|---:|"]
for (d, m), v in rows.items():
    acc = [a["accuracy"] for a, _ in v]
    brier = [a.get("brier", float("nan")) for a, _ in v]
    auc = [a.get("auroc") if a.get("auroc") is not None else a.get("auroc_ovr", float("nan")) for a, _ in v]
    auc = [x if isinstance(x, (int, float)) else float("nan") for x in auc]
    lines.append("| %s | %s | %d | %s | %s | %s | %.0f |" % (d, names.get(m, m), len(v), ms(acc, 100), ms(brier, 1, "%.3f"),
                 ms(auc, 1, "%.3f"), statistics.mean(s for _, s in v)))
text = "%s labelled records per class, %s iterations, test split held out per seed\n\n" % (labels, iters) + "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text)
EOF
