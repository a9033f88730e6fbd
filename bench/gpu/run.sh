#!/bin/sh
# bench/gpu/run.sh — on a GPU machine: jemc against PyTorch, the same GPU, one go.
# Needs the bundle of bench/gpu/prepare.sh (run where LLVM is), unpacked
# (tar -xzf build/gpu-bench.tar.gz -C build; BUNDLE=DIR names another place), and
# a python3 with CUDA PyTorch (bench/gpu/check.sh runs it last). Prints seconds
# per call, peak memory and the ratios (PyTorch / jemc: above 1, jemc is faster), for:
#   the WRN-28-10 JEM training iteration (batch 64, K 20): jemc tf32 and fp32
#     (the same executable with JEMC_GPU_FP32=1)
#     against every PyTorch configuration of bench/gpu/torch_gpu.py
#   the launch-bound iterations: MNIST CNN and WRN-28-2 against eager TF32
#   SGLD sampling of WRN-28-10, 100 chains x 100 steps: image-steps per second
#   bench/gpu/run.sh [REPS]      (default 10); RESULTS=FILE also appends the table there
set -eu
cd "$(dirname "$0")/../.."
REPS=${1:-10}
B=${BUNDLE:-build/gpu-bench}
PY=${PYTHON:-python3}
[ -d "$B" ] || { echo "run.sh: no $B: run bench/gpu/prepare.sh first (where LLVM is), carry build/gpu-bench.tar.gz and unpack it" >&2; exit 1; }
B=$(cd "$B" && pwd)
if [ -z "${JEMC_BUNDLE_LIBS:-}" ]; then     # (check.sh has done it)
    . bench/gpu/bundle_libs.sh
    libs=$(mktemp -d)
    trap 'rm -rf "$libs"' EXIT
    bundle_libs "$B/lib" "$libs"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
jemc() {   # dir program -> "seconds MiB"
    log=$("$B/$1/jem" exec "$2" --in "$B/$1/inputs.safetensors" --repeat $((REPS + 1)) 2>&1 >/dev/null) || { echo "FAILED: $log" >&2; echo "- -"; return; }
    ms=$(echo "$log" | sed -n 's/.*(median \([0-9.]*\), min.*/\1/p')
    mib=$(echo "$log" | sed -n 's/.* \([0-9.]*\) MiB of device memory allocated by jemc.*/\1/p')
    echo "$ms $mib" | awk '{printf "%.6f %s\n", $1 / 1000, $2}'
}
table=$(mktemp)
row() { printf '%-12s %-26s %12s %10s %12s\n' "$@" | tee -a "$table"; }
row model config "s/call" "peak MiB" "torch/jemc"
set -- $(jemc wrn10 train_step); jt=$1; row wrn-28-10 "jemc tf32" "$1" "$2" ""
set -- $(export JEMC_GPU_FP32=1; jemc wrn10 train_step); jf=$1; row wrn-28-10 "jemc fp32" "$1" "$2" ""
"$PY" bench/gpu/torch_gpu.py --model wrn --widen 10 --reps "$REPS" | sed -n 's/^RESULT //p' | while read -r m cfg s mib rest; do
    ref=$jt; [ "$cfg" = fp32 ] && ref=$jf
    row "$m" "torch $cfg" "$s" "$mib" "$(echo "$s $ref" | awk '$1 ~ /^[0-9.]+$/ && $2 > 0 {printf "%.2f", $1 / $2}')"
done
for m in wrn2:wrn:2 mnist:mnist:0; do
    d=${m%%:*}; rest=${m#*:}; model=${rest%%:*}; widen=${rest#*:}
    set -- $(jemc "$d" train_step); j=$1; row "$d" "jemc tf32" "$1" "$2" ""
    "$PY" bench/gpu/torch_gpu.py --model "$model" --widen "$widen" --configs eager-tf32,graph-bf16-cl --reps "$REPS" | sed -n 's/^RESULT //p' |
        while read -r mm cfg s mib rest; do row "$d" "torch $cfg" "$s" "$mib" "$(echo "$s $j" | awk '$1 ~ /^[0-9.]+$/ && $2 > 0 {printf "%.2f", $1 / $2}')"; done
done
set -- $(jemc sampler sample); js=$1
row sampler "jemc tf32 (img-steps/s)" "$1" "$2" "$(echo "$1" | awk '$1 > 0 {printf "%.0f", 10000 / $1}')"
"$PY" bench/gpu/torch_gpu.py --model wrn --widen 10 --sample --batch 100 --steps 100 --configs eager-bf16-cl,graph-bf16-cl --reps 3 |
    sed -n 's/^RESULT //p' | while read -r m cfg s mib ips; do row sampler "torch $cfg" "$s" "$mib" "$ips img-steps/s"; done
[ -n "${RESULTS:-}" ] && cat "$table" >> "$RESULTS"
rm -f "$table"
