#!/usr/bin/env bash
# fetch-toolkit.sh — unpack Debian's CUDA 11.8 headers, nvcc and a libcuda
# link library into tools/cuda-toolkit/ (gitignored), without root and
# without touching the system's apt state: a private sources file (bookworm
# contrib + non-free) and private apt lists/cache live in a scratch folder.
#
# Only the build needs this: the headers for cgo, libcuda.so to link against
# (the binary records the soname libcuda.so.1, provided at run time by the
# NVIDIA driver), and nvcc (cicc, cudafe++, libdevice) to regenerate the PTX.
# No CUDA code runs here.
#
# Environment:
#   CUDA_TOOLKIT_DIR     destination (default: <repo>/tools/cuda-toolkit)
#   CUDA_DEBIAN_MIRROR   Debian mirror (default: http://deb.debian.org/debian)
#   CUDA_DEBIAN_SUITE    suite (default: bookworm)
#
# Exit status: 0 when the toolkit is present (already or now), 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=${CUDA_TOOLKIT_DIR:-$root/tools/cuda-toolkit}
mirror=${CUDA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${CUDA_DEBIAN_SUITE:-bookworm}
# The PTX committed in kernels/cuda/ptx is byte-compared against this nvcc's
# output, so the version is pinned.
version=11.8.89~11.8.0-5~deb12u1
stamp="nvidia-cuda-toolkit=$version"

if [[ -f $dest/.stamp && $(cat "$dest/.stamp") == "$stamp" ]]; then
	exit 0
fi
for tool in apt-get dpkg-deb python3; do
	command -v "$tool" >/dev/null || { echo "fetch-toolkit: $tool is required" >&2; exit 1; }
done

echo "fetch-toolkit: downloading Debian's CUDA $version toolkit packages (about 193 MB, once) into $dest" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/cuda-fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/out"
# The separate sources file: Debian's contrib and non-free components, where
# the CUDA toolkit and the driver library live.
echo "deb $mirror $suite contrib non-free" >"$work/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$work/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$work/lists"
	-o "Dir::State::Status=/dev/null"
	-o "Dir::Cache=$work/cache"
	-o "Debug::NoLocking=true"
	-o "APT::Sandbox::User=$(id -un)"
	-q
)
# retry runs its arguments up to three times (mirrors have bad minutes).
retry() {
	local i
	for i in 1 2 3; do
		"$@" && return 0
		echo "fetch-toolkit: attempt $i of: $* failed" >&2
		sleep $((i * 5))
	done
	return 1
}
echo "fetch-toolkit: apt-get update ($mirror $suite contrib non-free)" >&2
retry apt-get "${apt_opts[@]}" update >/dev/null
echo "fetch-toolkit: downloading nvidia-cuda-toolkit, nvidia-cuda-dev ($version), libcuda1" >&2
cd "$work/debs"
retry apt-get "${apt_opts[@]}" download \
	"nvidia-cuda-toolkit=$version" "nvidia-cuda-dev=$version" libcuda1 >/dev/null
cd "$root"

out=$work/out
# nvcc, cicc, cudafe++, libdevice: the whole toolkit package (≈170 MB).
dpkg-deb -x "$work"/debs/nvidia-cuda-toolkit_*.deb "$out"
# Headers only from nvidia-cuda-dev: they come first in its data archive, so
# the stream is read up to the end of usr/include/ and dropped (the rest is
# ≈2.7 GB of libraries we do not need).
python3 - "$work"/debs/nvidia-cuda-dev_*.deb "$out" <<'PY'
import subprocess, sys, tarfile
deb, out = sys.argv[1], sys.argv[2]
p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
n, seen = 0, False
with tarfile.open(fileobj=p.stdout, mode="r|") as tf:
    for m in tf:
        if m.name.startswith("./usr/include/"):
            seen = True
            if m.isfile() or m.isdir():
                tf.extract(m, out, set_attrs=False)
                n += 1
        elif seen:
            break
p.kill()
p.wait()
if n < 100:
    sys.exit("fetch-toolkit: only %d header entries found in %s" % (n, deb))
PY
# The link library: the driver's libcuda from libcuda1, used at link time
# only (as CUDA's stubs/libcuda.so would be).
dpkg-deb -x "$work"/debs/libcuda1_*.deb "$work/libcuda"
mkdir -p "$out/usr/lib/x86_64-linux-gnu/stubs"
lib=$(find "$work/libcuda" -name 'libcuda.so.*.*' -type f | head -n1)
[[ -n $lib ]] || { echo "fetch-toolkit: libcuda1 holds no libcuda.so" >&2; exit 1; }
cp "$lib" "$out/usr/lib/x86_64-linux-gnu/stubs/libcuda.so"

# nvcc reads nvcc.profile beside itself; Debian's is a link to /etc. Ours
# points at this tree.
bin=$out/usr/lib/nvidia-cuda-toolkit/bin
rm -f "$bin/nvcc.profile"
cat >"$bin/nvcc.profile" <<'PROFILE'
NVVMIR_LIBRARY_DIR = $(_HERE_)/../libdevice
PATH += $(_HERE_):$(_HERE_)/../../../bin:
INCLUDES += "-I$(_HERE_)/../../../include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(_HERE_)/../../x86_64-linux-gnu/stubs"
PROFILE
rm -rf "$out/usr/share" "$out/usr/lib/nvidia-cuda-toolkit/compute-sanitizer"
echo "$stamp" >"$out/.stamp"

rm -rf "$dest.old"
if [[ -e $dest ]]; then mv "$dest" "$dest.old"; fi
mkdir -p "$(dirname "$dest")"
mv "$out" "$dest"
rm -rf "$dest.old"
echo "fetch-toolkit: CUDA $version in $dest" >&2
