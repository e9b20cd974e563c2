#!/usr/bin/env bash
# make bench-spec: speculative decoding on and off, side by side in one run.
# Two servers of the same model, --speculative=false (off) and
# --speculative=true (on), are up at once; `pancap bench` runs each point
# against off, then on, then again in the other order (SPEC_REPEAT rounds),
# so that the host's changing speed falls on both alike. Points:
#   synth (the embedded model) on the 64 held-out scenes of testdata/scenes
#   and testdata/scenes-extra, natural outputs (EOS on): concurrency 1 and 16;
#   the bench preset (random bf16 weights, --output-lens SPEC_BENCH_LENS,
#   EOS ignored): concurrency 1 (3 chains) and 16.
# Results: benchmarks/results/spec-*.json (each with its server's
# pancap_spec_decode_* counters) and spec.md, the ratios on/off.
#
# Environment: SPEC_REPEAT (rounds, default 2), SPEC_BENCH_LENS (default
# 32,32,16,64), SPEC_BENCH (0 skips the bench preset, whose points take
# minutes on a small host). About 12 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin/pancap
out=benchmarks/results
repeat=${SPEC_REPEAT:-2}
bench_lens=${SPEC_BENCH_LENS:-32,32,16,64}
mkdir -p "$out"
images=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$images"
}
trap cleanup EXIT
cp testdata/scenes/images/*.png testdata/scenes-extra/images/*.png "$images"

serve() { # name port speculative [serve flags...]
	local name=$1 port=$2 spec=$3
	shift 3
	"$bin" serve "$@" --speculative="$spec" --addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$((port + 1))" \
		--log-level warn 2>"$out/spec-$name.server.log" &
	pids+=($!)
	"$bin" health --addr "127.0.0.1:$port" --wait 120s >/dev/null
}

point() { # name port round [bench flags...]
	local name=$1 port=$2 round=$3
	shift 3
	"$bin" bench --addr "127.0.0.1:$port" --label "$name" --metrics-url "http://127.0.0.1:$((port + 1))/metrics" \
		--warmup 0 --seed 1 "$@" --out "$out/spec-$name-$round.json" >"$out/spec-$name-$round.txt"
}

ab() { # point-name rounds [bench flags...]: off/on, then on/off, ...
	local name=$1 rounds=$2
	shift 2
	for r in $(seq 1 "$rounds"); do
		if ((r % 2)); then
			point "$name-off" 50181 "$r" "$@"
			point "$name-on" 50183 "$r" "$@"
		else
			point "$name-on" 50183 "$r" "$@"
			point "$name-off" 50181 "$r" "$@"
		fi
	done
}

serve synth-off 50181 false
serve synth-on 50183 true
ab synth-c1 "$repeat" --images "$images" --concurrency 1 --num-requests 64 --output-lens 512 --ignore-eos=false
ab synth-c16 "$repeat" --images "$images" --concurrency 16 --num-requests 64 --output-lens 512 --ignore-eos=false
cleanup
pids=()

if [ "${SPEC_BENCH:-1}" != 0 ]; then
	model_root=.cache/models/bench
	[ -d "$model_root/llava" ] || "$bin" model generate --preset bench --out "$model_root"
	serve bench-off 50181 false --model "$model_root/llava" --kv-cache-dtype float16
	serve bench-on 50183 true --model "$model_root/llava" --kv-cache-dtype float16
	ab bench-c1 "$repeat" --synthetic 1000x667 --concurrency 1 --num-requests 3 --output-lens "$bench_lens"
	ab bench-c16 "$repeat" --synthetic 1000x667 --concurrency 16 --num-requests 16 --output-lens "$bench_lens"
fi

/usr/bin/python3 tools/spec-report.py "$out" | tee "$out/spec.md"
