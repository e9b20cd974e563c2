#!/usr/bin/env python3
"""Write the tokenizer parity golden files from transformers' slow LlamaTokenizer.

For each preset tokenizer (model/presets/tokenizers/{tiny,bench}.model) this
writes tokenizer/testdata/llama_golden[_bench].json with

  encode: >= 1000 varied strings and LlamaTokenizer(vocab_file=...).encode(s)
          (add_special_tokens=True, legacy behaviour: the 4.37.2 default);
  decode: random id sequences (byte pieces forming valid and invalid UTF-8,
          special ids, whitespace pieces) with decode(ids,
          skip_special_tokens=True) and its Python .strip();
  image:  LLaVA's tokenizer_image_token of vicuna_v1 prompts holding <image>
          (the four PancapChain stage prompts among them).

It also writes tokenizer/testdata/ties.model, a hand-made BPE model with tied
merge scores, Unused and user-defined pieces and no byte fallback, and its
encodings in llama_golden_ties.json.

The strings come from a fixed-seed generator, so reruns give identical files.
Run from the repository root:

    .venv/bin/python tools/reference/tokenizer_golden.py
    go test ./tokenizer/
"""

import json
import os
import random

import transformers
from transformers import LlamaTokenizer

transformers.logging.set_verbosity_error()

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE_TOKEN_INDEX = -200

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
STAGES = [
    "Please localize all entities in this image.",
    "Please specify the semantic tags of all entities based on their bounding boxes: {}",
    "Please specify missing entities and their locations for this image based on these specified entities: {}",
    "Please provide a hyper-detailed description for this image, including all entities, their locations, "
    "attributes, and relationships, as well as the global image status, based on boxes and tags: {}",
]


def vicuna(prompt):
    return SYSTEM + " USER: <image>\n" + prompt + " ASSISTANT:"


def tokenizer_image_token(prompt, tokenizer, image_token_index=IMAGE_TOKEN_INDEX):
    """LLaVA's llava.mm_utils.tokenizer_image_token."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep] * len(X)) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def box(rng):
    x1, y1 = rng.randrange(0, 990), rng.randrange(0, 990)
    return "<box>[[%d, %d, %d, %d]]</box>" % (x1, y1, rng.randrange(x1 + 1, 1000), rng.randrange(y1 + 1, 1000))


FIXED = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "a", " a", "a ", "  a  ", "hello world",
    "Hello</s>world", "a <s> b", "<s>", "</s>", "<unk>", "<s><s>", "</s></s>", "<s> </s>", "<<s>>", "</s",
    "<s", "s>", "<unk>x", "x<unk>", "<image>", "a<image>b", "\u2581", "\u2581\u2581x", "x\u2581 y",
    "\ufffd", "\u3000x\u3000", "\xa0", "\x1c\x1f", "caf\u00e9", "cafe\u0301", "\u65e5\u672c\u8a9e", "\U0001F600",
    "\U0001F468\u200D\U0001F469\u200D\U0001F467", "12345", "3.14159", "1,000,000", "x\ty\tz", "a\r\nb",
    "None", "None of them.", "<box>[[0, 0, 999, 999]]</box>", "tag <box>[[1, 2, 3, 4]]</box>, ",
    "\u0645\u0631\u062d\u0628\u0627", "\u041f\u0440\u0438\u0432\u0435\u0442", "\u00e4\u00f6\u00fc\u00df",
    "ASSISTANT:", "USER: <image>\n", SYSTEM,
]

PARTS = ["the", "The", " ", "  ", "    ", "\t", "\n", "\n\n", ",", ".", ":", "<", ">", "[[", "]]", "<box>",
         "</box>", "<s>", "</s>", "<unk>", "<image>", "red", "circle", "person", "left", "entities",
         "\u65e5", "\u672c", "\u4e2d\u6587", "\u3042", "\U0001F600", "\U0001F680", "\u00e9", "\u00f1", "\u2581",
         "\u0301", "\u200b", "\ufeff", "\ufffd", "\u3000", "\xa0", "\x1c", "\x00", "\x7f", "'", '"', "\\",
         "zorvelo", "ckgle", "ASSISTANT:", "USER:", "-", "_", "#", "@", "%"]


def strings(rng):
    out = list(FIXED)
    for stage in STAGES:
        for n in (0, 1, 3, 12):
            boxes = ", ".join(box(rng) for _ in range(n))
            tagged = ", ".join("%s %s" % (rng.choice(["person", "tree", "red car", "sky"]), box(rng))
                               for _ in range(n))
            p = stage.format(tagged if "tags" in stage or "missing" in stage else boxes)
            out.append(p)
            out.append(vicuna(p))
    for _ in range(150):  # digits and numbers
        out.append(" ".join(str(rng.randrange(0, 10 ** rng.randrange(1, 12))) for _ in range(rng.randrange(1, 6))))
    for _ in range(400):  # mixtures of parts
        out.append("".join(rng.choice(PARTS) for _ in range(rng.randrange(1, 16))))
    for _ in range(300):  # random code points from several blocks
        blocks = [(0x20, 0x7f), (0x09, 0x0e), (0xa0, 0x250), (0x370, 0x400), (0x400, 0x500), (0x600, 0x700),
                  (0x900, 0x980), (0x3040, 0x3100), (0x4e00, 0x4f00), (0xac00, 0xac80), (0x1f300, 0x1f650),
                  (0x2000, 0x2070), (0xfe00, 0xfe10)]
        s = []
        for _ in range(rng.randrange(1, 24)):
            lo, hi = rng.choice(blocks)
            s.append(chr(rng.randrange(lo, hi)))
        out.append("".join(s))
    for _ in range(150):  # whitespace around words
        ws = ["", " ", "  ", "\t", "\n", " \n", "\u3000"]
        out.append(rng.choice(ws) + " ".join(rng.choice(PARTS[:26]) for _ in range(rng.randrange(1, 8)))
                   + rng.choice(ws))
    return out


def decode_cases(rng, tok):
    n = tok.vocab_size
    byte0 = tok.sp_model.piece_to_id("<0x00>")
    space = [i for i in range(n) if tok.sp_model.id_to_piece(i).startswith("\u2581")]
    utf8 = ["\u00e9", "\u65e5", "\U0001F600", "\u0301"]
    cases = []
    for k in range(600):
        ids = []
        for _ in range(rng.randrange(1, 30)):
            c = rng.random()
            if c < 0.3:
                ids.append(rng.randrange(0, n))
            elif c < 0.5:
                ids.append(byte0 + rng.randrange(0, 256))
            elif c < 0.65:  # a (possibly cut) valid UTF-8 sequence
                b = rng.choice(utf8).encode("utf-8")
                ids.extend(byte0 + x for x in b[: rng.randrange(1, len(b) + 1)])
            elif c < 0.75:
                ids.append(rng.choice([0, 1, 2]))
            else:
                ids.append(rng.choice(space))
        cases.append(ids)
    cases += [[], [1], [2], [0], [1, 2], [byte0 + 0xE6], [byte0 + 0x20, byte0 + 0x41],
              [tok.sp_model.piece_to_id("\u2581")], [tok.sp_model.piece_to_id("\u2581")] * 3]
    out = []
    for ids in cases:
        text = tok.decode(ids, skip_special_tokens=True)
        out.append({"ids": ids, "text": text, "strip": text.strip()})
    return out


def image_cases(rng, tok):
    prompts = []
    for stage in STAGES:
        prompts.append(vicuna(stage.format(", ".join(box(rng) for _ in range(5)))))
        prompts.append(vicuna(stage.format("")))
    prompts += ["<image>", "<image>\nx", "x<image>", "<image><image>", "a <image> b <image> c", "no image",
                "", " <image> ", "<s><image></s>"]
    return [{"prompt": p, "ids": tokenizer_image_token(p, tok)} for p in prompts]


def ties_model(path):
    """A hand-made BPE model whose merges tie in score, with an Unused merge
    intermediate, a user-defined symbol and no byte fallback (so unknown
    characters become <unk>): it pins sentencepiece's tie-breaking rules."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    P = pb.ModelProto.SentencePiece
    pieces = [("<unk>", 0, P.UNKNOWN), ("<s>", 0, P.CONTROL), ("</s>", 0, P.CONTROL), ("<box>", 0, P.USER_DEFINED)]
    pieces += [(w, 0.0, P.NORMAL) for w in ["ab", "bc", "ca", "aa", "\u2581a", "\u2581\u2581", "abc"]]
    pieces += [(w, -1.0, P.NORMAL) for w in ["cab", "aab", "\u2581ab", "bca"]]
    pieces += [("cc", -0.5, P.UNUSED), ("ccc", -2.0, P.NORMAL)]
    pieces += [(w, -5.0, P.NORMAL) for w in ["\u2581", "a", "b", "c", "x", "<", ">"]]
    for text, score, typ in pieces:
        p = m.pieces.add()
        p.piece, p.score, p.type = text, score, typ
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = False
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    with open(path, "wb") as fh:
        fh.write(m.SerializeToString())


def ties_strings(rng):
    alphabet = ["a", "b", "c", "x", " ", "  ", "<box>", "<", ">", "\u65e5", "<s>", "cc"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 14))) for _ in range(300)]


def main():
    ties = os.path.join("tokenizer", "testdata", "ties.model")
    ties_model(os.path.join(ROOT, ties))
    for model, suffix in ((os.path.join("model", "presets", "tokenizers", "tiny.model"), ""),
                          (os.path.join("model", "presets", "tokenizers", "bench.model"), "_bench"),
                          (ties, "_ties")):
        path = os.path.join(ROOT, model)
        if not os.path.exists(path):
            continue
        tok = LlamaTokenizer(vocab_file=path)
        assert tok.legacy, "transformers default must be legacy=True"
        rng = random.Random(1234)
        enc = [{"text": s, "ids": tok.encode(s)} for s in (ties_strings(rng) if suffix == "_ties" else strings(rng))]
        golden = {
            "model": model,
            "transformers": transformers.__version__,
            "encode": enc,
            "decode": [] if suffix == "_ties" else decode_cases(rng, tok),
            "image": [] if suffix == "_ties" else image_cases(rng, tok),
        }
        dst = os.path.join(ROOT, "tokenizer", "testdata", "llama_golden%s.json" % suffix)
        with open(dst, "w", encoding="utf-8") as fh:
            json.dump(golden, fh, ensure_ascii=True, indent=0)
            fh.write("\n")
        print("%s: %d encode, %d decode, %d image cases" % (dst, len(enc), len(golden["decode"]),
                                                            len(golden["image"])))


if __name__ == "__main__":
    main()
