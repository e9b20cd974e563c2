#!/usr/bin/env bash
# run.sh [--dry-run] — one GPU session of the CUDA path, in at most 8
# minutes, on a machine with one NVIDIA GPU and no Go (the bundle of
# `make gpu-bundle`; source: tools/cuda/bundle-run.sh). Each step has a time
# budget (seconds, below) and a log in $OUT (default ./out):
#
#   tests       the CUDA backend's tests: conformance, cuBLAS, attention,
#               golden forwards (tests/run.sh)
#   checkpoint  a random-weight checkpoint of the 13b preset in /dev/shm
#               (pancap model generate)
#   load        pancap serve --device cuda --kv-cache-dtype float16 on it,
#               until SERVING (the 16-bit KV cache: half the bytes a decode
#               step reads, the tensor-core attention kernels)
#   bench       pancap bench at concurrency 1, 8 and 32, output lengths
#               150/200/60/450 per stage (SA-Pancap-like)
#   hf          the authors' procedure in transformers on the same
#               checkpoint and card (hf_procedure.py: batch 1, four generate
#               calls per image, fp16, the bench's output lengths) and the
#               images/s ratio of every bench run to it; skipped when
#               $PYTHON (default python3) lacks torch, transformers or
#               safetensors
#   ops         the per-op benchmarks (tests/run.sh -test.bench)
#
# It writes $OUT/summary.json and $OUT/summary.md: card, driver, every
# step's status and time, the bench result and the op timings. Exit status
# 0 when every step passed.
#
# --dry-run: the same steps on the tiny preset with small loads, for CI
# against the emulated driver (tools/cuda/check.sh sets LD_LIBRARY_PATH).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dry=0
case ${1:-} in
--dry-run) dry=1 ;;
"") ;;
*)
	echo "usage: run.sh [--dry-run]" >&2
	exit 2
	;;
esac
OUT=${OUT:-$here/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
pancap=$here/bin/pancap
python=${PYTHON:-python3}
port=$((20000 + RANDOM % 20000))
addr=127.0.0.1:$port

if ((dry)); then
	preset=tiny ckpt=$(mktemp -d "${TMPDIR:-/tmp}/pancap-dry.XXXXXX")
	tests=(-test.short -test.run 'Conformance|EmuAllocFailure|EmuStickyError')
	bench=(--sweep-concurrency 1,2 --output-lens 4 --requests-per-concurrency 1)
	ops=(-test.run '^$' -test.bench 'MatMul/cublas/m=1/n=5120/' -test.benchtime 1x)
	hf=(--device cpu --dtype float32 --output-lens 4 --images 1)
	b_tests=120 b_ckpt=30 b_load=60 b_bench=60 b_hf=60 b_ops=60
else
	preset=13b ckpt=/dev/shm/pancap-13b
	tests=()
	bench=(--sweep-concurrency 1,8,32 --output-lens 150,200,60,450 --requests-per-concurrency 1 --warmup 1)
	ops=(-test.run '^$' -test.bench . -test.benchtime 20x)
	hf=(--device cuda --dtype float16 --output-lens 150,200,60,450 --images 3 --budget 45)
	b_tests=50 b_ckpt=70 b_load=75 b_bench=140 b_hf=95 b_ops=45
fi

: >"$OUT/steps.tsv"
failed=0
# step NAME BUDGET CMD…: run CMD under the budget, log in $OUT/NAME.log.
step() {
	local name=$1 budget=$2
	shift 2
	local t0 rc=0 status=ok
	t0=$(date +%s%N)
	timeout --kill-after=10 "$budget" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
	local ms=$((($(date +%s%N) - t0) / 1000000))
	if ((rc == 124 || rc == 137)); then
		status="timeout"
	elif ((rc != 0)); then
		status="fail($rc)"
	fi
	[[ $status == ok ]] || failed=1
	printf '%s\t%s\t%d.%03d\t%d\n' "$name" "$status" $((ms / 1000)) $((ms % 1000)) "$budget" >>"$OUT/steps.tsv"
	echo "run.sh: $name: $status in $((ms / 1000)).$((ms % 1000 / 100)) s (budget $budget s)" >&2
	[[ $status == ok ]]
}

if command -v nvidia-smi >/dev/null; then
	gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
elif ((dry)); then
	gpu="emulated (tools/cuda/emu/driver), emulated, 4 GiB"
else
	gpu="unknown (no nvidia-smi), unknown, unknown"
fi

step tests "$b_tests" "$here/tests/run.sh" "${tests[@]}"
if step checkpoint "$b_ckpt" "$pancap" model generate --preset "$preset" --out "$ckpt"; then
	timeout $((b_load + b_bench + 30)) "$pancap" serve --device cuda --model "$ckpt/llava" --addr "$addr" \
		--kv-cache-dtype float16 --log-level warn 2>"$OUT/serve.log" &
	server=$!
	if step load "$b_load" "$pancap" health --addr "$addr" --wait "${b_load}s"; then
		step bench "$b_bench" "$pancap" bench --addr "$addr" "${bench[@]}" --max-duration "$((b_bench - 10))s" \
			--out "$OUT/bench.json"
	fi
	kill -TERM "$server" 2>/dev/null
	wait "$server" 2>/dev/null # the server's KV pool leaves the device before hf starts
	if "$python" -c 'import torch, transformers, safetensors' 2>/dev/null; then
		"$here/bin/hfprompts" --model "$ckpt/llava" >"$OUT/hf-prompts.json" &&
			step hf "$b_hf" "$python" "$here/hf_procedure.py" --model "$ckpt/llava" --prompts "$OUT/hf-prompts.json" \
				--bench "$OUT/bench.json" --out "$OUT/hf.json" "${hf[@]}"
	else
		printf 'hf\tskipped: %s lacks torch, transformers or safetensors\t0\t0\n' "$python" >>"$OUT/steps.tsv"
	fi
fi
rm -rf "$ckpt"
step ops "$b_ops" "$here/tests/run.sh" "${ops[@]}"

# The summary, without Python: JSON strings escaped by sed.
js() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g; s/\t/ /g')"; }
IFS=, read -r card driver memory <<<"$gpu"
{
	printf '{"card": %s, "driver": %s, "memory": %s, "dry_run": %s, "commit": %s,\n' \
		"$(js "${card# }")" "$(js "${driver# }")" "$(js "${memory# }")" "$([[ $dry == 1 ]] && echo true || echo false)" \
		"$(js "$(cat "$here/COMMIT" 2>/dev/null)")"
	printf ' "steps": ['
	sep=
	while IFS=$'\t' read -r name status secs budget; do
		printf '%s\n  {"name": %s, "status": %s, "seconds": %s, "budget_seconds": %s}' "$sep" "$(js "$name")" "$(js "$status")" "$secs" "$budget"
		sep=,
	done <"$OUT/steps.tsv"
	printf '],\n "tests": {"pass": %d, "fail": %d, "skip": %d},\n' \
		"$(grep -c -- '--- PASS' "$OUT/tests.log" 2>/dev/null)" "$(grep -c -- '--- FAIL' "$OUT/tests.log" 2>/dev/null)" \
		"$(grep -c -- '--- SKIP' "$OUT/tests.log" 2>/dev/null)"
	printf ' "ops": ['
	sep=
	while read -r line; do
		printf '%s\n  %s' "$sep" "$(js "$line")"
		sep=,
	done < <(grep '^Benchmark.*ns/op' "$OUT/ops.log" 2>/dev/null)
	printf '],\n "bench": %s,\n' "$(cat "$OUT/bench.json" 2>/dev/null || echo null)"
	printf ' "hf": %s}\n' "$(cat "$OUT/hf.json" 2>/dev/null || echo null)"
} >"$OUT/summary.json"
{
	echo "# pancap GPU run ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "Card: ${card# }; driver: ${driver# }; memory: ${memory# }; commit: $(cat "$here/COMMIT" 2>/dev/null)$( ((dry)) && echo '; DRY RUN (tiny preset)')"
	echo
	echo "| step | status | seconds | budget |"
	echo "|---|---|---:|---:|"
	while IFS=$'\t' read -r name status secs budget; do
		echo "| $name | $status | $secs | $budget |"
	done <"$OUT/steps.tsv"
	echo
	echo "## Bench ($preset preset, --device cuda --kv-cache-dtype float16)"
	echo
	echo '```'
	cat "$OUT/bench.log" 2>/dev/null
	echo '```'
	echo
	echo "## The authors' procedure (transformers, same checkpoint and card)"
	echo
	echo '```'
	cat "$OUT/hf.json" 2>/dev/null || echo "not run (see the hf step)"
	echo '```'
	echo
	echo "## Per-op benchmarks"
	echo
	echo '```'
	grep '^Benchmark.*ns/op' "$OUT/ops.log" 2>/dev/null
	echo '```'
} >"$OUT/summary.md"
echo "run.sh: $OUT/summary.json and $OUT/summary.md" >&2
exit $failed
