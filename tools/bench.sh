#!/usr/bin/env bash
# make bench: serve the `bench` preset (DESIGN.md §7, random bf16 weights) in
# chain-reuse mode and in baseline mode (--chain-reuse=false, every stage an
# independent request as the authors' script runs it), run the same short
# concurrency sweep against each with `pancap bench`, and write both results
# and their comparison into benchmarks/results/.
#
# Environment: BENCH_CONCURRENCY (sweep, default 1,8),
# BENCH_BASELINE_CONCURRENCY (the baseline's sweep, default 1,8), BENCH_WAVES
# (requests per point = waves × concurrency, default 1), BENCH_OUTPUT_LENS (tokens per stage,
# default the SA-Pancap-like 150,200,60,450), BENCH_MAX_DURATION (per mode,
# default 5m), BENCH_KV_CACHE_DTYPE (both modes' --kv-cache-dtype, default
# float16).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin/pancap
model_root=.cache/models/bench
out=benchmarks/results
conc=${BENCH_CONCURRENCY:-1,8}
base_conc=${BENCH_BASELINE_CONCURRENCY:-1,8}
waves=${BENCH_WAVES:-1}
lens=${BENCH_OUTPUT_LENS:-150,200,60,450}
max_duration=${BENCH_MAX_DURATION:-5m}
kv_dtype=${BENCH_KV_CACHE_DTYPE:-float16}
mkdir -p "$out"

[ -d "$model_root/llava" ] || "$bin" model generate --preset bench --out "$model_root"

server_pid=""
stop_server() {
	if [ -n "$server_pid" ]; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}
trap stop_server EXIT

run_mode() { # name reuse port concurrencies
	local name=$1 reuse=$2 port=$3 sweep=$4
	"$bin" serve --model "$model_root/llava" --chain-reuse="$reuse" --kv-cache-dtype "$kv_dtype" \
		--addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$((port + 1))" \
		--log-level warn 2>"$out/$name.server.log" &
	server_pid=$!
	"$bin" health --addr "127.0.0.1:$port" --wait 120s >/dev/null
	"$bin" bench --addr "127.0.0.1:$port" --label "$name" \
		--metrics-url "http://127.0.0.1:$((port + 1))/metrics" \
		--sweep-concurrency "$sweep" --requests-per-concurrency "$waves" --warmup 0 \
		--output-lens "$lens" --ignore-eos --synthetic 1000x667 --seed 1 \
		--max-duration "$max_duration" \
		--out "$out/$name.json" --plots "$out/plots-$name"
	stop_server
}

run_mode reuse true 50161 "$conc"
run_mode baseline false 50171 "$base_conc"
"$bin" bench compare "$out/reuse.json" "$out/baseline.json" --out "$out/compare.md" --plots "$out/plots"
cat "$out/compare.md"
