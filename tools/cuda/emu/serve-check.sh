#!/usr/bin/env bash
# serve-check.sh PANCAP LIBDIR — `pancap serve --device cuda` end to end on
# the emulated CUDA driver (LIBDIR, from driver/build.sh): serves the tiny
# golden checkpoint on the CPU and on "CUDA", captions testdata/images/
# shapes.png through each with `pancap caption --json`, and fails unless the
# two captions and every stage's text equal each other and the authors'
# reference run (testdata/golden/chain-tiny-shapes.json), and unless a
# seeded sampled caption (temperature, top-k, top-p) is the same on both;
# serves it on "CUDA" with --kv-cache-dtype float16 too, which must caption all four
# stages (rounded keys and values may change tokens). Then two faults:
# a device too small for the model (PANCAP_CUEMU_MEM) must end serve with a
# clear out-of-memory error, not a panic, and one too small for the KV
# pool's reserve with a clear KV-cache error; a sticky error mid-chain
# (PANCAP_CUEMU_FAIL=sticky:N) must fail the call in flight with UNAVAILABLE
# naming the failed accelerator and the lost device, and end serve with
# status 3. PANCAP is a build with -tags cuda. Run by tools/cuda/check.sh.
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

export LD_LIBRARY_PATH=$lib PANCAP_CUBLAS=$lib/libcublas.so.12
golden=testdata/golden/chain-tiny-shapes.json
maxnew=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_new_tokens"])' "$golden")
port=

# serve DEV NAME [VAR=VALUE…]: start pancap serve on the tiny checkpoint in
# the background (pid, port; stderr in $tmp/NAME.log), with the flags of
# the array extra; killed after limit seconds when limit is set (a server
# that should fail to load must not hang the check by serving).
extra=()
limit=
serve() {
	local dev=$1 name=$2
	shift 2
	port=$((20000 + RANDOM % 20000))
	env "$@" ${limit:+timeout "$limit"} "$bin" serve --addr "127.0.0.1:$port" --model testdata/checkpoints/tiny/llava --device "$dev" \
		--log-level error "${extra[@]}" 2>"$tmp/$name.log" &
	pid=$!
}

# ended: wait for the server to exit; its status in rc.
rc=
ended() {
	rc=0
	wait "$pid" || rc=$?
	pid=
}

caption() {
	"$bin" caption --addr "127.0.0.1:$port" --json --max-new-tokens "$maxnew" "$@" testdata/images/shapes.png
}
# sampled: a seeded caption at temperature, top-k and top-p, picked on the
# device on "CUDA" (the pick kernel) and by sample.Picker on the CPU.
sampled=(--temperature 1.5 --top-k 40 --top-p 0.95 --seed 7)

for name in cpu cuda cuda-f16; do
	dev=${name%-f16}
	extra=()
	[[ $name == *-f16 ]] && extra=(--kv-cache-dtype float16)
	serve "$dev" "$name" PANCAP_CUEMU_STATS="$tmp/$name-stats.json"
	if ! "$bin" health --addr "127.0.0.1:$port" --wait 120s >/dev/null; then
		echo "serve-check: pancap serve --device $dev ${extra[*]} never became SERVING:" >&2
		cat "$tmp/$name.log" >&2
		exit 1
	fi
	caption >"$tmp/$name.json"
	[[ $name == *-f16 ]] || caption "${sampled[@]}" >"$tmp/$name-sampled.json"
	kill -TERM "$pid"
	ended
	if [[ $rc != 0 ]]; then
		echo "serve-check: pancap serve --device $dev ${extra[*]} did not exit cleanly on SIGTERM:" >&2
		cat "$tmp/$name.log" >&2
		exit 1
	fi
done
extra=()

# A device too small for the weights: a clear error, exit status 1.
limit=120
serve cuda oom PANCAP_CUEMU_MEM=400000
ended
if [[ $rc != 1 ]] || ! grep -q 'cuMemAlloc.*OutOfMemory' "$tmp/oom.log" || grep -q '^panic:\|^goroutine ' "$tmp/oom.log"; then
	echo "serve-check: out of device memory at load: exit status $rc (want 1), log:" >&2
	cat "$tmp/oom.log" >&2
	exit 1
fi

# A device with the weights' room but not the KV pool's reserve (the
# default, 2 GiB): a clear KV-cache error naming the sizes, exit status 1.
serve cuda reserve PANCAP_CUEMU_MEM=$((1 << 30))
ended
limit=
if [[ $rc != 1 ]] || ! grep -q 'KV cache does not fit: the device has .* free after the weights, no more than the 2.0 GiB reserve' "$tmp/reserve.log" ||
	grep -q '^panic:\|^goroutine ' "$tmp/reserve.log"; then
	echo "serve-check: a device under the KV pool's reserve: exit status $rc (want 1), log:" >&2
	cat "$tmp/reserve.log" >&2
	exit 1
fi

# A sticky error in the first chain: the call fails with UNAVAILABLE naming
# the lost device, the server exits with status 3. The call streams: a
# unary call failing with UNAVAILABLE before any answer would be retried
# (client), and the retries would meet a server that has gone.
serve cuda sticky PANCAP_CUEMU_FAIL=sticky:600
"$bin" health --addr "127.0.0.1:$port" --wait 120s >/dev/null
if "$bin" caption --addr "127.0.0.1:$port" --max-new-tokens "$maxnew" testdata/images/shapes.png >"$tmp/sticky.txt" 2>"$tmp/sticky-call.log" ||
	! grep -q 'UNAVAILABLE: not serving: the accelerator failed: .*device lost.*this server is restarting' "$tmp/sticky-call.log"; then
	echo "serve-check: a call across a sticky error did not fail with UNAVAILABLE naming the lost device:" >&2
	cat "$tmp/sticky-call.log" >&2
	exit 1
fi
ended
if [[ $rc != 3 ]]; then
	echo "serve-check: after a sticky error pancap serve exited with status $rc, want 3; log:" >&2
	cat "$tmp/sticky.log" >&2
	exit 1
fi
echo "serve-check: out of device memory at load: exit 1 naming cuMemAlloc; under the KV reserve: exit 1 naming it; sticky error: the call failed with UNAVAILABLE naming the lost device, exit 3"

python3 - "$golden" "$tmp/cpu.json" "$tmp/cuda.json" "$tmp/cuda-stats.json" "$tmp/cuda-f16.json" \
	"$tmp/cpu-sampled.json" "$tmp/cuda-sampled.json" <<'PY'
import json, sys
golden, cpu, gpu = (json.load(open(p)) for p in sys.argv[1:4])
f16, cpu_s, gpu_s = (json.load(open(p)) for p in sys.argv[5:8])
want = [s["text"] for s in golden["stages"]]
ok = True
for name, got in (("cpu", cpu), ("cuda", gpu)):
    texts = [s["text"] for s in got["stages"]]
    if texts != want or got["caption"] != golden["caption"]:
        print(f"serve-check: {name} stages {texts!r}\n caption {got['caption']!r}\n want {want!r}\n caption {golden['caption']!r}", file=sys.stderr)
        ok = False
f16_texts = [s["text"] for s in f16["stages"]]
if len(f16_texts) != 4 or not all(f16_texts) or not f16["caption"]:
    print(f"serve-check: cuda --kv-cache-dtype float16: stages {f16_texts!r} caption {f16['caption']!r}", file=sys.stderr)
    ok = False
else:
    print(f"serve-check: cuda --kv-cache-dtype float16 captioned all four stages ({'the reference' if f16_texts == want else 'not the reference'}'s texts)")
# Seeded sampling agrees token for token unless a draw falls within ~1e-6 of
# a boundary (docs/cuda.md, "pick"); this seed has no such draw.
sampled = [[s["text"] for s in r["stages"]] for r in (cpu_s, gpu_s)]
if sampled[0] != sampled[1] or len(sampled[0]) != 4 or not all(sampled[0]):
    print(f"serve-check: seeded sampling: cpu {sampled[0]!r}\n cuda {sampled[1]!r}", file=sys.stderr)
    ok = False
else:
    print(f"serve-check: seeded sampling (temperature 1.5, top-k 40, top-p 0.95) gave the same four stages on cuda as on the cpu ({'equal to' if sampled[0] == want else 'unlike'} the greedy texts)")
stats = json.load(open(sys.argv[4]))
print(f"serve-check: pancap serve --device cuda (emulated) captioned {golden['image']} as the reference and the CPU did; driver calls: {stats}")
sys.exit(0 if ok else 1)
PY
