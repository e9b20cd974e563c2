#!/usr/bin/env bash
# `make bench-openai`: drive one `pancap serve` with AIPerf over the OpenAI
# HTTP API and with `pancap bench` over gRPC on the same workload (N distinct
# synthetic images, stage 1 only, exactly OUTPUT_LEN tokens each, closed loop
# at CONCURRENCY), then compare their TTFT and ITL (compare.py).
#
# Environment: PANCAP (binary), AIPERF (aiperf executable), PYTHON (one with
# Pillow: AIPerf's venv), OUT (results folder), N, CONCURRENCY, OUTPUT_LEN,
# ROUNDS (turns of each tool, default 6), SERVER_CPUS and CLIENT_CPUS (taskset
# lists; default: all CPUs), SERVE_ARGS (extra `pancap serve`
# flags, e.g. --model DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PANCAP="${PANCAP:-$root/bin/pancap}"
AIPERF="${AIPERF:-$root/.cache/venv-aiperf/bin/aiperf}"
PYTHON="${PYTHON:-$root/.cache/venv-aiperf/bin/python}"
OUT="${OUT:-$root/benchmarks/results/openai-$(date -u +%Y%m%dT%H%M%SZ)}"
N="${N:-32}"
CONCURRENCY="${CONCURRENCY:-4}"
OUTPUT_LEN="${OUTPUT_LEN:-64}"
TOKENIZER="${TOKENIZER:-$root/model/embedded/synth/llava}"

# SERVER_CPUS and CLIENT_CPUS put the server and the load generators on
# disjoint CPUs (taskset lists), so that neither tool's own CPU use (AIPerf's
# Python processes, above all) slows the server it measures; worth it only
# with CPUs to spare. Default: every CPU for everyone.
all_cpus="0-$(($(nproc) - 1))"
SERVER_CPUS="${SERVER_CPUS:-$all_cpus}"
CLIENT_CPUS="${CLIENT_CPUS:-$all_cpus}"

mkdir -p "$OUT"
port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc="127.0.0.1:$(port)"
http="127.0.0.1:$(port)"
metrics="127.0.0.1:$(port)"

"$PYTHON" "$here/make_workload.py" "$OUT/workload" "$N"

# shellcheck disable=SC2086
taskset -c "$SERVER_CPUS" "$PANCAP" serve --addr "$grpc" --http-addr "$http" --metrics-addr "$metrics" ${SERVE_ARGS:-} > "$OUT/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null || true' EXIT
"$PANCAP" health --addr "$grpc" --wait 120s

# Both tools: every request a distinct image (no image-cache hits), stage 1,
# exactly OUTPUT_LEN tokens, CONCURRENCY in flight, a warm-up first. The
# machine's load drifts, so the tools take turns ROUNDS times (A B B A …) and
# compare.py pools each tool's rounds. AIPerf runs one worker and one record
# processor and scrapes no server metrics: its Python processes share the
# cores with the server. The server's own histograms are scraped around each
# run, so compare.py can tell the server's latencies from the clients', and
# each tool's CPU time (user + system, its child processes included) is kept.
scrape() {
	"$PYTHON" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
		"http://$metrics/metrics" > "$OUT/metrics-$1.txt"
}
run_bench() {
	scrape "bench-$1-before"
	/usr/bin/time -f "%U %S" -o "$OUT/cpu-bench-$1.txt" taskset -c "$CLIENT_CPUS" "$PANCAP" bench --addr "$grpc" --images "$OUT/workload/images" --stages 1 --output-lens "$OUTPUT_LEN" \
		--ignore-eos --concurrency "$CONCURRENCY" --num-requests "$N" --warmup "$CONCURRENCY" \
		--label "grpc-$1" --out "$OUT/pancap-bench-$1.json" > "$OUT/pancap-bench-$1.txt"
	scrape "bench-$1-after"
}
run_aiperf() {
	scrape "aiperf-$1-before"
	/usr/bin/time -f "%U %S" -o "$OUT/cpu-aiperf-$1.txt" taskset -c "$CLIENT_CPUS" "$AIPERF" profile --model pancapchain --url "http://$http" --endpoint-type chat --streaming \
		--input-file "$OUT/workload/aiperf.jsonl" --custom-dataset-type single_turn \
		--dataset-sampling-strategy sequential --concurrency "$CONCURRENCY" --request-count "$N" \
		--warmup-request-count "$CONCURRENCY" --tokenizer "$TOKENIZER" --use-server-token-count \
		--workers-max 1 --record-processors 1 --no-server-metrics \
		--extra-inputs "{\"ignore_eos\": true, \"max_completion_tokens\": $OUTPUT_LEN, \"pancap\": {\"stages\": 1}}" \
		--artifact-dir "$OUT/aiperf-$1" --ui-type none > "$OUT/aiperf-$1.txt" 2>&1 || { tail -40 "$OUT/aiperf-$1.txt"; exit 1; }
	scrape "aiperf-$1-after"
}
for ((r = 1; r <= ${ROUNDS:-6}; r++)); do
	if ((r % 2)); then run_bench "$r"; run_aiperf "$r"; else run_aiperf "$r"; run_bench "$r"; fi
done

"$PYTHON" "$here/compare.py" "$OUT" | tee "$OUT/compare.md"
