"""Golden outputs of Hugging Face transformers 4.37.2 on the tiny checkpoints
(testdata/golden/<checkpoint>-<image>/), computed in float32 from the stored
weights: input ids, pixel values, vision hidden states, image features,
last-position LLM hidden states and logits, and 32 greedy tokens.
"""

import os
import shutil

import torch
from PIL import Image, ImageDraw

import checkpoints
import common

GREEDY_TOKENS = 32

# image name -> path; shapes is drawn by draw_shapes, the others are vendored photos (testdata/SOURCES.md)
# data (waterview a progressive JPEG, ironing a baseline one).
IMAGES = {
    "shapes": os.path.join(common.IMAGES, "shapes.png"),
    "waterview": os.path.join(common.TESTDATA, "images", "waterview.jpg"),
    "ironing": os.path.join(common.TESTDATA, "images", "extreme_ironing.jpg"),
}

# (checkpoint, image, user prompt)
CASES = [
    ("tiny", "shapes", "Please localize all entities in this image."),
    ("tiny", "waterview", "What are the things I should be cautious about when I visit here?"),
    ("tiny", "ironing", "What is unusual about this image?"),
    ("tiny-bf16", "shapes", "Please localize all entities in this image."),
    ("tiny-fp16", "shapes", "Please localize all entities in this image."),
    ("clip336", "shapes", "Describe the shapes, their colours and positions."),
    ("clip336", "waterview", "Please localize all entities in this image."),
    ("lora", "shapes", "Please localize all entities in this image."),
]


def draw_shapes():
    """testdata/images/shapes.png: a 200×120 RGB picture of coloured shapes
    (not square, so padding shows; sharp edges, so resampling shows)."""
    img = Image.new("RGB", (200, 120), (235, 230, 210))
    d = ImageDraw.Draw(img)
    d.rectangle((10, 12, 70, 60), fill=(200, 30, 40))
    d.ellipse((90, 20, 150, 90), fill=(30, 90, 200), outline=(0, 0, 0), width=3)
    d.polygon([(160, 110), (195, 110), (178, 70)], fill=(40, 170, 60))
    d.line((5, 115, 120, 75), fill=(250, 200, 0), width=5)
    for i in range(8):
        d.rectangle((20 + 8 * i, 80 + (i % 2) * 8, 26 + 8 * i, 86 + (i % 2) * 8), fill=(20 * i, 255 - 25 * i, 128))
    os.makedirs(common.IMAGES, exist_ok=True)
    img.save(IMAGES["shapes"], format="PNG", optimize=False, compress_level=9)


def load_model(name):
    """The fp32 llava-hf model of a checkpoint, from its stored files (bf16/fp16
    weights upcast to fp32); for "lora" the tiny base merged with the adapter."""
    from transformers import LlavaForConditionalGeneration

    base = "tiny" if name == "lora" else name
    model = LlavaForConditionalGeneration.from_pretrained(
        os.path.join(common.CHECKPOINTS, base, "hf"), torch_dtype=torch.float32).eval()
    if name == "lora":
        merged = checkpoints.merge_lora(model.state_dict(), os.path.join(common.CHECKPOINTS, "lora", "adapter"))
        model.load_state_dict(merged, strict=True)
    return model


def splice(model, input_ids, image_features):
    """LLaVA's prepare_inputs_labels_for_multimodal for one image: text
    embeddings with the image features where IMAGE_TOKEN_INDEX is.
    Returns [1 × seq × hidden]."""
    embed = model.get_input_embeddings()
    parts = []
    for i, tok in enumerate(input_ids):
        if tok == common.IMAGE_TOKEN_INDEX:
            parts.append(image_features[0])  # [tokens × hidden]
        else:
            parts.append(embed(torch.tensor([tok])))  # [1 × hidden]
    return torch.cat(parts, 0)[None]


@torch.no_grad()
def encode_image(model, pixel_values):
    """Vision tower (all hidden states) and projected features of layer -2,
    CLS dropped: (hidden_states [(L+1) × (P+1) × vh], features [1 × P × h])."""
    out = model.vision_tower(pixel_values[None], output_hidden_states=True)
    hidden = torch.stack([h[0] for h in out.hidden_states])
    feats = model.multi_modal_projector(out.hidden_states[model.config.vision_feature_layer][:, 1:])
    return hidden, feats


@torch.no_grad()
def greedy(model, embeds, n, stop_at_eos):
    """Greedy decoding with a KV cache over the first VOCAB logits only (the
    padded rows of the llava-hf vocab are never chosen). Returns (prefill
    output, generated ids, smallest top-1 minus top-2 logit gap of the
    steps); with stop_at_eos the EOS id ends (and is kept in) the list."""
    lm = model.language_model
    out = lm(inputs_embeds=embeds, use_cache=True, output_hidden_states=True)
    first = out
    ids = []
    margin = float("inf")
    for _ in range(n):
        top = torch.topk(out.logits[0, -1, : common.VOCAB], 2)
        margin = min(margin, float(top.values[0] - top.values[1]))
        tok = int(top.indices[0])
        ids.append(tok)
        if stop_at_eos and tok == common.EOS:
            break
        out = lm(input_ids=torch.tensor([[tok]]), past_key_values=out.past_key_values, use_cache=True)
    return first, ids, margin


@torch.no_grad()
def check_hf_forward(model, input_ids, pixel_values, logits):
    """The manual splice must equal LlavaForConditionalGeneration.forward with
    the llava-hf image token."""
    ids = torch.tensor([[common.HF_IMAGE_TOKEN if t == common.IMAGE_TOKEN_INDEX else t for t in input_ids]])
    mask = torch.ones_like(ids)
    ref = model(input_ids=ids, pixel_values=pixel_values[None], attention_mask=mask).logits[0, -1, : common.VOCAB]
    assert torch.allclose(ref, logits, rtol=1e-5, atol=1e-5), float((ref - logits).abs().max())


def run_case(tokenizer, ckpt, image, prompt):
    """Writes testdata/golden/<ckpt>-<image>/."""
    path = IMAGES[image]
    if not os.path.exists(path):
        print("skip", ckpt, image, "(no", path + ")")
        return
    model = load_model(ckpt)
    size = model.config.vision_config.image_size
    full = common.vicuna_prompt(prompt)
    input_ids = common.tokenizer_image_token(full, tokenizer)
    pixel, resized = common.preprocess(path, size)
    vision_hidden, feats = encode_image(model, pixel)
    embeds = splice(model, input_ids, feats)
    out, ids, margin = greedy(model, embeds, GREEDY_TOKENS, stop_at_eos=False)
    logits = out.logits[0, -1, : common.VOCAB]
    check_hf_forward(model, input_ids, pixel, logits)
    last = torch.stack([h[0, -1] for h in out.hidden_states])  # [(layers+1) × hidden]

    d = os.path.join(common.GOLDEN, f"{ckpt}-{image}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    files = {
        "pixel_values.f32": common.write_f32(os.path.join(d, "pixel_values.f32"), pixel),
        "image_features.f32": common.write_f32(os.path.join(d, "image_features.f32"), feats[0]),
        "vision_hidden.f32": common.write_f32(os.path.join(d, "vision_hidden.f32"), vision_hidden),
        "llm_hidden_last.f32": common.write_f32(os.path.join(d, "llm_hidden_last.f32"), last),
        "logits.f32": common.write_f32(os.path.join(d, "logits.f32"), logits),
    }
    with open(os.path.join(d, "resized.u8"), "wb") as f:
        f.write(resized.tobytes())
    files["resized.u8"] = list(resized.shape)
    stored = checkpoints.CASES["tiny" if ckpt == "lora" else ckpt][1]
    meta = {
        "checkpoint": common.rel(os.path.join(common.CHECKPOINTS, "tiny" if ckpt == "lora" else ckpt)),
        "layouts": ["hf", "llava"],
        "dtype": checkpoints.DTYPE_NAMES[stored],
        "compute_dtype": "float32",
        "compute_note": "stored weights upcast to float32 before computing" if stored != torch.float32
        else "float32 weights, float32 compute",
        "image": common.rel(path),
        "image_size": size,
        "image_tokens": feats.shape[1],
        "prompt": prompt,
        "full_prompt": full,
        "input_ids": input_ids,
        "image_token_index": common.IMAGE_TOKEN_INDEX,
        "sequence_length": embeds.shape[1],
        "vocab": common.VOCAB,
        "hf_vocab": common.HF_VOCAB,
        "greedy_ids": ids,
        "greedy_note": f"{GREEDY_TOKENS} tokens, argmax over the first {common.VOCAB} logits, EOS does not stop",
        "greedy_text": tokenizer.decode(ids, skip_special_tokens=True),
        "greedy_min_margin": margin,
        "files": files,
        "files_note": "little-endian float32, row-major; resized.u8 is the 8-bit image after pad, "
                      "bicubic resize and centre crop, [S × S × 3] HWC; vision_hidden[0] is the "
                      "embedding output after pre_layrnorm; llm_hidden_last[-1] is after the final norm",
        "vision_hidden_summary": [common.summary(h) for h in vision_hidden],
        "image_features_summary": common.summary(feats),
        "llm_hidden_summary": [common.summary(h[0]) for h in out.hidden_states],
        "llm_hidden_last_summary": [common.summary(h) for h in last],
        "logits_summary": common.summary(logits),
        "logits_top5": torch.topk(logits, 5).indices.tolist(),
    }
    if ckpt == "lora":
        meta["lora"] = common.rel(os.path.join(common.CHECKPOINTS, "lora", "adapter"))
        meta["lora_note"] = ("merged: W' = (W.float() + (alpha/r)·(B.float() @ A.float())).to(W.dtype); "
                             "projector replaced by non_lora_trainables.bin")
    common.write_json(os.path.join(d, "case.json"), meta)
    print("wrote", common.rel(d), "greedy", ids[:8], "...")


def main(only=None):
    """Draws shapes.png and writes the golden cases (optionally only those of
    the given checkpoints)."""
    draw_shapes()
    tokenizer = common.load_tokenizer()
    for ckpt, image, prompt in CASES:
        if only is None or ckpt in only:
            run_case(tokenizer, ckpt, image, prompt)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or None)
