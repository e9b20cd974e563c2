#!/usr/bin/env bash
# fuzz-smoke.sh runs every Go fuzz target of the module for a few seconds
# each (FUZZTIME, default 3s), one target at a time, as CI's smoke check.
# Targets are found by grepping the test files, so a new FuzzX is picked up
# without editing this script. A crasher is written by `go test` under the
# package's testdata/fuzz/FuzzX/ and then runs as a regression test in every
# plain `go test`: commit it with the fix.
#
# Usage: tools/fuzz-smoke.sh [package-dir-regexp]   (e.g. 'server|chain')
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-3s}
# Go minimises every new interesting input for up to -fuzzminimizetime
# (60s by default), reporting 0 execs/s meanwhile: a few seconds of smoke
# would be spent minimising. 10x keeps minimisation to ten runs.
minimize=${FUZZMINIMIZETIME:-10x}
filter=${1:-.}
go=${GO:-go}

# rate prints the executions per second a fuzz log's last status line says.
rate() {
	grep -o 'elapsed: [0-9]*s, execs: [0-9]*' "$1" | tail -1 |
		awk '{ s = $2 + 0; printf "%d execs in %ss: %d/s", $4, s, (s > 0 ? $4 / s : $4) }'
}

# Test files with fuzz targets, skipping vendored toolchains and files behind
# build tags that plain `go test` does not build (e.g. cuda).
mapfile -t files < <(grep -rl --include='*_test.go' '^func Fuzz' . |
	grep -v -e '^./tools/cuda-toolkit/' -e '^./shared/' | sort)

failed=()
rates=()
ran=0
for f in "${files[@]}"; do
	if grep -q '^//go:build' "$f"; then
		echo "skip $f (build tags)"
		continue
	fi
	dir=$(dirname "$f")
	[[ $dir =~ $filter ]] || continue
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
		echo "=== $dir $name ($fuzztime)"
		ran=$((ran + 1))
		log=$(mktemp)
		if ! "$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$dir" 2>&1 | tee "$log"; then
			# Go's fuzz coordinator sometimes reports its own time limit as a
			# failure ("context deadline exceeded", no failing input written)
			# when a worker is inside a long input as -fuzztime runs out.
			# That is no finding: run the target once more before failing.
			if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
				echo "--- $dir $name: the fuzz engine's own deadline, not a finding; once more"
				"$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$dir" 2>&1 | tee "$log" || failed+=("$dir $name")
			else
				failed+=("$dir $name")
			fi
		fi
		rates+=("$dir $name: $(rate "$log")")
		rm -f "$log"
	done
done

echo "fuzz-smoke: $ran targets, ${#failed[@]} failed"
if ((${#rates[@]})); then
	printf '  %s\n' "${rates[@]}"
fi
if ((${#failed[@]})); then
	printf '  FAIL %s\n' "${failed[@]}"
	exit 1
fi
