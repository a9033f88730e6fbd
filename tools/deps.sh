#!/bin/sh
# tools/deps.sh — install the Debian packages jemc needs, and only the missing ones.
#   tools/deps.sh build      packages needed to build jemc and its runtime
#   tools/deps.sh test       build packages + what the test suite needs (prove, PyTorch,
#                            scikit-learn: t_metrics checks against it, and it ships the
#                            UCI tables tools/sklearn_tables.py converts)
#   tools/deps.sh fuzz       test packages + clang-19 and libFuzzer
#   add --check to only report (exit 1 if something is missing, install nothing)
# Idempotent: when everything is present it runs one dpkg-query and exits.
set -eu
what=${1:-test}
check_only=0
[ "${2:-}" = "--check" ] && check_only=1

# clang-19: the runtime's GPU library kernels (runtime/gpu/dev_lib.c) are compiled to NVPTX bitcode
# Open MPI: mpicc builds the multi-process shim (runtime/dist/), mpirun launches and tests it
build="gcc make llvm-19-dev clang-19 libffi-dev libpng-dev zlib1g-dev libgif-dev libcairo2-dev openmpi-bin libopenmpi-dev"
test="$build perl python3 python3-torch python3-numpy python3-sklearn"
fuzz="$test libclang-rt-19-dev"
case "$what" in
    build) pkgs=$build ;;
    test)  pkgs=$test ;;
    fuzz)  pkgs=$fuzz ;;
    *) echo "deps.sh: unknown set '$what' (build, test or fuzz)" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0
if [ $check_only = 1 ]; then
    echo "deps.sh: missing Debian packages:$missing" >&2
    exit 1
fi

echo "deps.sh: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them once if the install fails.
$SUDO apt-get install -y -q --no-install-recommends $missing || {
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends $missing
}
