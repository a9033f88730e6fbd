#!/usr/bin/env bash
# tests/mutations/run.sh — does the suite catch real breakage? (make mutations)
#
# Each NN-name.patch here is a unified diff against the source that breaks one
# thing on purpose (a train_step that never stores its parameter update, Adam's
# moments or the replay buffer; a gradient rule with the wrong sign; a GPU that
# never commits its state writes; ...). Its first lines say which test must
# catch it ("# test: t_compiled") and why. For every patch this script applies
# it to a COPY of the working tree, rebuilds what changed, runs that test and
# expects it to fail (a "not ok" line, non-zero exit), then reverts it.
#
# The working tree is never modified: the tracked and untracked (not ignored)
# files are copied, as they are now, to a temporary directory, built there
# once (make B=build), and each test first runs there unmutated (it must pass,
# or the run stops: a test that fails anyway proves nothing).
#
# Output is TAP: one line per mutation, "ok N - NAME: caught by TEST (...)"
# or "not ok N - NAME: NOT CAUGHT by TEST". Exit 0 when every mutation was
# caught, 1 when one survived (or did not apply or build), 2 when the copy
# does not build or a test fails unmutated. Not part of `make test` (it builds
# the tree once more and runs t_compiled, t_cuda and t_gradcheck about a dozen
# times: tens of minutes on 2 cores).
#
#   tests/mutations/run.sh [NAME...]   only the patches whose names contain NAME
#   JOBS=N        make -jN (default 2)
#   KEEP=1        keep the temporary directory (build, logs) and say where
#   MUT_TIMEOUT=S each test run's time limit in seconds (default 1800)
#   MUT_CUDA_TOOLS=DIR  CUDA's libdevice/ptxas for t_cuda (default: the
#                 working tree's build/cuda-tools; without it t_cuda skips its
#                 GPU comparisons and the GPU mutations survive)
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
jobs=${JOBS:-2}
limit=${MUT_TIMEOUT:-1800}

patches=()
for p in "$here"/*.patch; do
    name=$(basename "$p" .patch)
    if [ $# -gt 0 ]; then
        want=0
        for a in "$@"; do case "$name" in *"$a"*) want=1 ;; esac; done
        [ $want = 1 ] || continue
    fi
    patches+=("$p")
done
if [ ${#patches[@]} = 0 ]; then echo "1..0 # SKIP no mutation matches: $*"; exit 0; fi

tmp=$(mktemp -d /tmp/jemc_mutations.XXXXXX)
if [ "${KEEP:-0}" = 1 ]; then echo "# keeping $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
src=$tmp/src
logs=$tmp/logs
mkdir -p "$src" "$logs"

echo "# copying the working tree of $repo to $src"
(cd "$repo" && git ls-files -z -c -o --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$src" ||
    { echo "Bail out! could not copy the working tree"; exit 2; }
tools=${MUT_CUDA_TOOLS:-$repo/build/cuda-tools}
mkdir -p "$src/build"
[ -d "$tools" ] && ln -s "$(cd "$tools" && pwd)" "$src/build/cuda-tools"

test_of() { sed -n 's/^# test: *\([A-Za-z0-9_]*\).*/\1/p' "$1" | head -n 1; }
tests=()
for p in "${patches[@]}"; do
    t=$(test_of "$p")
    [ -n "$t" ] || { echo "Bail out! $(basename "$p") names no test ('# test: t_NAME')"; exit 2; }
    case " ${tests[*]-} " in *" $t "*) ;; *) tests+=("$t") ;; esac
done
targets="build/jemc build/libjemrt.a build/jemrt_main.o build/jemrt_dev.bc build/tests/libfakecuda.so"
for t in "${tests[@]}"; do targets="$targets build/tests/$t"; done

build() { make -C "$src" B=build -j"$jobs" $targets > "$1" 2>&1; }
run_test() { (cd "$src" && JEMC=build/jemc JM_BUILD=build timeout "$limit" "build/tests/$1") > "$2" 2>&1; }

echo "# building the copy (make B=build -j$jobs)"
if ! build "$logs/build.log"; then
    tail -n 30 "$logs/build.log" | sed 's/^/# /'
    echo "Bail out! the unmutated copy does not build"; exit 2
fi
for t in "${tests[@]}"; do
    echo "# $t, unmutated"
    if ! run_test "$t" "$logs/$t.base.log"; then
        grep -m 5 '^not ok' "$logs/$t.base.log" | sed 's/^/# /'
        echo "Bail out! $t fails without any mutation (log: $logs/$t.base.log)"; exit 2
    fi
done

echo "1..${#patches[@]}"
n=0 survived=0
for p in "${patches[@]}"; do
    n=$((n + 1))
    name=$(basename "$p" .patch)
    t=$(test_of "$p")
    log=$logs/$name.log
    if ! patch -d "$src" -p1 --forward --silent < "$p" > "$logs/$name.patch.log" 2>&1; then
        echo "not ok $n - $name: the patch does not apply (the source moved: regenerate it)"
        sed 's/^/# /' "$logs/$name.patch.log"
        survived=$((survived + 1))
        continue
    fi
    if ! build "$logs/$name.build.log"; then
        echo "not ok $n - $name: does not build with the mutation"
        grep -m 5 'error' "$logs/$name.build.log" | sed 's/^/# /'
        survived=$((survived + 1))
    else
        run_test "$t" "$log"
        rc=$?
        first=$(grep -m 1 '^not ok' "$log")
        if [ $rc = 124 ] || [ $rc = 137 ]; then
            echo "not ok $n - $name: $t timed out after ${limit}s (inconclusive)"
            survived=$((survived + 1))
        elif [ $rc != 0 ] && [ -n "$first" ]; then
            echo "ok $n - $name: caught by $t ($(grep -c '^not ok' "$log") failing: ${first:0:160})"
        elif [ $rc != 0 ]; then
            echo "ok $n - $name: caught by $t (exit $rc without a failing point: $(tail -n 1 "$log" | cut -c1-120))"
        else
            echo "not ok $n - $name: NOT CAUGHT by $t"
            survived=$((survived + 1))
        fi
    fi
    patch -d "$src" -p1 -R --silent < "$p" > /dev/null 2>&1 ||
        { echo "Bail out! could not revert $name in the copy"; exit 2; }
done
if [ $survived = 0 ]; then
    echo "# all ${#patches[@]} mutations caught"
    exit 0
fi
echo "# $survived of ${#patches[@]} mutations survived"
exit 1
