#!/bin/sh
# bench/gpu/prepare.sh — builds, on this machine (which has LLVM), the bundle that
# bench/gpu/check.sh and bench/gpu/run.sh use on a GPU machine (which has none):
#   small/     t_cuda's small configurations of the four shipped graphs: each an
#              executable small/CFG/jem, a start state small/CFG/state0.safetensors
#              (the declared initialisers), and per program small/CFG/PROG/:
#              in.safetensors (its inputs, from st_inputs) and the CPU references
#              that the same executable computed here with --device cpu from the
#              same state and inputs:
#                ref1.*   one run from state0
#                ref2.*   train_step and train_step_vera: a second run, from ref1's state
#                ref3.*   three runs in one process from state0 (on the GPU the
#                         second is captured as a CUDA graph, the third replays it)
#              (*.out.safetensors: the outputs; *.state.safetensors: the new state,
#              left out when the program changes no tensor of the state: check.sh
#              then compares with state0; ref3.out is left out when it is bitwise
#              ref1.out). small/MANIFEST: "CFG PROGRAM RUNS changes|same own|ref1"
#              per program (RUNS: eager runs; the last: where run 3's outputs are)
#   wrn10/     WRN-28-10 JEM (batch 64, K 20): train_step, --precision tf32
#              (run.sh and check.sh time fp32 with JEMC_GPU_FP32=1)
#   wrn2/      WRN-28-2 (batch 64, K 20), tf32
#   mnist/     the MNIST CNN (batch 64, K 20), tf32
#   sampler/   WRN-28-10, 100 chains x 100 SGLD steps (program `sample`), tf32
#              (each with its inputs x, y; none of these with --small-only)
#   bin/       st_compare (the comparison; no LLVM)
#   lib/       the executables' shared libraries that a bare GPU machine may lack
#              (cairo, giflib and what they load), copied from this machine.
# and DIR.tar.gz beside it, the bundle to carry (executables compress 4x; the
# float data does not). Host code is for --cpu x86-64-v3 (any AVX2 machine), not
# this CPU; nothing in the bundle links LLVM.
#   bench/gpu/prepare.sh [--small-only] [--out DIR] [ARCH]
#     ARCH defaults to sm_90 (H100/H200); DIR to build/gpu-bench.
#   JEMC (default build/jemc) is the compiler; st_compare and st_inputs come from
#   its directory; JEMC_CC and JEMC_PTXAS pass through to jemc compile.
set -eu
cd "$(dirname "$0")/../.."
ARCH=sm_90 OUT=build/gpu-bench SMALL_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
    --small-only) SMALL_ONLY=1 ;;
    --out) [ $# -ge 2 ] || { echo "prepare.sh: --out needs a directory" >&2; exit 2; }; OUT=$2; shift ;;
    -*) echo "prepare.sh: unknown option '$1' (usage: prepare.sh [--small-only] [--out DIR] [ARCH])" >&2; exit 2 ;;
    *) ARCH=$1 ;;
    esac
    shift
done
JEMC=${JEMC:-build/jemc}
TOOLS=$(dirname "$JEMC")
[ -x "$JEMC" ] && [ -x "$TOOLS/st_compare" ] && [ -x "$TOOLS/st_inputs" ] || make B="$TOOLS" >/dev/null
CPU=x86-64-v3
rm -rf "$OUT" "$OUT.tar.gz"
mkdir -p "$OUT/lib" "$OUT/bin" "$OUT/small"
cp "$TOOLS/st_compare" "$OUT/bin/"

# ---- the small configurations (tests/t_cuda.c's), with CPU references ----
# the tensor list of PROGRAM's inputs, as st_inputs takes it: x:f32[3,1,28,28] ...
inputs_of() {   # exe program
    "$1" info | awk -v p="$2" '/^program / {cur = $2} cur == p && $1 == "in" {sub(":$", "", $2); printf "%s:%s ", $2, $3}'
}
# one CPU run (one thread: the configurations run side by side; results are bitwise
# the same for any thread count); on failure, again with its messages
cpu() { OMP_NUM_THREADS=1 "$@" 2>/dev/null >/dev/null || { echo "prepare.sh: failed on the CPU: $*" >&2; "$@" >/dev/null; exit 1; }; }
small() {   # config graph defines...
    cfg=$1 graph=$2; shift 2
    d="$OUT/small/$cfg"
    mkdir -p "$d"
    defs=""
    for kv in "$@"; do defs="$defs -D $kv"; done
    # shellcheck disable=SC2086
    "$JEMC" compile "graphs/$graph" --target cuda --gpu-arch "$ARCH" --cpu "$CPU" $defs -o "$d/jem"
    exe="$d/jem"
    progs=$("$exe" info | awk '/^program / {print $2}')
    # the start state: the declared initialisers, written out by one run of a program
    # that changes no state (logits; its own inputs)
    mkdir -p "$d/logits"
    # shellcheck disable=SC2046
    "$TOOLS/st_inputs" "$d/logits/in.safetensors" $(inputs_of "$exe" logits)
    cpu "$exe" --device cpu exec logits --in "$d/logits/in.safetensors" --state-out "$d/state0.safetensors"
    for p in $progs; do
        pd="$d/$p"
        mkdir -p "$pd"
        spec=$(inputs_of "$exe" "$p")
        inarg=""
        if [ -n "$spec" ]; then
            # shellcheck disable=SC2086
            [ -f "$pd/in.safetensors" ] || "$TOOLS/st_inputs" "$pd/in.safetensors" $spec
            inarg="--in $pd/in.safetensors"
        fi
        # t_cuda runs train_step twice; so here the two training programs that have a
        # second run's worth of state to check (the variants: once, and in run 3)
        runs=1
        case $p in train_step|train_step_vera) runs=2 ;; esac
        # shellcheck disable=SC2086
        cpu "$exe" --device cpu exec "$p" --state "$d/state0.safetensors" $inarg --out "$pd/ref1.out.safetensors" --state-out "$pd/ref1.state.safetensors"
        if [ $runs = 2 ]; then
            # shellcheck disable=SC2086
            cpu "$exe" --device cpu exec "$p" --state "$pd/ref1.state.safetensors" $inarg --out "$pd/ref2.out.safetensors" --state-out "$pd/ref2.state.safetensors"
        fi
        # shellcheck disable=SC2086
        cpu "$exe" --device cpu exec "$p" --state "$d/state0.safetensors" $inarg --repeat 3 --out "$pd/ref3.out.safetensors" --state-out "$pd/ref3.state.safetensors"
        # a program that changes no tensor of the state is checked against state0 (saves carrying copies of it)
        state=changes
        if "$TOOLS/st_compare" --exact "$pd/ref1.state.safetensors" "$d/state0.safetensors" >/dev/null &&
           "$TOOLS/st_compare" --exact "$pd/ref3.state.safetensors" "$d/state0.safetensors" >/dev/null; then
            state=same
            rm -f "$pd/ref1.state.safetensors" "$pd/ref3.state.safetensors"
        fi
        out3=own
        if "$TOOLS/st_compare" --exact "$pd/ref3.out.safetensors" "$pd/ref1.out.safetensors" >/dev/null; then
            out3=ref1
            rm -f "$pd/ref3.out.safetensors"
        fi
        echo "$cfg $p $runs $state $out3" >> "$d.manifest"
    done
}
# the four at once (each is mostly one thread), then their manifests in order
small jem_mnist jem_mnist.graph batch=3 buffer_size=20 sgld_steps=3 & p1=$!
small jem_wrn28 jem_wrn28.graph batch=2 depth=10 widen=1 classes=5 buffer_size=10 sgld_steps=2 & p2=$!
small mlp_tabular mlp_tabular.graph batch=5 sgld_steps=3 & p3=$!
small vera_mnist vera_mnist.graph batch=3 noise_dim=8 g_feats=4 post_samples=3 sgld_steps=2 & p4=$!
failed=0
for p in $p1 $p2 $p3 $p4; do wait "$p" || failed=1; done
[ $failed = 0 ] || { echo "prepare.sh: a small configuration failed (above)" >&2; exit 1; }
for cfg in jem_mnist jem_wrn28 mlp_tabular vera_mnist; do cat "$OUT/small/$cfg.manifest"; rm "$OUT/small/$cfg.manifest"; done > "$OUT/small/MANIFEST"

# ---- the benchmark's executables (bench/gpu/run.sh) ----
one() {   # name precision x-shape defines...
    name=$1 prec=$2 shape=$3; shift 3
    mkdir -p "$OUT/$name"
    "$JEMC" compile graphs/jem_wrn28.graph --target cuda --gpu-arch "$ARCH" --cpu "$CPU" --precision "$prec" "$@" -o "$OUT/$name/jem"
    "$TOOLS/st_inputs" "$OUT/$name/inputs.safetensors" "x:f32[$shape]" "y:i64[${shape%%,*}]"
}
if [ $SMALL_ONLY = 0 ]; then
    one wrn10 tf32 64,3,32,32 & p1=$!
    one wrn2 tf32 64,3,32,32 -D widen=2 & p2=$!
    one sampler tf32 100,3,32,32 -D batch=100 -D sgld_steps=100 & p3=$!
    mkdir -p "$OUT/mnist"
    "$JEMC" compile graphs/jem_mnist.graph --target cuda --gpu-arch "$ARCH" --cpu "$CPU" -D sgld_steps=20 -o "$OUT/mnist/jem"
    "$TOOLS/st_inputs" "$OUT/mnist/inputs.safetensors" "x:f32[64,1,28,28]" "y:i64[64]"
    for p in $p1 $p2 $p3; do wait "$p" || failed=1; done
    [ $failed = 0 ] || { echo "prepare.sh: a benchmark executable failed (above)" >&2; exit 1; }
fi

# shared libraries beyond the C library and OpenMP (the GPU image has those); every
# executable links the same runtime libraries
ldd "$OUT/small/jem_mnist/jem" | awk '/=> \// {print $3}' | while read -r so; do
    case "$(basename "$so")" in libc.so*|libm.so*|libgomp.so*|libpthread.so*|libdl.so*|ld-linux*) ;; *) cp -L "$so" "$OUT/lib/" ;; esac
done
tar -czf "$OUT.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
echo "prepare.sh: $OUT ($(du -sh "$OUT" | cut -f1)); carry $OUT.tar.gz ($(du -sh "$OUT.tar.gz" | cut -f1))"
