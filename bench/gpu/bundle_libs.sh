# bench/gpu/bundle_libs.sh — sourced by check.sh and run.sh on the GPU machine.
# bundle_libs LIB DIR: fills DIR with links to those of the bundle's libraries
# (LIB, copied from the machine that built the bundle) that this machine's loader
# does not know (ldconfig -p), and prepends DIR to LD_LIBRARY_PATH. The machine's
# own copies win: a library built against a newer glibc than this machine's
# is used only where there is no other (ldd then names the missing version).
bundle_libs() {
    mkdir -p "$2" || return 1
    known=$(ldconfig -p 2>/dev/null | awk '{print $1}')
    for so in "$1"/*; do
        [ -e "$so" ] || continue
        n=$(basename "$so")
        echo "$known" | grep -qxF "$n" || ln -sf "$so" "$2/$n"
    done
    export LD_LIBRARY_PATH="$2${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
