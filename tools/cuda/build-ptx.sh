#!/usr/bin/env bash
# build-ptx.sh [OUTDIR] — compile kernels/cuda/*.cu to PTX for compute_80
# (A100, H100 and later) with the nvcc of tools/cuda-toolkit (fetched when
# missing) or $NVCC. Writes OUTDIR/<name>.ptx (default kernels/cuda/ptx, the
# committed copies that the Go package embeds). `make kernels` runs this.
#
# The output must be byte-for-byte reproducible (check.sh compares it with
# the committed PTX): no -lineinfo/-G, no absolute paths, a pinned nvcc.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/kernels/cuda/ptx}
toolkit=${CUDA_TOOLKIT_DIR:-$root/tools/cuda-toolkit}
if [[ -z ${NVCC:-} ]]; then
	"$root/tools/cuda/fetch-toolkit.sh"
	NVCC=$toolkit/usr/lib/nvidia-cuda-toolkit/bin/nvcc
fi
# nvcc 11.8 predates gcc 12; it only preprocesses host code here.
host_cc=()
if command -v gcc-12 >/dev/null; then
	host_cc=(-ccbin gcc-12 -allow-unsupported-compiler)
fi

mkdir -p "$out"
cd "$root/kernels/cuda"
for src in *.cu; do
	"$NVCC" "${host_cc[@]}" -arch=compute_80 -std=c++17 -O3 -ptx \
		-o "$out/${src%.cu}.ptx" "$src"
done
