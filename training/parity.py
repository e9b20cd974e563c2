#!/usr/bin/env python3
"""Check that the Go engine and the HF reference produce the same tokens on an export.

For each of the first --images test images, runs the PancapChain with the HF
reference (tools/reference/chain.py's run_chain: greedy, stop at </s>), and for
each stage gives the very same prompt to `pancap generate --json` on the
authors'-layout export; the prompt ids, the generated ids and whether </s>
ended the stage must agree, and the logits of the last prompt position must be
within --atol (they depend on the image even when the tokens do not).
Exits 1 on any difference.

Usage: python training/parity.py --export training/runs/tiny/export --data training/data [--images 2]
       [--pancap bin/pancap] [--max-new-tokens 300]
"""

import argparse
import json
import os
import math
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
import chain  # noqa: E402
import common  # noqa: E402
import golden  # noqa: E402


def go_generate(pancap, export, image, prompt, max_new, logits_path):
    """Runs `pancap generate --json`, the last prompt position's logits
    written to logits_path; returns its result object and those logits."""
    out = subprocess.run([pancap, "generate", "--json", "--model", os.path.join(export, "llava"), "--image", image,
                          "--prompt", prompt, "--max-new-tokens", str(max_new), "--dump-logits", logits_path],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout), torch.from_numpy(np.fromfile(logits_path, dtype="<f4"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--pancap", default=os.path.join(HERE, "..", "bin", "pancap"))
    ap.add_argument("--max-new-tokens", type=int, default=300)
    ap.add_argument("--atol", type=float, default=1e-3, help="largest logit difference accepted")
    a = ap.parse_args()

    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(os.path.join(a.export, "hf"),
                                                          torch_dtype=torch.float32).eval()
    tok = common.load_tokenizer(os.path.join(a.export, "llava", "tokenizer.model"))
    size = model.config.vision_config.image_size
    with open(os.path.join(a.data, "test", "scenes.jsonl")) as f:
        scenes = [json.loads(l) for l in f][: a.images]
    bad, worst = 0, 0.0
    tmp = tempfile.mkdtemp()
    for s in scenes:
        path = os.path.join(a.data, "test", s["image"])
        pixel, _ = common.preprocess(path, size)
        _, feats = golden.encode_image(model, pixel)

        logits = {}  # stage → HF logits of the last prompt position [vocab]

        def generate(n, ids):
            with torch.no_grad():
                first, gen, _ = golden.greedy(model, golden.splice(model, ids, feats), a.max_new_tokens,
                                              stop_at_eos=True)
            logits[n] = first.logits[0, -1, : common.VOCAB]
            return gen, tok.decode(gen, skip_special_tokens=True).strip()

        stages, _ = chain.run_chain(tok, generate)
        for rec in stages:
            got, go_logits = go_generate(a.pancap, a.export, path, rec["prompt"], a.max_new_tokens,
                                         os.path.join(tmp, "logits.f32"))
            diff = float((go_logits - logits[rec["stage"]]).abs().max()) if go_logits.numel() == common.VOCAB else math.inf
            worst = max(worst, diff)
            hf_ids = rec["generated_ids"]
            hf_eos = bool(hf_ids) and hf_ids[-1] == common.EOS
            if hf_eos:
                hf_ids = hf_ids[:-1]  # the Go engine reports </s> as finish "eos", not as an id
            same = (got["input_ids"] == rec["input_ids"] and got["generated_ids"] == hf_ids
                    and (got["finish"] == "eos") == hf_eos and diff <= a.atol)
            bad += not same
            print("%s stage %d: %s (%d tokens, logits max |diff| %.2e) %r" % (
                s["id"], rec["stage"], "same" if same else "DIFFERENT", len(rec["generated_ids"]), diff,
                rec["text"][:100]))
            if not same:
                print("  hf: %s\n  go: %s (finish %s)" % (rec["generated_ids"], got["generated_ids"], got["finish"]))
    shutil.rmtree(tmp)
    print("parity: %d of %d stages differ; largest logit difference %.2e" % (bad, 4 * len(scenes), worst))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
