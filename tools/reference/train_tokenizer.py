#!/usr/bin/env python3
"""Train the deterministic LLaMA-style SentencePiece tokenizers of the model presets.

The tokenizers are BPE models with byte fallback and the normaliser settings of
LLaMA's tokenizer.model (identity normalisation, dummy prefix, whitespace kept,
digits split), trained with the `sentencepiece` Python trainer on a corpus this
script generates itself:

  * the vicuna_v1 chat template and the four PancapChain stage prompts
    (DESIGN.md section 2) filled with many deterministic boxes and tags;
  * scene phrases built from shapes, colours, positions and relations;
  * pseudo-words from a fixed-seed syllable generator (they give the 32000
    vocabulary enough distinct merges);
  * the SA-Pancap captions of testdata/sapancap/*.json,
    with their [0,1] boxes rewritten as <box>[[x1, y1, x2, y2]]</box> in [0,1000).

Everything is seeded and the trainer runs single-threaded on the unshuffled
corpus, so the same inputs give byte-identical models; the script prints the
sha256 of each model and writes them to model/presets/tokenizers/SHA256SUMS.
The recorded sums assume the SA-Pancap files are present (the script says when
they are not).

Usage (from the repository root):

    .venv/bin/python tools/reference/train_tokenizer.py            # tiny + bench
    .venv/bin/python tools/reference/train_tokenizer.py --only tiny
"""

import argparse
import glob
import hashlib
import io
import json
import os
import random
import re
import sys

import sentencepiece as spm

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT_DIR = os.path.join(ROOT, "model", "presets", "tokenizers")
SAPANCAP = os.path.join(ROOT, "testdata", "sapancap")

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
STAGE_PROMPTS = [
    "Please localize all entities in this image.",
    "Please specify the semantic tags of all entities based on their bounding boxes: {}",
    "Please specify missing entities and their locations for this image based on these specified entities: {}",
    "Please provide a hyper-detailed description for this image, including all entities, their locations, "
    "attributes, and relationships, as well as the global image status, based on boxes and tags: {}",
]

COLOURS = ["red", "green", "blue", "yellow", "white", "black", "gray", "orange", "purple", "brown",
           "pink", "beige", "silver", "golden", "dark blue", "light green"]
SHAPES = ["circle", "square", "triangle", "rectangle", "ellipse", "star", "hexagon", "stripe",
          "ring", "cross", "diamond", "arc"]
TAGS = ["person", "man", "woman", "child", "dog", "cat", "car", "tree", "building", "sky", "road",
        "window", "door", "flower", "leaf", "table", "chair", "bottle", "cup", "shirt", "hat", "bag",
        "wall", "floor", "grass", "cloud", "mountain", "water", "boat", "sign", "lamp", "bicycle"]
POSITIONS = ["at the top left", "at the top right", "in the center", "at the bottom", "on the left side",
             "on the right side", "in the background", "in the foreground", "near the edge"]
RELATIONS = ["is next to", "is above", "is below", "is behind", "is in front of", "overlaps",
             "is to the left of", "is to the right of", "touches", "surrounds"]
SYLLABLES = ["ka", "to", "ri", "men", "sul", "pra", "ve", "lo", "dan", "qui", "zor", "bel", "tha",
             "nir", "os", "ump", "gle", "stra", "vy", "cho", "wex", "al", "in", "er", "ous", "ph",
             "ght", "ck", "ea", "ion", "ly", "mo", "re", "un", "tri", "ze", "fa", "gu", "hi", "jo"]


def box(rng):
    """A random box string with integer corners in [0, 1000)."""
    x1, y1 = rng.randrange(0, 990), rng.randrange(0, 990)
    x2, y2 = rng.randrange(x1 + 1, 1000), rng.randrange(y1 + 1, 1000)
    return "<box>[[%d, %d, %d, %d]]</box>" % (x1, y1, x2, y2)


def scene_sentence(rng):
    """A shape/colour scene phrase with boxes."""
    a = "%s %s" % (rng.choice(COLOURS), rng.choice(SHAPES + TAGS))
    b = "%s %s" % (rng.choice(COLOURS), rng.choice(SHAPES + TAGS))
    return "The %s %s %s, and the %s %s %s." % (
        a, box(rng), rng.choice(POSITIONS), a, rng.choice(RELATIONS), "the " + b + " " + box(rng))


def pseudo_word(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randrange(1, 5)))


def sapancap_lines():
    """SA-Pancap captions with boxes rewritten in the model's [0,1000) integer format."""
    files = sorted(glob.glob(os.path.join(SAPANCAP, "*.json")))
    lines = []
    num = r"([01]\.\d+)"
    pat = re.compile(r"\[\[%s, %s, %s, %s\]\]" % (num, num, num, num))

    def conv(m):
        v = [min(999, int(float(g) * 1000)) for g in m.groups()]
        return "<box>[[%d, %d, %d, %d]]</box>" % tuple(v)

    for f in files:
        with open(f, encoding="utf-8") as fh:
            for item in json.load(fh):
                text = pat.sub(conv, item["gt_response"])
                lines.extend(l.strip() for l in text.split("\n") if l.strip())
    return files, lines


def corpus(seed):
    """The deterministic training corpus, one sentence per line."""
    rng = random.Random(seed)
    lines = []
    for _ in range(400):
        boxes = ", ".join(box(rng) for _ in range(rng.randrange(1, 12)))
        tagged = ", ".join("%s %s" % (rng.choice(TAGS), box(rng)) for _ in range(rng.randrange(1, 12)))
        lines.append(SYSTEM + " USER: <image>")
        for i, p in enumerate(STAGE_PROMPTS):
            lines.append(p.format(boxes if i == 1 else tagged) + " ASSISTANT:")
        lines.append(boxes)
        lines.append(tagged)
        lines.append("None")
    for _ in range(6000):
        lines.append(" ".join(scene_sentence(rng) for _ in range(rng.randrange(1, 4))))
    for _ in range(12000):
        lines.append(" ".join(pseudo_word(rng) for _ in range(rng.randrange(4, 16))))
    files, caps = sapancap_lines()
    if not files:
        print("warning: %s not found; the models will differ from the recorded sums" % SAPANCAP,
              file=sys.stderr)
    lines.extend(caps)
    return lines


def train(name, vocab, lines):
    """Train one model and write it to OUT_DIR/<name>.model; returns its sha256.

    The corpus goes in through an iterator and the model comes out through a
    writer, so no temporary path ends up in the stored trainer_spec.
    """
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        max_sentencepiece_length=16,
        max_sentence_length=16384,
        unk_id=0, unk_piece="<unk>",
        bos_id=1, bos_piece="<s>",
        eos_id=2, eos_piece="</s>",
        pad_id=-1,
        character_coverage=0.99995,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        seed_sentencepiece_size=1000000,
        hard_vocab_limit=True,
        minloglevel=2,
    )
    os.makedirs(OUT_DIR, exist_ok=True)
    dst = os.path.join(OUT_DIR, name + ".model")
    with open(dst, "wb") as fh:
        fh.write(model.getvalue())
    digest = hashlib.sha256(model.getvalue()).hexdigest()
    sp = spm.SentencePieceProcessor(model_file=dst)
    print("%s  %s.model  (vocab %d)" % (digest, name, sp.get_piece_size()))
    return digest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["tiny", "bench"], help="train only this preset")
    args = ap.parse_args()
    presets = [("tiny", 1000), ("bench", 32000)]
    lines = corpus(seed=20240601)
    sums = {}
    sums_path = os.path.join(OUT_DIR, "SHA256SUMS")
    if os.path.exists(sums_path):
        with open(sums_path) as fh:
            for l in fh:
                if l.strip():
                    d, n = l.split()
                    sums[n] = d
    for name, vocab in presets:
        if args.only and args.only != name:
            continue
        sums[name + ".model"] = train(name, vocab, lines)
    with open(sums_path, "w") as fh:
        for n in sorted(sums):
            fh.write("%s  %s\n" % (sums[n], n))


if __name__ == "__main__":
    main()
