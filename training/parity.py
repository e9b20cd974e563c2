#!/usr/bin/env python3
"""Check that the Go engine and the HF reference produce the same tokens on an export.

For each of the first --images test images, runs the PancapChain with the HF
reference (tools/reference/chain.py's run_chain: greedy, stop at </s>), and for
each stage gives the very same prompt to `pancap generate --json` on the
authors'-layout export; the prompt ids, the generated ids and whether </s>
ended the stage must agree.
Exits 1 on any difference.

Usage: python training/parity.py --export training/runs/tiny/export --data training/data [--images 2]
       [--pancap bin/pancap] [--max-new-tokens 300]
"""

import argparse
import json
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
import chain  # noqa: E402
import common  # noqa: E402
import golden  # noqa: E402


def go_generate(pancap, export, image, prompt, max_new):
    """Runs `pancap generate --json`; returns its result object."""
    out = subprocess.run([pancap, "generate", "--json", "--model", os.path.join(export, "llava"), "--image", image,
                          "--prompt", prompt, "--max-new-tokens", str(max_new)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--pancap", default=os.path.join(HERE, "..", "bin", "pancap"))
    ap.add_argument("--max-new-tokens", type=int, default=300)
    a = ap.parse_args()

    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(os.path.join(a.export, "hf"),
                                                          torch_dtype=torch.float32).eval()
    tok = common.load_tokenizer(os.path.join(a.export, "llava", "tokenizer.model"))
    size = model.config.vision_config.image_size
    with open(os.path.join(a.data, "test", "scenes.jsonl")) as f:
        scenes = [json.loads(l) for l in f][: a.images]
    bad = 0
    for s in scenes:
        path = os.path.join(a.data, "test", s["image"])
        pixel, _ = common.preprocess(path, size)
        _, feats = golden.encode_image(model, pixel)

        def generate(n, ids):
            with torch.no_grad():
                _, gen, _ = golden.greedy(model, golden.splice(model, ids, feats), a.max_new_tokens, stop_at_eos=True)
            return gen, tok.decode(gen, skip_special_tokens=True).strip()

        stages, _ = chain.run_chain(tok, generate)
        for rec in stages:
            got = go_generate(a.pancap, a.export, path, rec["prompt"], a.max_new_tokens)
            hf_ids = rec["generated_ids"]
            hf_eos = bool(hf_ids) and hf_ids[-1] == common.EOS
            if hf_eos:
                hf_ids = hf_ids[:-1]  # the Go engine reports </s> as finish "eos", not as an id
            same = (got["input_ids"] == rec["input_ids"] and got["generated_ids"] == hf_ids
                    and (got["finish"] == "eos") == hf_eos)
            bad += not same
            print("%s stage %d: %s (%d tokens) %r" % (s["id"], rec["stage"], "same" if same else "DIFFERENT",
                                                      len(rec["generated_ids"]), rec["text"][:120]))
            if not same:
                print("  hf: %s\n  go: %s (finish %s)" % (rec["generated_ids"], got["generated_ids"], got["finish"]))
    print("parity: %d of %d stages differ" % (bad, 4 * len(scenes)))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
