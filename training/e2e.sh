#!/usr/bin/env bash
# End-to-end check of an export: the Go engine and the HF reference give the
# same tokens (parity.py), then `pancap serve` on the export is scored on the
# test split with `pancap eval` (report in RUN/eval.json and on stdout).
#
# Usage: training/e2e.sh RUN DATA [EVAL_LIMIT] [PARITY_IMAGES]
set -euo pipefail
run=$1 data=$2 limit=${3:-0} images=${4:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
bin=$root/bin/pancap
go build -o "$bin" "$root/cmd/pancap"
"$py" "$root/training/parity.py" --export "$run/export" --data "$data" --images "$images" --pancap "$bin"
port=$(( 40000 + RANDOM % 20000 ))
"$bin" serve --model "$run/export/llava" --addr "127.0.0.1:$port" --log-level warn &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.2
done
"$bin" eval --addr "127.0.0.1:$port" --data "$data/test" --limit "$limit" --json > "$run/eval.json"
"$bin" eval --addr "127.0.0.1:$port" --data "$data/test" --limit "$limit"
