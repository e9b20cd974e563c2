"""Compare AIPerf's TTFT and ITL with `pancap bench`'s on the same workload.

Usage: compare.py OUT_DIR [TOLERANCE]
OUT_DIR holds bench.sh's rounds: pancap-bench-R.json and aiperf-R/. Each
tool's rounds are pooled (means weighted by requests). Prints a markdown
table and exits 1 when a pooled mean differs by more than TOLERANCE (default
0.10) of pancap bench's.
"""

from __future__ import annotations

import json
import pathlib
import sys


def pooled(stats: list[tuple[float, float]]) -> float:
    """The mean of (count, mean) pairs."""
    n = sum(c for c, _ in stats)
    return sum(c * m for c, m in stats) / n


def server_means(out: pathlib.Path, tool: str, rounds: int) -> tuple[float, float]:
    """The server's own mean stage-1 TTFT and ITL in ms over a tool's runs,
    from the histograms scraped before and after each (warm-ups included)."""
    def read(path: pathlib.Path) -> dict[str, float]:
        vals = {}
        for line in path.read_text().splitlines():
            if 'stage="localize"' in line and not line.startswith("#") and "_bucket" not in line:
                name, value = line.rsplit(" ", 1)
                vals[name.split("{")[0]] = float(value)
        return vals

    sums = {}
    for r in range(1, rounds + 1):
        before = read(out / f"metrics-{tool}-{r}-before.txt")
        after = read(out / f"metrics-{tool}-{r}-after.txt")
        for k in after:
            sums[k] = sums.get(k, 0.0) + after[k] - before.get(k, 0.0)

    def mean(h: str) -> float:
        return 1000 * sums[h + "_sum"] / sums[h + "_count"]
    return mean("pancap_time_to_first_token_seconds"), mean("pancap_inter_token_latency_seconds")


def main() -> int:
    out = pathlib.Path(sys.argv[1])
    tol = float(sys.argv[2]) if len(sys.argv) > 2 else 0.10
    benches = [json.loads(p.read_text())["runs"][0] for p in sorted(out.glob("pancap-bench-*.json"))]
    aiperfs = [json.loads(p.read_text()) for p in sorted(out.glob("aiperf-*/profile_export_aiperf.json"))]
    if not benches or len(benches) != len(aiperfs):
        print(f"want as many pancap bench results as AIPerf ones in {out}: {len(benches)} and {len(aiperfs)}")
        return 1
    print(f"{len(benches)} rounds of {benches[0]['completed']} requests at concurrency {benches[0]['concurrency']}\n")
    print("| metric | round | pancap bench mean (p50) ms | AIPerf mean (p50) ms | AIPerf / bench |")
    print("|---|---|---|---|---|")
    ok = True
    # AIPerf's ITL is per request, (e2e - TTFT) / (tokens - 1): vLLM's TPOT,
    # which pancap bench reports as tpot_ms (its itl_ms pools the gaps
    # between chunks, many of them 0 where one step's tokens arrive together).
    for name, bkey, akey in (("TTFT", "ttft_ms", "time_to_first_token"), ("ITL (bench: TPOT)", "tpot_ms", "inter_token_latency")):
        for r, (b, a) in enumerate(zip(benches, aiperfs), 1):
            bs, as_ = b[bkey], a[akey]
            print(f"| {name} | {r} | {bs['mean']:.2f} ({bs['median']:.2f}) | {as_['avg']:.2f} ({as_['p50']:.2f}) "
                  f"| {as_['avg'] / bs['mean']:.3f} |")
        bm = pooled([(b[bkey]["count"], b[bkey]["mean"]) for b in benches])
        am = pooled([(a["request_count"]["avg"], a[akey]["avg"]) for a in aiperfs])
        ok &= abs(am / bm - 1) <= tol
        print(f"| **{name}** | pooled | **{bm:.2f}** | **{am:.2f}** | **{am / bm:.3f}** |")
    itl = pooled([(b["itl_ms"]["count"], b["itl_ms"]["mean"]) for b in benches])
    print(f"\npancap bench's ITL over all chunk gaps: {itl:.2f} ms\n")
    print("The server's own histograms over the same runs (warm-ups included):\n")
    print("| metric | during pancap bench ms | during AIPerf ms | ratio |")
    print("|---|---|---|---|")
    sb, sa = server_means(out, "bench", len(benches)), server_means(out, "aiperf", len(aiperfs))
    for name, b, a in zip(("server TTFT", "server ITL"), sb, sa):
        print(f"| {name} | {b:.2f} | {a:.2f} | {a / b:.3f} |")
    cpu = {tool: sum(sum(map(float, p.read_text().split()[-2:])) for p in out.glob(f"cpu-{tool}-*.txt"))
           for tool in ("bench", "aiperf")}
    if cpu["bench"] > 0:
        print(f"| load generator CPU s (user + sys) | {cpu['bench']:.1f} | {cpu['aiperf']:.1f} | "
              f"{cpu['aiperf'] / cpu['bench']:.1f} |")
    if not ok:
        print(f"\na pooled mean differs by more than {tol:.0%}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
