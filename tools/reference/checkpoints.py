"""Builds the tiny random-weight LLaVA checkpoints of testdata/checkpoints/
deterministically.

Every case is written in both layouts:
  <case>/hf/     LlavaForConditionalGeneration.save_pretrained (llava-hf)
  <case>/llava/  the authors' LlavaLlamaForCausalLM layout, with the CLIP
  <case>/clip/   tower as a CLIPVisionModel directory, found via "../clip"
and the LoRA case as a PEFT adapter on top of `tiny` (lora/adapter/).
"""

import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file

import common

SEED_VISION, SEED_PROJECTOR, SEED_TEXT, SEED_LORA = 1001, 1002, 1003, 1004
LORA_R, LORA_ALPHA = 8, 16
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name -> (image size, stored dtype, llava-layout weight format, clip format)
CASES = {
    "tiny": (56, torch.float32, "safetensors", "safetensors"),
    "tiny-bf16": (56, torch.bfloat16, "safetensors-sharded", "safetensors"),
    "tiny-fp16": (56, torch.float16, "bin-sharded", "bin"),
    "clip336": (336, torch.float32, "safetensors", "safetensors"),
}
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def hf_config(image_size):
    """The llava-hf LlavaConfig of a case."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text = LlamaConfig(vocab_size=common.HF_VOCAB, pad_token_id=common.HF_PAD_TOKEN, **common.TEXT)
    vision = CLIPVisionConfig(image_size=image_size, **common.VISION)
    return LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=common.HF_IMAGE_TOKEN,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        pad_token_id=common.HF_PAD_TOKEN,
        tie_word_embeddings=False,
    )


def is_norm(name):
    """LayerNorm (CLIP) and RMSNorm (LLaMA) parameters."""
    module = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    return "norm" in module or module == "pre_layrnorm"


def random_tensor(name, shape, gen):
    """A weight of the given name drawn so activations stay non-degenerate:
    unit-gain linears (q/k doubled for sharper attention), unit token
    embeddings, a wide lm_head for spread logits, and norms/biases far from
    the identity so a bug in them shows."""
    n = torch.randn(shape, generator=gen, dtype=torch.float32)
    if is_norm(name):
        return 1 + 0.1 * n if name.endswith("weight") else 0.1 * n
    if name.endswith("bias"):
        return 0.05 * n
    if "embed_tokens" in name or name.endswith("class_embedding"):
        return n
    if "position_embedding" in name:
        return 0.5 * n
    if "lm_head" in name:
        return 3.0 * n / math.sqrt(shape[1])
    fan_in = math.prod(shape[1:])
    gain = 2.0 if ("q_proj" in name or "k_proj" in name) else 1.0
    return gain * n / math.sqrt(fan_in)


def build_hf(image_size):
    """A fp32 LlavaForConditionalGeneration with deterministic random weights.
    The projector and the LLM draw from their own seeds, so every case shares
    them; the vision tower depends on the image size (position embedding)."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(hf_config(image_size)).eval()
    gens = {
        "vision_tower.": torch.Generator().manual_seed(SEED_VISION),
        "multi_modal_projector.": torch.Generator().manual_seed(SEED_PROJECTOR),
        "language_model.": torch.Generator().manual_seed(SEED_TEXT),
    }
    sd = model.state_dict()
    new = {}
    for name, t in sd.items():
        gen = next(g for p, g in gens.items() if name.startswith(p))
        new[name] = random_tensor(name, tuple(t.shape), gen)
    model.load_state_dict(new, strict=True)
    return model


def to_llava(sd):
    """Splits an llava-hf state dict into the authors' LLM+projector dict
    (vocab cut back to the tokenizer's 1000 rows) and the CLIP tower's dict."""
    llm, clip = {}, {}
    for name, t in sd.items():
        t = t.detach().clone().contiguous()
        if name.startswith("vision_tower."):
            clip[name[len("vision_tower."):]] = t
        elif name.startswith("multi_modal_projector."):
            idx = {"linear_1": "0", "linear_2": "2"}[name.split(".")[1]]
            llm["model.mm_projector." + idx + "." + name.split(".")[2]] = t
        elif name == "language_model.lm_head.weight":
            llm["lm_head.weight"] = t[: common.VOCAB].clone()
        elif name == "language_model.model.embed_tokens.weight":
            llm["model.embed_tokens.weight"] = t[: common.VOCAB].clone()
        elif name.startswith("language_model."):
            llm[name[len("language_model."):]] = t
        else:
            raise KeyError(name)
    return llm, clip


def llava_config(dtype, vision_tower="../clip"):
    """config.json of the authors' layout (LLaVA-1.5's keys)."""
    t = common.TEXT
    return {
        "_name_or_path": "pancap-tiny",
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        "attention_bias": False,
        "bos_token_id": common.BOS,
        "eos_token_id": common.EOS,
        "freeze_mm_mlp_adapter": False,
        "hidden_act": "silu",
        "hidden_size": t["hidden_size"],
        "image_aspect_ratio": "pad",
        "initializer_range": 0.02,
        "intermediate_size": t["intermediate_size"],
        "max_position_embeddings": t["max_position_embeddings"],
        "mm_hidden_size": common.VISION["hidden_size"],
        "mm_patch_merge_type": "flat",
        "mm_projector_lr": None,
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": vision_tower,
        "num_attention_heads": t["num_attention_heads"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_key_value_heads": t["num_key_value_heads"],
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": t["rms_norm_eps"],
        "rope_scaling": None,
        "rope_theta": t["rope_theta"],
        "tie_word_embeddings": False,
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
        "torch_dtype": DTYPE_NAMES[dtype],
        "transformers_version": "4.37.2",
        "tune_mm_mlp_adapter": False,
        "use_cache": True,
        "use_mm_proj": True,
        "vocab_size": common.VOCAB,
    }


def save_weights(sd, directory, fmt):
    """Writes a state dict as model.safetensors, two safetensors shards, or two
    PyTorch .bin shards (torch.save zip), with the HF index files."""
    if fmt == "safetensors":
        save_file(sd, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
        return
    names = list(sd)
    half = len(names) // 2
    shards = [names[:half], names[half:]]
    if fmt == "safetensors-sharded":
        pattern, index = "model-{:05d}-of-00002.safetensors", "model.safetensors.index.json"
    elif fmt == "bin-sharded":
        pattern, index = "pytorch_model-{:05d}-of-00002.bin", "pytorch_model.bin.index.json"
    else:
        raise ValueError(fmt)
    weight_map = {}
    for i, keys in enumerate(shards, 1):
        fname = pattern.format(i)
        part = {k: sd[k] for k in keys}
        if fmt == "bin-sharded":
            torch.save(part, os.path.join(directory, fname))
        else:
            save_file(part, os.path.join(directory, fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in keys})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    common.write_json(os.path.join(directory, index), {"metadata": {"total_size": total}, "weight_map": weight_map})


def save_tokenizer(directory):
    """tokenizer.model, tokenizer_config.json and special_tokens_map.json."""
    common.load_tokenizer().save_pretrained(directory)


def save_clip(clip_sd, image_size, dtype, directory, fmt):
    """The vision tower as a CLIPVisionModel checkpoint with its processor."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    vision = CLIPVisionModel(CLIPVisionConfig(image_size=image_size, **common.VISION))
    vision.load_state_dict(clip_sd, strict=True)
    vision.to(dtype).save_pretrained(directory, safe_serialization=(fmt == "safetensors"))
    common.image_processor(image_size).save_pretrained(directory)


def write_llava(model, image_size, dtype, root, fmt, clip_fmt):
    """<root>/llava/ and <root>/clip/ of the authors' layout."""
    llm, clip = to_llava(model.to(dtype).state_dict())
    model.to(torch.float32)
    for sub in ("llava", "clip"):
        os.makedirs(os.path.join(root, sub))
    save_weights(llm, os.path.join(root, "llava"), fmt)
    common.write_json(os.path.join(root, "llava", "config.json"), llava_config(dtype))
    save_tokenizer(os.path.join(root, "llava"))
    save_clip(clip, image_size, dtype, os.path.join(root, "clip"), clip_fmt)


def write_case(name):
    """Writes testdata/checkpoints/<name>/{hf,llava,clip}."""
    image_size, dtype, fmt, clip_fmt = CASES[name]
    root = os.path.join(common.CHECKPOINTS, name)
    shutil.rmtree(root, ignore_errors=True)
    model = build_hf(image_size)
    hf_dir = os.path.join(root, "hf")
    model.to(dtype).save_pretrained(hf_dir, safe_serialization=True)
    model.to(torch.float32)
    save_tokenizer(hf_dir)
    write_llava(model, image_size, dtype, root, fmt, clip_fmt)
    print("wrote", common.rel(root))


def lora_tensors():
    """The adapter (bf16, as LLaVA's bf16 training saves it) and the new
    projector of non_lora_trainables.bin, both in PEFT/LLaVA naming."""
    gen = torch.Generator().manual_seed(SEED_LORA)
    t = common.TEXT
    h, f = t["hidden_size"], t["intermediate_size"]
    shapes = {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "o_proj": (h, h),
              "gate_proj": (f, h), "up_proj": (f, h), "down_proj": (h, f)}  # (out, in)
    adapter = {}
    for layer in range(t["num_hidden_layers"]):
        for mod in LORA_TARGETS:
            out, inp = shapes[mod]
            block = "self_attn" if mod.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            base = f"base_model.model.model.layers.{layer}.{block}.{mod}"
            a = torch.randn((LORA_R, inp), generator=gen) / math.sqrt(inp)  # [r × in]
            b = 0.1 * torch.randn((out, LORA_R), generator=gen)  # [out × r]
            adapter[base + ".lora_A.weight"] = a.to(torch.bfloat16)
            adapter[base + ".lora_B.weight"] = b.to(torch.bfloat16)
    vh = common.VISION["hidden_size"]
    p = "base_model.model.model.mm_projector."
    projector = {
        p + "0.weight": torch.randn((h, vh), generator=gen) / math.sqrt(vh),  # [hidden × vhidden]
        p + "0.bias": 0.05 * torch.randn((h,), generator=gen),
        p + "2.weight": torch.randn((h, h), generator=gen) / math.sqrt(h),  # [hidden × hidden]
        p + "2.bias": 0.05 * torch.randn((h,), generator=gen),
    }
    projector = {k: v.to(torch.bfloat16).contiguous() for k, v in projector.items()}
    return adapter, projector


def write_lora():
    """testdata/checkpoints/lora/adapter/: adapter_config.json,
    adapter_model.safetensors and non_lora_trainables.bin."""
    root = os.path.join(common.CHECKPOINTS, "lora")
    shutil.rmtree(root, ignore_errors=True)
    d = os.path.join(root, "adapter")
    os.makedirs(d)
    adapter, projector = lora_tensors()
    save_file(adapter, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})
    torch.save(projector, os.path.join(d, "non_lora_trainables.bin"))
    common.write_json(os.path.join(d, "adapter_config.json"), {
        "auto_mapping": None,
        "base_model_name_or_path": "../../tiny/llava",
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": LORA_ALPHA,
        "lora_dropout": 0.05,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": LORA_R,
        "revision": None,
        "target_modules": LORA_TARGETS,
        "task_type": "CAUSAL_LM",
    })
    print("wrote", common.rel(root))


def merge_lora(hf_sd, adapter_dir):
    """The merged llava-hf state dict: W' = (W.float() + (alpha/r)·(B.float() @
    A.float())).to(W.dtype) on every adapted linear, and the projector replaced
    by non_lora_trainables.bin (cast to the base dtype), as LLaVA's
    load_pretrained_model does."""
    from safetensors.torch import load_file

    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    scale = cfg["lora_alpha"] / cfg["r"]
    adapter = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    sd = {k: v.clone() for k, v in hf_sd.items()}
    prefix = "base_model.model."
    for name, a in adapter.items():
        if not name.endswith(".lora_A.weight"):
            continue
        module = name[len(prefix): -len(".lora_A.weight")]
        b = adapter[prefix + module + ".lora_B.weight"]
        key = "language_model." + module + ".weight"
        w = sd[key]
        sd[key] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
    extra = torch.load(os.path.join(adapter_dir, "non_lora_trainables.bin"), map_location="cpu")
    for name, t in extra.items():
        short = name[len("base_model.model.model.mm_projector."):]
        idx, leaf = short.split(".")
        key = "multi_modal_projector." + {"0": "linear_1", "2": "linear_2"}[idx] + "." + leaf
        sd[key] = t.to(sd[key].dtype)
    return sd


def main(names):
    """Writes the named cases ("lora" is the adapter)."""
    for name in names:
        if name == "lora":
            write_lora()
        else:
            write_case(name)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:] or list(CASES) + ["lora"])
