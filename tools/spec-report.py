#!/usr/bin/env python3
"""The table of make bench-spec: speculative decoding on over off, per point.

Reads DIR/spec-POINT-{off,on}-ROUND.json (pancap bench results, one point
each) and prints markdown: per point the mean chain latency, the images per
second and each stage's mean server-side time, off and on (means over the
rounds) with the ratio on/off; then, per point, each stage's verification
steps, draft tokens, accepted tokens, acceptance rate and tokens per
verification step, from the on server's pancap_spec_decode_* counters.

Usage: tools/spec-report.py benchmarks/results
"""

import glob
import json
import os
import re
import sys
from collections import defaultdict

SPEC = "pancap_spec_decode_"
STAGES = ["localize", "tag", "discover", "caption"]


def load(d):
    """Returns {point: {"off"|"on": [run, ...]}} of the spec-*.json files in d."""
    runs = defaultdict(lambda: defaultdict(list))
    for f in sorted(glob.glob(os.path.join(d, "spec-*.json"))):
        m = re.fullmatch(r"spec-(.+)-(off|on)-(\d+)\.json", os.path.basename(f))
        if not m:
            continue
        with open(f) as fh:
            res = json.load(fh)
        for run in res["runs"]:
            runs[m.group(1)][m.group(2)].append(run)
    return runs


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def stage_ms(run, stage):
    for s in run.get("stages") or []:
        if s["stage"] == stage:
            return s["server_total_ms"]["mean"]
    return float("nan")


def ratio(on, off):
    return "%.3f" % (on / off) if off else "-"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = load(sys.argv[1])
    if not runs:
        sys.exit("no spec-*.json results in " + sys.argv[1])
    print("| point | rounds | metric | off | on | on/off |")
    print("|---|---|---|---|---|---|")
    for point, modes in sorted(runs.items()):
        off, on = modes["off"], modes["on"]
        rows = [("chain latency ms", lambda r: r["chain_latency_ms"]["mean"]),
                ("images/s", lambda r: r["images_per_s"]),
                ("output tok/s", lambda r: r["output_token_throughput_tps"])]
        for i, name in enumerate(STAGES, 1):
            rows.append(("stage %d %s ms" % (i, name), lambda r, i=i: stage_ms(r, i)))
        for metric, get in rows:
            a, b = mean([get(r) for r in off]), mean([get(r) for r in on])
            print("| %s | %d | %s | %.1f | %.1f | %s |" % (point, min(len(off), len(on)), metric, a, b, ratio(b, a)))
    print()
    print("| point | stage | verifications | draft tokens | accepted | acceptance | tokens/verification |")
    print("|---|---|---|---|---|---|---|")
    for point, modes in sorted(runs.items()):
        for st in STAGES:
            def total(name, st=st):
                key = '%s%s{stage="%s"}' % (SPEC, name, st)
                return sum(r.get("server_metrics", {}).get(key, 0) for r in modes["on"])
            drafts, tokens, acc = total("num_drafts_total"), total("num_draft_tokens_total"), total("num_accepted_tokens_total")
            if drafts:
                print("| %s | %s | %d | %d | %d | %.1f%% | %.2f |" % (point, st, drafts, tokens, acc,
                                                                     100 * acc / tokens, 1 + acc / drafts))


if __name__ == "__main__":
    main()
