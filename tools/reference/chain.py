"""PancapChain as the authors run it (DESIGN.md §2): four independent greedy
generations over the same image, with the hand-off parsing between them.

Writes testdata/golden/chain-<checkpoint>-<image>.json for model runs and
testdata/golden/chain-forced.json, where the stage texts are fixed
(teacher-forced) so the parsing, merging and next prompts are exercised on
realistic lists with duplicates and malformed tails.
"""

import os

import torch

import common
import golden
from prompts import PROMPTS

MAX_NEW_TOKENS = 40  # per stage (the authors use 1024; kept small for the files)


CASES = [("tiny", "shapes"), ("tiny", "waterview"), ("clip336", "shapes"), ("tiny-bf16", "shapes")]

RULES = (
    "split the stage text on '</box>, '; stage-1 item: starts with '<box>[['; stage-2/3 item: the box "
    "starts at the item's last ' <box>[[' and the tag is everything before it, verbatim; the rest, with one "
    "trailing '</box>' removed, must end with ']]' and split on ', ' into exactly four strings that Python's "
    "int() accepts; stop at the first malformed item, keeping what was parsed; drop exact duplicates (box for "
    "stage 1, (tag, box) for stages 2-3); a stage-3 text starting with 'None' adds nothing, otherwise its list "
    "is appended to stage 2's, again dropping exact duplicates; re-serialise as '<box>[[a, b, c, d]]</box>' / "
    "'tag <box>[[a, b, c, d]]</box>' joined by ', '; stage 4's text is only stripped"
)


def parse_coords(s):
    """'a, b, c, d]]' (optionally followed by '</box>') -> [a, b, c, d] or None."""
    s = s.removesuffix("</box>")
    if not s.endswith("]]"):
        return None
    fields = s[:-2].split(", ")
    if len(fields) != 4:
        return None
    try:
        return [int(f) for f in fields]
    except ValueError:
        return None


def parse_boxes(text):
    """Stage 1's hand-off: the list of boxes."""
    boxes = []
    for item in text.split("</box>, "):
        if not item.startswith("<box>[["):
            break
        box = parse_coords(item[len("<box>[["):])
        if box is None:
            break
        if box not in boxes:
            boxes.append(box)
    return boxes


def parse_tagged(text):
    """Stage 2's or 3's hand-off: the list of {tag, box}."""
    ents = []
    for item in text.split("</box>, "):
        i = item.rfind(" <box>[[")
        if i < 0:
            break
        box = parse_coords(item[i + len(" <box>[["):])
        if box is None:
            break
        ent = {"tag": item[:i], "box": box}
        if ent not in ents:
            ents.append(ent)
    return ents


def merge(stage2, stage3, stage3_text):
    """Stage 3's list appended to stage 2's unless stage 3 said 'None'."""
    out = []
    for ent in stage2 + ([] if stage3_text.startswith("None") else stage3):
        if ent not in out:
            out.append(ent)
    return out


def box_text(b):
    """'<box>[[a, b, c, d]]</box>'."""
    return "<box>[[" + ", ".join(str(v) for v in b) + "]]</box>"


def serialise_boxes(boxes):
    """Stage 2's {out1}."""
    return ", ".join(box_text(b) for b in boxes)


def serialise_tagged(ents):
    """Stage 3's {out2} and stage 4's {out3}."""
    return ", ".join(e["tag"] + " " + box_text(e["box"]) for e in ents)


def run_chain(tokenizer, generate):
    """Runs the four stages; generate(input_ids) returns (generated ids, text)
    for one stage. Returns the stage records and the final caption."""
    stages = []
    handoff = ""
    stage2 = []
    caption = ""
    for n in (1, 2, 3, 4):
        prompt = PROMPTS[n].format(handoff)
        full = common.vicuna_prompt(prompt)
        ids = common.tokenizer_image_token(full, tokenizer)
        gen_ids, text = generate(n, ids)
        rec = {"stage": n, "prompt": prompt, "input_ids": ids, "text": text}
        if gen_ids is not None:
            rec["generated_ids"] = gen_ids
        if n == 1:
            rec["parsed"] = parse_boxes(text)
            handoff = rec["handoff"] = serialise_boxes(rec["parsed"])
        elif n == 2:
            stage2 = rec["parsed"] = parse_tagged(text)
            handoff = rec["handoff"] = serialise_tagged(stage2)
        elif n == 3:
            rec["parsed"] = parse_tagged(text)
            rec["merged"] = merge(stage2, rec["parsed"], text)
            handoff = rec["handoff"] = serialise_tagged(rec["merged"])
        else:
            caption = text
        stages.append(rec)
    return stages, caption


def model_chain(tokenizer, ckpt, image):
    """Writes testdata/golden/chain-<ckpt>-<image>.json."""
    path = golden.IMAGES[image]
    if not os.path.exists(path):
        print("skip chain", ckpt, image, "(no", path + ")")
        return
    model = golden.load_model(ckpt)
    size = model.config.vision_config.image_size
    pixel, _ = common.preprocess(path, size)
    _, feats = golden.encode_image(model, pixel)

    def generate(_, ids):
        with torch.no_grad():
            _, gen, _ = golden.greedy(model, golden.splice(model, ids, feats), MAX_NEW_TOKENS, stop_at_eos=True)
        return gen, tokenizer.decode(gen, skip_special_tokens=True).strip()

    stages, caption = run_chain(tokenizer, generate)
    out = os.path.join(common.GOLDEN, f"chain-{ckpt}-{image}.json")
    common.write_json(out, {
        "checkpoint": common.rel(os.path.join(common.CHECKPOINTS, ckpt)),
        "image": common.rel(path),
        "image_size": size,
        "image_tokens": feats.shape[1],
        "image_token_index": common.IMAGE_TOKEN_INDEX,
        "max_new_tokens": MAX_NEW_TOKENS,
        "decoding": f"greedy over the first {common.VOCAB} logits, stop at EOS (kept in generated_ids), "
                    f"at most {MAX_NEW_TOKENS} new tokens per stage; "
                    "text = tokenizer.decode(ids, skip_special_tokens=True).strip()",
        "rules": RULES,
        "stages": stages,
        "caption": caption,
    })
    print("wrote", common.rel(out), [len(s["generated_ids"]) for s in stages])


# Fixed stage texts (1, 2, 3, 4) exercising the hand-off rules.
FORCED = {
    "duplicates-and-malformed-tail": (
        "<box>[[12, 40, 300, 520]]</box>, <box>[[500, 100, 990, 870]]</box>, <box>[[12, 40, 300, 520]]</box>, "
        "<box>[[0, 0, 999, 999]]</box>, <box>[[7, 8, 9]]</box>, <box>[[1, 2, 3, 4]]</box>, <box>[[640, 3",
        "person <box>[[12, 40, 300, 520]]</box>, dog <box>[[500, 100, 990, 870]]</box>, "
        "person <box>[[12, 40, 300, 520]]</box>, sky <box>[[0, 0, 999, 999]]</box>, man <box>[[12, 40, 300, 520]]</box>, "
        "tree <box>[[1, 2, 3, 4]]</box>, car <box>[[640, 300, 7",
        "leash <box>[[290, 300, 520, 410]]</box>, dog <box>[[500, 100, 990, 870]]</box>, "
        "leash <box>[[290, 300, 520, 410]]</box>, bench <box>[[0, 700, 400, 999]]</box>",
        "A man <box>[[12, 40, 300, 520]]</box> walks a dog <box>[[500, 100, 990, 870]]</box> on a leash.  ",
    ),
    "none-and-odd-tags": (
        "<box>[[001, +2, 30, 400]]</box>, <box>[[ 5, 6 , 7, 8]]</box>, <box>[[1_0, 20, 30, 40]]</box>",
        "red, white and blue flag <box>[[1, 2, 30, 400]]</box>, a <box> sign <box>[[5, 6, 7, 8]]</box>, "
        " <box>[[10, 20, 30, 40]]</box>, cat<box>[[9, 9, 9, 9]]</box>, after <box>[[1, 1, 1, 1]]</box>",
        "None of the entities are missing. bird <box>[[1, 2, 3, 4]]</box>",
        "A flag <box>[[1, 2, 30, 400]]</box>.",
    ),
    "empty-outputs": ("", "", "", ""),
    "malformed-first": (
        "There are <box>[[1, 2, 3, 4]]</box>, <box>[[5, 6, 7, 8]]</box>",
        "person <box>[[1, 2, 3, 4]], dog <box>[[5, 6, 7, 8]]</box>",
        "kite <box>[[100, 100, 200, 200]]</box>, kite <box>[[100, 100, 200, 200]]</box>, "
        "kite <box>[[100, 100, 200, 201]]</box>, string <box>[[1, 2, 3]]</box>, bird <box>[[4, 5, 6, 7]]</box>",
        "\n Caption with <box>[[100, 100, 200, 200]]</box>\n",
    ),
}


def forced_chains(tokenizer):
    """Writes testdata/golden/chain-forced.json."""
    cases = []
    for name, texts in FORCED.items():
        stages, caption = run_chain(tokenizer, lambda n, _: (None, texts[n - 1].strip()))
        for rec, raw in zip(stages, texts):
            rec["raw_text"] = raw
        cases.append({"name": name, "stages": stages, "caption": caption})
    out = os.path.join(common.GOLDEN, "chain-forced.json")
    common.write_json(out, {
        "note": "stage texts are forced (raw_text; text is raw_text.strip() as a generated text would be); "
                "each stage's input_ids are the tokenised vicuna_v1 prompt with the image at "
                "image_token_index, independent of the checkpoint",
        "tokenizer": common.rel(common.TOKENIZER_MODEL),
        "image_token_index": common.IMAGE_TOKEN_INDEX,
        "rules": RULES,
        "cases": cases,
    })
    print("wrote", common.rel(out))


def main(only=None):
    """Writes the forced chain golden and the model-run chain goldens
    (optionally only those of the given checkpoints)."""
    tokenizer = common.load_tokenizer()
    forced_chains(tokenizer)
    for ckpt, image in CASES:
        if only is None or ckpt in only:
            model_chain(tokenizer, ckpt, image)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
