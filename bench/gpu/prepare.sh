#!/bin/sh
# bench/gpu/prepare.sh — builds, on this machine (which has LLVM), everything
# bench/gpu/run.sh needs on a GPU machine (which has none), in build/gpu-bench:
#   wrn10/     WRN-28-10 JEM (batch 64, K 20): train_step, --precision tf32
#   wrn10_fp32 the same, --precision fp32
#   wrn2/      WRN-28-2 (batch 64, K 20), tf32
#   mnist/     the MNIST CNN (batch 64, K 20), tf32
#   sampler/   WRN-28-10, 100 chains x 100 SGLD steps (program `sample`), tf32
# each with its inputs (x, y) as safetensors, and lib/: the executables'
# shared libraries that a bare GPU machine may lack (cairo, giflib and what
# they load), copied from this machine. Carry build/gpu-bench to the device.
#   bench/gpu/prepare.sh [ARCH]     ARCH defaults to sm_90 (H100/H200)
set -eu
cd "$(dirname "$0")/../.."
ARCH=${1:-sm_90}
JEMC=${JEMC:-build/jemc}
OUT=build/gpu-bench
[ -x "$JEMC" ] || make >/dev/null
rm -rf "$OUT"
mkdir -p "$OUT/lib"
one() {   # name precision x-shape defines...
    name=$1 prec=$2 shape=$3; shift 3
    mkdir -p "$OUT/$name"
    "$JEMC" compile graphs/jem_wrn28.graph --target cuda --gpu-arch "$ARCH" --precision "$prec" "$@" -o "$OUT/$name/jem"
    /usr/bin/python3 - "$OUT/$name" "$shape" <<'PY'
import sys, torch
sys.path.insert(0, "tests/parity")
import torch_ref
out, shape = sys.argv[1], [int(v) for v in sys.argv[2].split(",")]
g = torch.Generator().manual_seed(0)
x = torch.rand(shape, generator=g) * 2 - 1
y = torch.randint(10, (shape[0],), generator=g)
torch_ref.write_safetensors(out + "/inputs.safetensors", [("x", x), ("y", y)])
PY
}
one wrn10 tf32 64,3,32,32
one wrn10_fp32 fp32 64,3,32,32
one wrn2 tf32 64,3,32,32 -D widen=2
one sampler tf32 100,3,32,32 -D batch=100 -D sgld_steps=100
mkdir -p "$OUT/mnist"
"$JEMC" compile graphs/jem_mnist.graph --target cuda --gpu-arch "$ARCH" -D sgld_steps=20 -o "$OUT/mnist/jem"
/usr/bin/python3 - "$OUT/mnist" <<'PY'
import sys, torch
sys.path.insert(0, "tests/parity")
import torch_ref
g = torch.Generator().manual_seed(0)
torch_ref.write_safetensors(sys.argv[1] + "/inputs.safetensors",
                            [("x", torch.rand([64, 1, 28, 28], generator=g) * 2 - 1), ("y", torch.randint(10, (64,), generator=g))])
PY
# shared libraries beyond the C library, OpenMP and libffi/libpng (which the GPU image has)
ldd "$OUT/wrn10/jem" | awk '/=> \// {print $3}' | while read -r so; do
    case "$(basename "$so")" in libc.so*|libm.so*|libgomp.so*|libpthread.so*|libdl.so*|ld-linux*) ;; *) cp -L "$so" "$OUT/lib/" ;; esac
done
du -sh "$OUT"
