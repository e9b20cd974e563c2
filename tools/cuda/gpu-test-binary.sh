#!/usr/bin/env bash
# gpu-test-binary.sh [OUT] — `make gpu-test-binary`: build a self-contained
# bundle that runs the CUDA backend's tests and benchmarks on a GPU machine
# without Go or the source tree (default OUT: dist/gpu-test, plus
# dist/pancap-gpu-test.tar.gz).
#
# The bundle holds the test binary (linked against libcuda.so.1, which the
# NVIDIA driver provides; cuBLAS is opened at run time), the golden cases
# and the small random checkpoints they use, and run.sh:
#
#   ./run.sh                      # all tests, verbose
#   ./run.sh -test.run Golden     # one test
#   ./run.sh -test.run '^$' -test.bench . -test.benchtime 20x   # benchmarks
#
# The binary needs glibc ≥ the build machine's (Debian 12: 2.36) and a
# driver for CUDA ≥ 11.8 (PTX ISA 7.8), compute capability ≥ 8.0.
#
# GPU_TEST_TAR=0 skips the tarball (tools/cuda/gpu-bundle.sh packs the
# folder itself).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/dist/gpu-test}
cd "$root"
. tools/cuda/toolkit-env.sh

rm -rf "$out"
mkdir -p "$out/kernels/cuda"
go test -tags cuda -c -trimpath -o "$out/kernels/cuda/cuda.test" ./kernels/cuda/
if [[ -d testdata/golden ]]; then
	mkdir -p "$out/testdata"
	cp -r testdata/golden "$out/testdata/"
	# The checkpoints (and LoRA adapters) the golden cases name.
	python3 - "$out" <<'PY'
import glob, json, os, shutil, sys
out = sys.argv[1]
paths = set()
for case in glob.glob("testdata/golden/*/case.json"):
    c = json.load(open(case))
    for key in ("checkpoint", "lora"):
        if c.get(key):
            paths.add(c[key])
for p in sorted(paths):
    shutil.copytree(p, os.path.join(out, p), dirs_exist_ok=True, symlinks=False)
PY
fi
cat >"$out/run.sh" <<'RUN'
#!/bin/sh
# Runs the CUDA backend's tests (or, with -test.bench, its benchmarks).
here=$(cd "$(dirname "$0")" && pwd)
export PANCAP_REPO_ROOT="$here"
cd "$here/kernels/cuda" && exec ./cuda.test -test.v "$@"
RUN
chmod +x "$out/run.sh"
git rev-parse HEAD >"$out/COMMIT" 2>/dev/null || true
[[ ${GPU_TEST_TAR:-1} == 0 ]] && exit 0
tar -C "$(dirname "$out")" -czf "$(dirname "$out")/pancap-gpu-test.tar.gz" "$(basename "$out")"
echo "gpu-test-binary: $out and $(dirname "$out")/pancap-gpu-test.tar.gz ($(du -sh "$out" | cut -f1))"
