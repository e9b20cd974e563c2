#!/usr/bin/env python3
"""Export a training checkpoint in the layouts the Go engine and the HF reference load.

  OUT/llava/  the authors' LlavaLlamaForCausalLM layout: model.safetensors
              (model.embed_tokens, model.layers.N.*, model.norm, lm_head,
              model.mm_projector.{0,2}.*; vocab cut back to the tokenizer's
              1000 rows), config.json with the mm_* keys and mm_vision_tower
              "../clip", tokenizer.model (+ tokenizer_config.json,
              special_tokens_map.json)
  OUT/clip/   the vision tower as a CLIPVisionModel directory with the
              CLIPImageProcessor config at 128 px
  OUT/hf/     LlavaForConditionalGeneration.save_pretrained + tokenizer files
              (the HF reference)

The layout code is tools/reference/checkpoints.py's (to_llava, save_weights,
llava_config), reused here with the training geometry.

Usage: python training/export.py --run training/runs/tiny --out training/runs/tiny/export [--dtype float32]
"""

import argparse
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
sys.path.insert(0, HERE)
import checkpoints  # noqa: E402
import common  # noqa: E402
import train  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def llava_config(dtype):
    """checkpoints.llava_config with the training geometry."""
    cfg = checkpoints.llava_config(dtype)
    t = train.TEXT
    cfg.update({
        "_name_or_path": "pancap-scenes",
        "hidden_size": t["hidden_size"],
        "intermediate_size": t["intermediate_size"],
        "num_attention_heads": t["num_attention_heads"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_key_value_heads": t["num_key_value_heads"],
        "max_position_embeddings": t["max_position_embeddings"],
        "mm_hidden_size": train.VISION["hidden_size"],
    })
    return cfg


def export(model, tok_path, out, dtype):
    """Writes OUT/{llava,clip,hf}."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    shutil.rmtree(out, ignore_errors=True)
    for sub in ("llava", "clip", "hf"):
        os.makedirs(os.path.join(out, sub))
    tok = common.load_tokenizer(tok_path)
    llm, clip = checkpoints.to_llava(model.to(dtype).state_dict())
    checkpoints.save_weights(llm, os.path.join(out, "llava"), "safetensors")
    common.write_json(os.path.join(out, "llava", "config.json"), llava_config(dtype))
    tok.save_pretrained(os.path.join(out, "llava"))
    vision = CLIPVisionModel(CLIPVisionConfig(image_size=train.IMAGE_SIZE, **train.VISION))
    vision.load_state_dict(clip, strict=True)
    vision.to(dtype).save_pretrained(os.path.join(out, "clip"), safe_serialization=True)
    common.image_processor(train.IMAGE_SIZE).save_pretrained(os.path.join(out, "clip"))
    model.save_pretrained(os.path.join(out, "hf"), safe_serialization=True)
    tok.save_pretrained(os.path.join(out, "hf"))
    model.to(torch.float32)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(out, "llava")) for f in fs)
    size += sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(out, "clip")) for f in fs)
    print("wrote %s (llava + clip: %.1f MB)" % (out, size / 1e6))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=os.path.join(HERE, "runs", "tiny"))
    ap.add_argument("--out", default="", help="default: RUN/export")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    a = ap.parse_args()
    export(train.load_run(a.run)[0], os.path.join(a.run, "tokenizer.model"), a.out or os.path.join(a.run, "export"),
           DTYPES[a.dtype])


if __name__ == "__main__":
    main()
