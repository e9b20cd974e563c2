#!/usr/bin/env bash
# serve-check.sh PANCAP LIBDIR — `pancap serve --device cuda` end to end on
# the emulated CUDA driver (LIBDIR, from driver/build.sh): serves the tiny
# golden checkpoint on the CPU and on "CUDA", captions testdata/images/
# shapes.png through each with `pancap caption --json`, and fails unless the
# two captions and every stage's text equal each other and the authors'
# reference run (testdata/golden/chain-tiny-shapes.json). PANCAP is a build
# with -tags cuda. Run by tools/cuda/check.sh.
set -euo pipefail
bin=$(realpath "${1:?usage: serve-check.sh PANCAP LIBDIR}")
lib=$(realpath "${2:?usage: serve-check.sh PANCAP LIBDIR}")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cuemu-serve.XXXXXX")
pid=
cleanup() {
	if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

golden=testdata/golden/chain-tiny-shapes.json
maxnew=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_new_tokens"])' "$golden")
for dev in cpu cuda; do
	port=$((20000 + RANDOM % 20000))
	LD_LIBRARY_PATH=$lib PANCAP_CUBLAS=$lib/libcublas.so.12 PANCAP_CUEMU_STATS=$tmp/$dev-stats.json \
		"$bin" serve --addr "127.0.0.1:$port" --model testdata/checkpoints/tiny/llava --device "$dev" \
		--log-level warn 2>"$tmp/$dev.log" &
	pid=$!
	if ! LD_LIBRARY_PATH=$lib "$bin" health --addr "127.0.0.1:$port" --wait 120s >/dev/null; then
		echo "serve-check: pancap serve --device $dev never became SERVING:" >&2
		cat "$tmp/$dev.log" >&2
		exit 1
	fi
	LD_LIBRARY_PATH=$lib "$bin" caption --addr "127.0.0.1:$port" --json --max-new-tokens "$maxnew" \
		testdata/images/shapes.png >"$tmp/$dev.json"
	kill -TERM "$pid"
	if ! wait "$pid"; then
		echo "serve-check: pancap serve --device $dev did not exit cleanly on SIGTERM:" >&2
		cat "$tmp/$dev.log" >&2
		exit 1
	fi
	pid=
done
python3 - "$golden" "$tmp/cpu.json" "$tmp/cuda.json" "$tmp/cuda-stats.json" <<'PY'
import json, sys
golden, cpu, gpu = (json.load(open(p)) for p in sys.argv[1:4])
want = [s["text"] for s in golden["stages"]]
ok = True
for name, got in (("cpu", cpu), ("cuda", gpu)):
    texts = [s["text"] for s in got["stages"]]
    if texts != want or got["caption"] != golden["caption"]:
        print(f"serve-check: {name} stages {texts!r}\n caption {got['caption']!r}\n want {want!r}\n caption {golden['caption']!r}", file=sys.stderr)
        ok = False
stats = json.load(open(sys.argv[4]))
print(f"serve-check: pancap serve --device cuda (emulated) captioned {golden['image']} as the reference and the CPU did; driver calls: {stats}")
sys.exit(0 if ok else 1)
PY
