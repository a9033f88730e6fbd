#!/bin/sh
# bench/gpu/check.sh — the GPU machine's run plan, one go: everything a first
# session with a GPU should learn, over the bundle bench/gpu/prepare.sh built
# where LLVM is. Needs a POSIX shell, coreutils (timeout), awk, tar and gzip; no
# LLVM, no compiler, no Python (only the PyTorch timings use python3).
#
#   bench/gpu/check.sh [-b BUNDLE] [--skip STEPS] [--only CFG[/PROG],...] [--deadline S] LOGDIR
#
# BUNDLE is prepare.sh's directory or its .tar.gz (default build/gpu-bench, else
# build/gpu-bench.tar.gz; a tarball is unpacked under $TMPDIR and removed after).
# Steps, in this order (--skip a comma list of their names):
#   probe     nvidia-smi; where libcuda, cuBLAS and cuDNN are; ldd of every carried
#             executable; each executable's --version (its x86-64-v3 host code
#             runs on this CPU); one small program on the GPU (the executable
#             says where it failed when a library does not load)
#   eager     every program of t_cuda's small configurations on the GPU with CUDA
#             graphs off (JEMC_GPU_GRAPHS=0), CUDA_LAUNCH_BLOCKING=1 and cuDNN's and
#             cuBLAS's logs (LOGDIR/eager/CFG/*.cudnn.txt, *.cublas.txt); train_step
#             and train_step_vera twice, the second run from the first's CPU
#             reference state
#   graphs    every program again with graphs on (the default), three runs in one
#             process: eager, captured, replayed
#   sanitizer compute-sanitizer --tool memcheck on jem_mnist's train_step (eager)
#   timing    bench/gpu/run.sh's executables alone (exec --repeat), then
#             bench/gpu/run.sh against PyTorch when python3 has CUDA PyTorch
# Each run's outputs (--out) and new state (--state-out) are compared with the
# CPU's reference files by bin/st_compare, each tensor at its own scale with
# t_cuda's GPU bounds (values 1e-3, ill-conditioned tensors 2e-2; each global's
# change 0.5 max, 2e-3 rms). Every step has its own time limit (timeout) and the
# whole run a deadline (default 480 s, --deadline): a step that cannot start
# before it is skipped, saying so. Nothing stops the run early. One line per check,
#   PASS|FAIL|SKIP NAME: what was measured, or why
# on stdout and in LOGDIR/summary.txt; every command's log is under LOGDIR.
# Exit status 1 when any check failed, 0 otherwise.
set -u
usage() { echo "usage: bench/gpu/check.sh [-b BUNDLE] [--skip probe,eager,graphs,sanitizer,timing] [--only CFG[/PROG],...] [--deadline S] LOGDIR" >&2; exit 2; }
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
BUNDLE="" SKIP="" ONLY="" DEADLINE=480 LOG=""
while [ $# -gt 0 ]; do
    case $1 in
    -b|--bundle) [ $# -ge 2 ] || usage; BUNDLE=$2; shift ;;
    --skip) [ $# -ge 2 ] || usage; SKIP=$2; shift ;;
    --only) [ $# -ge 2 ] || usage; ONLY=$2; shift ;;
    --deadline) [ $# -ge 2 ] || usage; DEADLINE=$2; shift ;;
    -*) usage ;;
    *) [ -z "$LOG" ] || usage; LOG=$1 ;;
    esac
    shift
done
[ -n "$LOG" ] || usage
# time limits of single steps, in seconds
T_PROBE=${T_PROBE:-60} T_EXEC=${T_EXEC:-120} T_SANITIZER=${T_SANITIZER:-300} T_BENCH=${T_BENCH:-150} T_TORCH=${T_TORCH:-300}
mkdir -p "$LOG" || exit 2
LOG=$(cd "$LOG" && pwd)
SUMMARY=$LOG/summary.txt
: > "$SUMMARY"
START=$(date +%s)
npass=0 nfail=0 nskip=0

res() {   # STATUS NAME REASON: one check's line, printed and kept
    printf '%s %s: %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY"
    case $1 in PASS) npass=$((npass + 1)) ;; FAIL) nfail=$((nfail + 1)) ;; *) nskip=$((nskip + 1)) ;; esac
}
left() { echo $((DEADLINE - ($(date +%s) - START))); }
# runs a command under min(LIMIT, time left); 124: it ran out of time
limited() {   # LIMIT command...
    lim=$1; shift
    l=$(left)
    [ "$l" -lt "$lim" ] && lim=$l
    [ "$lim" -gt 0 ] || return 124
    timeout -k 10 "$lim" "$@" < /dev/null
}
skipped() { case ",$SKIP," in *",$1,"*) return 0 ;; esac; return 1; }
# the last two lines of a log that say something (the executable's own error: its
# sentence, then the way out)
said() { grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 2 | tr '\n' ' ' | cut -c1-400; }
why_failed() {   # rc log
    case $1 in
    124|137) echo "timed out (limit ${lim}s)" ;;
    *) echo "exit $1: $(said "$2")" ;;
    esac
}

# ---- the bundle ----
if [ -z "$BUNDLE" ]; then
    BUNDLE=build/gpu-bench
    [ -d "$BUNDLE" ] || BUNDLE=build/gpu-bench.tar.gz
fi
TMPROOT=$(mktemp -d "${TMPDIR:-/tmp}/jemc-check.XXXXXX") || exit 2
trap 'rm -rf "$TMPROOT"' EXIT
case $BUNDLE in
*.tar.gz|*.tgz)
    mkdir -p "$TMPROOT/bundle"
    if ! tar -xzf "$BUNDLE" -C "$TMPROOT/bundle" 2> "$LOG/unpack.txt"; then
        res FAIL bundle "cannot unpack $BUNDLE: $(said "$LOG/unpack.txt")"
        exit 1
    fi
    BUNDLE=$(find "$TMPROOT/bundle" -mindepth 1 -maxdepth 1 -type d | head -n 1) ;;
esac
if [ ! -f "$BUNDLE/small/MANIFEST" ] || [ ! -x "$BUNDLE/bin/st_compare" ]; then
    res FAIL bundle "$BUNDLE is not a bundle of bench/gpu/prepare.sh (no small/MANIFEST or bin/st_compare)"
    exit 1
fi
BUNDLE=$(cd "$BUNDLE" && pwd)
SMALL=$BUNDLE/small
CMP=$BUNDLE/bin/st_compare
. "$ROOT/bench/gpu/bundle_libs.sh"
bundle_libs "$BUNDLE/lib" "$TMPROOT/lib"     # the bundle's libraries that this machine lacks
export JEMC_BUNDLE_LIBS=1                     # (run.sh: already done)
unset JEMC_GPU_GRAPHS JEMC_GPU_FP32    # the defaults (graphs on, the executable's precision) unless a step says otherwise
{
    echo "date: $(date -u)"; echo "host: $(uname -a)"; echo "bundle: $BUNDLE"
    grep -m1 'model name' /proc/cpuinfo 2>/dev/null
    env | grep -E '^(CUDA|JEMC|LD_LIBRARY_PATH|PATH)' | sort
    echo "the bundle's libraries used (this machine lacks them):"; ls "$TMPROOT/lib"
} > "$LOG/env.txt"

# ---- 1. probe ----
find_lib() {   # OVERRIDE-VAR name...: where the first of the names is, or nothing
    var=$1; shift
    eval "ov=\${$var:-}"
    if [ -n "$ov" ]; then [ -e "$ov" ] && echo "$ov (\$$var)"; return; fi
    for name in "$@"; do
        p=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')
        [ -n "$p" ] && { echo "$p"; return; }
        for dir in $(echo "${LD_LIBRARY_PATH:-}" | tr ':' ' ') ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
            [ -e "$dir/$name" ] && { echo "$dir/$name"; return; }
        done
    done
}
probe() {
    mkdir -p "$LOG/probe"
    if command -v nvidia-smi >/dev/null 2>&1; then
        limited "$T_PROBE" nvidia-smi > "$LOG/probe/nvidia-smi.txt" 2>&1
        rc=$?
        limited "$T_PROBE" nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader > "$LOG/probe/gpu.txt" 2>&1
        if [ $rc = 0 ]; then res PASS probe.nvidia-smi "$(head -n 1 "$LOG/probe/gpu.txt")"
        else res FAIL probe.nvidia-smi "$(why_failed $rc "$LOG/probe/nvidia-smi.txt")"; fi
    else
        res SKIP probe.nvidia-smi "nvidia-smi is not on PATH"
    fi
    cuda=$(find_lib JEMC_LIBCUDA libcuda.so.1)
    cublas=$(find_lib JEMC_LIBCUBLAS libcublas.so.13 libcublas.so.12 libcublas.so.11)
    cudnn=$(find_lib JEMC_LIBCUDNN libcudnn.so.9 libcudnn.so.8)
    { echo "libcuda: ${cuda:-not found}"; echo "cuBLAS: ${cublas:-not found}"; echo "cuDNN: ${cudnn:-not found}"
      ldconfig -p 2>/dev/null | grep -E 'libcuda|libcublas|libcudnn|libnvrtc|libnvJitLink'; } > "$LOG/probe/libraries.txt"
    missing=""
    [ -n "$cuda" ] || missing="$missing libcuda.so.1"
    [ -n "$cublas" ] || missing="$missing libcublas.so.13/.12/.11"
    [ -n "$cudnn" ] || missing="$missing libcudnn.so.9/.8"
    if [ -z "$missing" ]; then res PASS probe.libraries "libcuda $cuda; cuBLAS $cublas; cuDNN $cudnn"
    else res FAIL probe.libraries "not found:$missing (ldconfig, LD_LIBRARY_PATH, CUDA_HOME/lib64, /usr/local/cuda/lib64; the executables may still find them: see probe.gpu)"; fi
    # every carried executable: its libraries resolve, and its host code runs on this CPU
    n=0 bad="" cpus=""
    for f in "$BUNDLE"/bin/st_compare "$BUNDLE"/*/jem "$SMALL"/*/jem; do
        [ -x "$f" ] || continue
        n=$((n + 1))
        rel=${f#"$BUNDLE"/}
        ldd "$f" > "$LOG/probe/ldd.$(echo "$rel" | tr / _).txt" 2>&1
        nf=$(grep -c 'not found' "$LOG/probe/ldd.$(echo "$rel" | tr / _).txt")
        [ "$nf" = 0 ] || bad="$bad $rel: $(grep 'not found' "$LOG/probe/ldd.$(echo "$rel" | tr / _).txt" | head -n 2 | tr -s ' \t' ' ' | tr '\n' ';')"
    done
    nb=$(find "$TMPROOT/lib" -mindepth 1 | wc -l)
    if [ -z "$bad" ]; then res PASS probe.ldd "$n executables: every shared library resolves ($nb of the bundle's lib/ used)"
    else res FAIL probe.ldd "$bad"; fi
    n=0 bad=""
    for f in "$BUNDLE"/*/jem "$SMALL"/*/jem; do
        [ -x "$f" ] || continue
        n=$((n + 1))
        v=$("$f" --version 2>&1); rc=$?
        echo "$v" >> "$LOG/probe/versions.txt"
        if [ $rc != 0 ]; then bad="$bad ${f#"$BUNDLE"/}: $(echo "$v" | tail -n 1 | cut -c1-200)"; else cpus=$(echo "$v" | sed -n 's/.*, CPU \(.*\)$/\1/p'); fi
    done
    if [ -z "$bad" ]; then res PASS probe.cpu "$n executables start on this CPU ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')): CPU $cpus"
    else res FAIL probe.cpu "$bad"; fi
    # a small program with convolutions and matrix products (cuDNN and cuBLAS) on the GPU:
    # the device it reports, or where it failed
    d=$SMALL/jem_mnist
    [ -d "$d" ] || d=$(find "$SMALL" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    # LD_DEBUG=libs: the loader's account of every library it searched for and loaded (dlopen too)
    limited "$T_EXEC" env LD_DEBUG=libs LD_DEBUG_OUTPUT="$LOG/probe/ld_debug" \
        "$d/jem" exec logits --state "$d/state0.safetensors" --in "$d/logits/in.safetensors" --repeat 2 \
        --out "$LOG/probe/gpu_logits.safetensors" > "$LOG/probe/gpu.log" 2>&1
    rc=$?
    loaded=$(cat "$LOG"/probe/ld_debug.* 2>/dev/null | sed -n 's/.*calling init: \(.*\(libcuda\|libcublas\|libcudnn\|fake\)[^ ]*\)$/\1/p' | sort -u | tr '\n' ' ')
    if [ $rc = 0 ]; then res PASS probe.gpu "${d#"$SMALL"/}/logits ran on $(sed -n 's/.* exec: on \(.*\): \([0-9.]* MiB\) of device memory allocated.*/\1 (\2 allocated)/p' "$LOG/probe/gpu.log" | head -n 1 | cut -c1-200); loaded: ${loaded:-?}"
    else res FAIL probe.gpu "${d#"$SMALL"/}/logits: $(why_failed $rc "$LOG/probe/gpu.log"); loaded: ${loaded:-none} (LOGDIR/probe/ld_debug.*)"; fi
}

# ---- 2, 3. every program of the small configurations against the CPU references ----
# one run's outputs and state against their references; one line
verdict() {   # NAME RC PREFIX REF-OUT REF-STATE BEFORE
    name=$1 rc=$2 o=$3 rout=$4 rstate=$5 before=$6
    if [ "$rc" != 0 ]; then res FAIL "$name" "$(why_failed "$rc" "$o.log")"; return; fi
    "$CMP" "$o.out.safetensors" "$rout" > "$o.cmp_out.txt" 2>&1
    c1=$?
    if [ "$rstate" = same ]; then
        # a program that changes no state: every tensor as it was (the random-number position moves)
        "$CMP" --no-meta --before "$before" "$o.state.safetensors" "$before" > "$o.cmp_state.txt" 2>&1
    else
        "$CMP" --before "$before" "$o.state.safetensors" "$rstate" > "$o.cmp_state.txt" 2>&1
    fi
    c2=$?
    s1=$(tail -n 1 "$o.cmp_out.txt" | sed 's/^st_compare: [A-Z]* //') s2=$(tail -n 1 "$o.cmp_state.txt" | sed 's/^st_compare: [A-Z]* //')
    # the runtime falls back to running without a graph, with a note: the check then did not test graphs
    note=$(grep -m1 'cannot run as a CUDA graph' "$o.log" | sed 's/^jemc runtime: note: //' | cut -c1-200)
    [ -n "$note" ] && s2="$s2 | NOTE: $note"
    if [ $c1 = 0 ] && [ $c2 = 0 ]; then res PASS "$name" "outputs $s1 | state $s2"
    elif [ $c1 != 0 ] && [ $c2 != 0 ]; then res FAIL "$name" "outputs $s1 | state $s2"
    elif [ $c1 != 0 ]; then res FAIL "$name" "outputs $s1"
    else res FAIL "$name" "state $s2"; fi
}
wanted() {   # CFG PROG
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *",$1,"*|*",$1/$2,"*) return 0 ;; esac
    return 1
}
programs() {   # MODE: eager or graphs, over the manifest
    mode=$1
    while read -r cfg prog runs state out3; do
        wanted "$cfg" "$prog" || continue
        d=$SMALL/$cfg pd=$SMALL/$cfg/$prog
        mkdir -p "$LOG/$mode/$cfg"
        inarg=""
        [ -f "$pd/in.safetensors" ] && inarg="--in $pd/in.safetensors"
        rstate=same
        if [ "$mode" = eager ]; then
            r=1
            while [ $r -le "$runs" ]; do
                before=$d/state0.safetensors
                [ $r -gt 1 ] && before=$pd/ref$((r - 1)).state.safetensors
                [ "$state" = same ] || rstate=$pd/ref$r.state.safetensors
                o=$LOG/eager/$cfg/$prog.run$r
                if [ "$(left)" -le 0 ]; then res SKIP "eager $cfg/$prog run $r" "deadline (${DEADLINE}s) reached"; r=$((r + 1)); continue; fi
                # shellcheck disable=SC2086
                limited "$T_EXEC" env JEMC_GPU_GRAPHS=0 CUDA_LAUNCH_BLOCKING=1 \
                    CUDNN_LOGLEVEL_DBG=3 CUDNN_LOGINFO_DBG=1 CUDNN_LOGWARN_DBG=1 CUDNN_LOGERR_DBG=1 CUDNN_LOGDEST_DBG="$o.cudnn.txt" \
                    CUBLAS_LOGINFO_DBG=1 CUBLAS_LOGDEST_DBG="$o.cublas.txt" \
                    "$d/jem" exec "$prog" --state "$before" $inarg \
                    --out "$o.out.safetensors" --state-out "$o.state.safetensors" > "$o.log" 2>&1
                verdict "eager $cfg/$prog run $r" $? "$o" "$pd/ref$r.out.safetensors" "$rstate" "$before"
                r=$((r + 1))
            done
        else
            o=$LOG/graphs/$cfg/$prog.runs3
            rout=$pd/ref3.out.safetensors
            [ "$out3" = ref1 ] && rout=$pd/ref1.out.safetensors     # a deterministic program: the same outputs each run
            [ "$state" = same ] || rstate=$pd/ref3.state.safetensors
            if [ "$(left)" -le 0 ]; then res SKIP "graphs $cfg/$prog 3 runs" "deadline (${DEADLINE}s) reached"; continue; fi
            # shellcheck disable=SC2086
            limited "$T_EXEC" "$d/jem" exec "$prog" --state "$d/state0.safetensors" $inarg --repeat 3 \
                --out "$o.out.safetensors" --state-out "$o.state.safetensors" > "$o.log" 2>&1
            verdict "graphs $cfg/$prog 3 runs" $? "$o" "$rout" "$rstate" "$d/state0.safetensors"
        fi
    done < "$SMALL/MANIFEST"
}

# ---- 4. compute-sanitizer ----
sanitizer() {
    cs=$(command -v compute-sanitizer 2>/dev/null)
    for c in ${CUDA_HOME:+$CUDA_HOME/bin/compute-sanitizer} /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [ -n "$cs" ] || { [ -x "$c" ] && cs=$c; }
    done
    d=$SMALL/jem_mnist
    if [ -z "$cs" ]; then res SKIP sanitizer.memcheck "compute-sanitizer not found (PATH, CUDA_HOME/bin, /usr/local/cuda)"; return; fi
    if [ ! -f "$d/train_step/ref1.out.safetensors" ]; then res SKIP sanitizer.memcheck "no jem_mnist/train_step in the bundle"; return; fi
    if [ "$(left)" -le 0 ]; then res SKIP sanitizer.memcheck "deadline (${DEADLINE}s) reached"; return; fi
    mkdir -p "$LOG/sanitizer"
    limited "$T_SANITIZER" env JEMC_GPU_GRAPHS=0 "$cs" --tool memcheck --error-exitcode 86 --log-file "$LOG/sanitizer/memcheck.txt" \
        "$d/jem" exec train_step --state "$d/state0.safetensors" --in "$d/train_step/in.safetensors" \
        --out "$LOG/sanitizer/out.safetensors" --state-out "$LOG/sanitizer/state.safetensors" > "$LOG/sanitizer/run.log" 2>&1
    rc=$?
    summ=$(grep -h 'ERROR SUMMARY' "$LOG/sanitizer/memcheck.txt" 2>/dev/null | tail -n 1 | sed 's/^=* *//')
    if [ $rc = 0 ] && echo "$summ" | grep -q ' 0 errors'; then res PASS sanitizer.memcheck "jem_mnist/train_step: $summ"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then res FAIL sanitizer.memcheck "timed out (limit ${lim}s)"
    else res FAIL sanitizer.memcheck "jem_mnist/train_step: exit $rc: ${summ:-$(said "$LOG/sanitizer/run.log")} (LOGDIR/sanitizer/memcheck.txt)"; fi
}

# ---- 5. timings ----
timing() {
    mkdir -p "$LOG/timing"
    found=0
    for spec in wrn10:train_step:tf32 wrn10:train_step:fp32 wrn2:train_step:tf32 mnist:train_step:tf32 sampler:sample:tf32; do
        dir=${spec%%:*} rest=${spec#*:}; prog=${rest%%:*} prec=${rest#*:}
        [ -x "$BUNDLE/$dir/jem" ] || continue
        found=1
        name="timing $dir $prog $prec"
        if [ "$(left)" -le 0 ]; then res SKIP "$name" "deadline (${DEADLINE}s) reached"; continue; fi
        o=$LOG/timing/$dir.$prec
        fp=0
        [ "$prec" = fp32 ] && fp=1     # JEMC_GPU_FP32=1: fp32 at run time, as --precision fp32 compiles it
        reps=4
        [ "$prog" = sample ] && reps=3
        limited "$T_BENCH" env JEMC_GPU_FP32=$fp "$BUNDLE/$dir/jem" exec "$prog" --in "$BUNDLE/$dir/inputs.safetensors" --repeat $reps > "$o.log" 2>&1
        rc=$?
        if [ $rc = 0 ]; then res PASS "$name" "$(grep -m1 'runs, first' "$o.log" | sed 's/^[^:]*: [^:]*: //'); $(grep -m1 'MiB of device memory' "$o.log" | sed 's/.*: \([0-9.]* MiB of device memory allocated by jemc\).*/\1/')"
        else res FAIL "$name" "$(why_failed $rc "$o.log")"; fi
    done
    if [ $found = 0 ]; then res SKIP timing "no benchmark executables in the bundle (prepare.sh --small-only)"; return; fi
    if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' > "$LOG/timing/torch_probe.txt" 2>&1; then
        res SKIP timing.torch "no python3 with CUDA PyTorch: $(said "$LOG/timing/torch_probe.txt")"
        return
    fi
    if [ "$(left)" -le 0 ]; then res SKIP timing.torch "deadline (${DEADLINE}s) reached"; return; fi
    limited "$T_TORCH" env BUNDLE="$BUNDLE" sh "$ROOT/bench/gpu/run.sh" 3 > "$LOG/timing/run_sh.txt" 2>&1
    rc=$?
    if [ $rc = 0 ]; then res PASS timing.torch "bench/gpu/run.sh 3: the table is LOGDIR/timing/run_sh.txt"
    else res FAIL timing.torch "bench/gpu/run.sh: $(why_failed $rc "$LOG/timing/run_sh.txt") (partial table in LOGDIR/timing/run_sh.txt)"; fi
}

for step in probe eager graphs sanitizer timing; do
    if skipped $step; then res SKIP "$step" "--skip"; continue; fi
    case $step in
    eager|graphs) programs $step ;;
    *) $step ;;
    esac
done
# library logs can be long: big ones compressed
find "$LOG" -type f -name '*.txt' -size +1M -exec gzip -q {} + 2>/dev/null
res_line="check.sh: $npass PASS, $nfail FAIL, $nskip SKIP in $(($(date +%s) - START)) s; logs in $LOG"
echo "$res_line" | tee -a "$SUMMARY"
[ $nfail = 0 ]
