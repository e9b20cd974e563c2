#!/usr/bin/env bash
# gpu-bundle.sh [OUT] — `make gpu-bundle`: the self-contained bundle for one
# GPU session (default OUT: dist/gpu-bundle, plus dist/pancap-gpu-bundle.tar.gz,
# at most 60 MiB): bin/pancap (the cuda build), tests/ (the CUDA test binary,
# the golden cases and their checkpoints: tools/cuda/gpu-test-binary.sh) and
# run.sh (tools/cuda/bundle-run.sh: tests, a 13b checkpoint in /dev/shm,
# serve, bench at concurrency 1/8/32, the authors' procedure in transformers
# where the machine has it (bin/hfprompts, hf_procedure.py), per-op
# benchmarks, a JSON and markdown summary in $OUT). On the GPU machine:
#
#   tar xzf pancap-gpu-bundle.tar.gz && cd gpu-bundle && OUT=/some/dir ./run.sh
#
# tools/cuda/check.sh runs ./run.sh --dry-run against the emulated driver.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/dist/gpu-bundle}
cd "$root"
. tools/cuda/toolkit-env.sh
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)

rm -rf "$out"
mkdir -p "$out/bin"
GPU_TEST_TAR=0 tools/cuda/gpu-test-binary.sh "$out/tests"
go build -tags cuda -trimpath -ldflags "-s -w -X github.com/pancap-serve/pancap/internal/buildinfo.version=$version" \
	-o "$out/bin/pancap" ./cmd/pancap
go build -trimpath -ldflags "-s -w" -o "$out/bin/hfprompts" ./tools/cuda/hfprompts
cp tools/cuda/bundle-run.sh "$out/run.sh"
cp tools/cuda/hf_procedure.py "$out/hf_procedure.py"
chmod +x "$out/run.sh"
git rev-parse HEAD >"$out/COMMIT" 2>/dev/null || echo "$version" >"$out/COMMIT"
tar="$(dirname "$out")/pancap-gpu-bundle.tar.gz"
tar -C "$(dirname "$out")" -czf "$tar" "$(basename "$out")"
size=$(stat -c %s "$tar")
echo "gpu-bundle: $out and $tar ($((size >> 20)) MiB)"
if ((size > 60 << 20)); then
	echo "gpu-bundle: $tar is over 60 MiB" >&2
	exit 1
fi
