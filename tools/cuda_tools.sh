#!/bin/sh
# tools/cuda_tools.sh DIR — CUDA's PTX assembler (ptxas) and libdevice, the two
# pieces of the CUDA toolkit `jemc compile --target cuda` uses at compile time,
# unpacked into DIR (make deps-cuda: build/cuda-tools, where jemc looks for
# them) from Debian's nvidia-cuda-toolkit package (CUDA 11.8: ptxas knows
# sm_50..sm_90). Nothing is installed system-wide: the package comes from the
# machine's own Debian mirror with its non-free component through a private
# apt configuration, and only its files are unpacked. No GPU is needed; a
# machine that has the CUDA toolkit already (ptxas on PATH, /usr/local/cuda)
# needs none of this. Exits 0 when DIR already has both.
set -eu
dir=${1:-build/cuda-tools}
ptxas="$dir/usr/bin/ptxas"
libdevice="$dir/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc"
[ -x "$ptxas" ] && [ -f "$libdevice" ] && exit 0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/sources.list.d" "$tmp/lists/partial" "$tmp/archives/partial"
# the Debian suite and mirror this machine already uses, with non-free
uri=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
[ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
if [ -z "$uri" ]; then echo "cuda_tools.sh: no Debian mirror found in /etc/apt" >&2; exit 1; fi
cat > "$tmp/sources.list.d/jemc-cuda.sources" <<SRC
Types: deb
URIs: $uri
Suites: $suite
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts="-o APT::Sandbox::User=root -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$tmp/sources.list.d -o Dir::State::Lists=$tmp/lists
          -o Dir::Cache::Archives=$tmp/archives -o APT::Get::List-Cleanup=0"
echo "cuda_tools.sh: fetching nvidia-cuda-toolkit (ptxas, libdevice) from $uri $suite non-free" >&2
apt-get $apt_opts -q update >&2
(cd "$tmp" && apt-get $apt_opts -q download nvidia-cuda-toolkit >&2)
mkdir -p "$dir"
dpkg-deb -x "$tmp"/nvidia-cuda-toolkit_*.deb "$tmp/x"
mkdir -p "$dir/usr/bin" "$(dirname "$libdevice")"
cp "$tmp/x/usr/bin/ptxas" "$ptxas"
cp "$tmp/x/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc" "$libdevice"
"$ptxas" --version | tail -1 >&2
