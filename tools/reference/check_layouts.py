"""Checks that the two layouts of every checkpoint hold the same model, so the
goldens (computed from the llava-hf layout) hold for both.

For each case it loads the authors' layout from disk (config.json, weights in
whichever format the case uses, the CLIP tower through mm_vision_tower),
converts it to LlavaForConditionalGeneration, and asserts that
  - every tensor equals the llava-hf layout's (the first 1000 vocab rows),
  - the golden logits, image features and greedy tokens are reproduced
    exactly from the authors' layout (with the LoRA adapter merged for lora).
Exits non-zero on any mismatch.
"""

import glob
import json
import os

import numpy as np
import torch
from safetensors.torch import load_file

import checkpoints
import common
import golden


def load_weights(directory):
    """The state dict of an authors'-layout directory: model.safetensors,
    pytorch_model.bin, or either sharded with its index file."""
    for index, loader in (("model.safetensors.index.json", load_file),
                          ("pytorch_model.bin.index.json", lambda p: torch.load(p, map_location="cpu"))):
        path = os.path.join(directory, index)
        if os.path.exists(path):
            files = sorted(set(json.load(open(path))["weight_map"].values()))
            sd = {}
            for f in files:
                sd.update(loader(os.path.join(directory, f)))
            return sd
    if os.path.exists(os.path.join(directory, "model.safetensors")):
        return load_file(os.path.join(directory, "model.safetensors"))
    return torch.load(os.path.join(directory, "pytorch_model.bin"), map_location="cpu")


def from_llava(directory):
    """LlavaForConditionalGeneration (fp32) built from the authors' layout."""
    from transformers import CLIPVisionModel, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    cfg = json.load(open(os.path.join(directory, "config.json")))
    assert cfg["model_type"] == "llava" and cfg["mm_projector_type"] == "mlp2x_gelu"
    assert cfg["mm_vision_select_feature"] == "patch" and cfg["image_aspect_ratio"] == "pad"
    clip_dir = os.path.normpath(os.path.join(directory, cfg["mm_vision_tower"]))
    clip = CLIPVisionModel.from_pretrained(clip_dir, torch_dtype=torch.float32)
    text = LlamaConfig(
        vocab_size=common.HF_VOCAB, pad_token_id=common.HF_PAD_TOKEN,
        **{k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                               "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings",
                               "hidden_act", "bos_token_id", "eos_token_id", "tie_word_embeddings")})
    config = LlavaConfig(vision_config=clip.config.to_dict(), text_config=text.to_dict(),
                         image_token_index=common.HF_IMAGE_TOKEN, projector_hidden_act="gelu",
                         vision_feature_select_strategy="default",
                         vision_feature_layer=cfg["mm_vision_select_layer"], pad_token_id=common.HF_PAD_TOKEN,
                         tie_word_embeddings=False)
    model = LlavaForConditionalGeneration(config).eval()
    sd = {}
    for name, t in load_weights(directory).items():
        t = t.float()
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert t.shape[0] == cfg["vocab_size"], (name, t.shape)
            t = torch.cat([t, torch.zeros(common.HF_VOCAB - t.shape[0], t.shape[1])])  # [1008 × hidden]
        if name.startswith("model.mm_projector."):
            idx, leaf = name[len("model.mm_projector."):].split(".")
            sd["multi_modal_projector." + {"0": "linear_1", "2": "linear_2"}[idx] + "." + leaf] = t
        else:
            sd["language_model." + name] = t
    for name, t in clip.state_dict().items():
        sd["vision_tower." + name] = t
    model.load_state_dict(sd, strict=True)
    return model


def same_tensors(a, b):
    """Asserts two llava-hf state dicts agree on every real (non-padded) row."""
    assert a.keys() == b.keys(), a.keys() ^ b.keys()
    for k in a:
        x, y = a[k], b[k]
        if k.endswith(("embed_tokens.weight", "lm_head.weight")):
            x, y = x[: common.VOCAB], y[: common.VOCAB]
        assert torch.equal(x, y), k


def read_f32(path, shape):
    """A golden float32 file as a tensor of the given shape."""
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(shape))


def check_golden(model, tokenizer, case_dir):
    """Recomputes a golden case with the given model and compares."""
    meta = json.load(open(os.path.join(case_dir, "case.json")))
    path = os.path.join(common.REPO, meta["image"])
    if not os.path.exists(path):
        return False
    ids = common.tokenizer_image_token(meta["full_prompt"], tokenizer)
    assert ids == meta["input_ids"], case_dir
    pixel, _ = common.preprocess(path, meta["image_size"])
    _, feats = golden.encode_image(model, pixel)
    out, gen, _ = golden.greedy(model, golden.splice(model, ids, feats), len(meta["greedy_ids"]), False)
    logits = out.logits[0, -1, : common.VOCAB]
    files = meta["files"]
    want_logits = read_f32(os.path.join(case_dir, "logits.f32"), files["logits.f32"])
    want_feats = read_f32(os.path.join(case_dir, "image_features.f32"), files["image_features.f32"])
    assert torch.allclose(logits, want_logits, rtol=0, atol=1e-6), (case_dir, float((logits - want_logits).abs().max()))
    assert torch.allclose(feats[0], want_feats, rtol=0, atol=1e-6), case_dir
    assert gen == meta["greedy_ids"], case_dir
    return True


def main():
    """Runs every check; prints one line per case."""
    from transformers import LlavaForConditionalGeneration

    tokenizer = common.load_tokenizer()
    for name in checkpoints.CASES:
        root = os.path.join(common.CHECKPOINTS, name)
        llava = from_llava(os.path.join(root, "llava"))
        hf = LlavaForConditionalGeneration.from_pretrained(os.path.join(root, "hf"), torch_dtype=torch.float32)
        same_tensors(llava.state_dict(), hf.state_dict())
        checked = []
        for d in sorted(glob.glob(os.path.join(common.GOLDEN, name + "-*", "case.json"))):
            meta = json.load(open(d))
            if meta["checkpoint"] == common.rel(root) and "lora" not in meta:
                if check_golden(llava, tokenizer, os.path.dirname(d)):
                    checked.append(os.path.basename(os.path.dirname(d)))
        print("ok", name, "layouts identical; goldens reproduced from llava layout:", checked)
        if name == "tiny":
            merged = checkpoints.merge_lora(llava.state_dict(), os.path.join(common.CHECKPOINTS, "lora", "adapter"))
            llava.load_state_dict(merged, strict=True)
            assert check_golden(llava, tokenizer, os.path.join(common.GOLDEN, "lora-shapes"))
            print("ok lora: golden reproduced from tiny/llava + adapter")


if __name__ == "__main__":
    main()
