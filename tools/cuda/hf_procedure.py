#!/usr/bin/env python3
"""Times the authors' PancapChain procedure in Hugging Face transformers on a
checkpoint of the authors' LLaVA layout (the `hf` step of the GPU bundle,
tools/cuda/bundle-run.sh), for the images/s ratio against `pancap bench`.

The procedure (DESIGN.md §2): one image at a time, four `generate` calls per
image (localize, tag, discover, caption), each preprocessing and re-encoding
the image and re-reading the whole prompt, greedy, KV cache on, in the given
dtype (fp16 on a GPU). Output lengths are forced (min = max new tokens) to the
bench's per-stage lengths so both sides generate the same tokens per stage.
The stage prompts come from `hfprompts` (the server's own tokeniser; the
hand-off lists are empty, as the server's are on random weights).

The model is transformers' LlavaForConditionalGeneration built from the
authors' layout (the same computation as their LlavaLlamaForCausalLM: the
golden tests check both layouts agree, tools/reference/check_layouts.py).
Needs torch and transformers (4.37 or later) and safetensors; Pillow when
present (otherwise the pixels are drawn already normalised and the
preprocessing is not timed, which the JSON says).

Writes one JSON object to --out: device, versions, per-image and per-stage
seconds, images/s and, with --bench (pancap bench's JSON), the ratio of
every bench run's images/s to this procedure's.
"""

import argparse
import glob
import json
import os
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint folder of the authors' layout (config.json, safetensors)")
    p.add_argument("--prompts", required=True, help="JSON of hfprompts: image_token and four stages of input ids")
    p.add_argument("--output-lens", default="150,200,60,450", help="new tokens per stage")
    p.add_argument("--images", type=int, default=2, help="images to caption (fewer when --budget runs out)")
    p.add_argument("--image-size", default="1000x667", help="the synthetic image's size, as pancap bench draws it")
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--budget", type=float, default=0, help="seconds: start no image after this (0: no limit)")
    p.add_argument("--bench", help="pancap bench JSON to compare with")
    p.add_argument("--out", required=True, help="where to write the JSON result")
    return p.parse_args(argv)


def load_state(directory, device):
    """All tensors of a checkpoint folder's safetensors files, on device."""
    from safetensors.torch import load_file

    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if not files:
        sys.exit(f"hf_procedure: no safetensors in {directory}")
    state = {}
    for f in files:
        state.update(load_file(f, device=str(device)))
    return state


def build_model(model_dir, device, dtype):
    """LlavaForConditionalGeneration with the checkpoint's weights, the
    vocabulary padded by 64 rows for the image and pad tokens as llava-hf
    does. Returns (model, image token id)."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    if cfg.get("model_type") != "llava" or cfg.get("mm_projector_type") != "mlp2x_gelu":
        sys.exit(f"hf_procedure: {model_dir} is not a LLaVA-1.5 checkpoint of the authors' layout")
    clip_dir = os.path.normpath(os.path.join(model_dir, cfg["mm_vision_tower"]))
    vocab = cfg["vocab_size"]
    image_token, pad_token, rows = vocab, vocab + 1, vocab + 64
    text = LlamaConfig(
        vocab_size=rows, pad_token_id=pad_token,
        **{k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                               "rms_norm_eps", "max_position_embeddings", "hidden_act", "bos_token_id",
                               "eos_token_id") if k in cfg},
        rope_theta=cfg.get("rope_theta", 10000.0), num_key_value_heads=cfg.get("num_key_value_heads"),
        tie_word_embeddings=False)
    config = LlavaConfig(vision_config=CLIPVisionConfig.from_pretrained(clip_dir).to_dict(),
                         text_config=text.to_dict(), image_token_index=image_token, projector_hidden_act="gelu",
                         vision_feature_select_strategy="default",
                         vision_feature_layer=cfg["mm_vision_select_layer"], pad_token_id=pad_token,
                         tie_word_embeddings=False)
    # Allocate on the device in dtype at once (torch ≥ 2 has device contexts).
    if hasattr(torch.device(device), "__enter__"):
        with torch.device(device):
            model = LlavaForConditionalGeneration._from_config(config, torch_dtype=dtype)
    else:
        model = LlavaForConditionalGeneration._from_config(config, torch_dtype=dtype).to(device)
    state = {}
    for name, t in load_state(model_dir, device).items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            t = torch.cat([t, torch.zeros(rows - t.shape[0], t.shape[1], dtype=t.dtype, device=t.device)])
        if name.startswith("model.mm_projector."):
            idx, leaf = name[len("model.mm_projector."):].split(".")
            state["multi_modal_projector." + {"0": "linear_1", "2": "linear_2"}[idx] + "." + leaf] = t
        else:
            state["language_model." + name] = t
    for name, t in load_state(clip_dir, device).items():
        state["vision_tower." + name] = t
    missing, unexpected = model.load_state_dict(state, strict=False)
    buffers = {n for n, _ in model.named_buffers()}
    if unexpected or set(missing) - buffers:
        sys.exit(f"hf_procedure: weights do not match: missing {sorted(set(missing) - buffers)[:5]}, "
                 f"unexpected {sorted(unexpected)[:5]}")
    return model.to(dtype).eval(), image_token


def pixel_source(clip_dir, size, seed):
    """A function returning the pixel tensor of one generate call, and
    whether it includes the real preprocessing (LLaVA's expand2square +
    CLIPImageProcessor on a seeded noise image of size) or, without Pillow,
    returns pre-drawn normalised pixels."""
    import torch

    w, h = size
    try:
        import numpy as np
        from PIL import Image
        from transformers import CLIPImageProcessor
    except ImportError:
        side = json.load(open(os.path.join(clip_dir, "config.json")))["image_size"]
        pixels = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(seed))
        return (lambda: pixels), False
    proc = CLIPImageProcessor.from_pretrained(clip_dir)
    rgb = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    image = Image.fromarray(rgb, "RGB")

    def preprocess():
        side = max(w, h)  # expand2square with the processor's mean colour, as LLaVA pads
        square = Image.new("RGB", (side, side), tuple(int(x * 255) for x in proc.image_mean))
        square.paste(image, ((side - w) // 2, (side - h) // 2))
        return proc(square, return_tensors="pt")["pixel_values"]

    return preprocess, True


def main(argv):
    args = parse_args(argv)
    import torch
    import transformers

    dtype = getattr(torch, args.dtype)
    lens = [int(x) for x in args.output_lens.split(",")]
    if len(lens) == 1:
        lens *= 4
    prompts = json.load(open(args.prompts))
    if len(lens) != 4 or len(prompts["stages"]) != 4:
        sys.exit("hf_procedure: want four stages of prompts and output lengths")
    size = tuple(int(x) for x in args.image_size.split("x"))
    cuda = args.device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    model, image_token = build_model(args.model, args.device, dtype)
    sync()
    load_s = time.perf_counter() - t0
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    pixels, preprocessed = pixel_source(os.path.normpath(os.path.join(args.model, cfg["mm_vision_tower"])), size, 1)
    ids = [torch.tensor([[image_token if t == prompts["image_token"] else t for t in s]], device=args.device)
           for s in prompts["stages"]]

    def generate(stage, new):
        pv = pixels().to(args.device, dtype)
        with torch.no_grad():
            out = model.generate(input_ids=ids[stage], pixel_values=pv, max_new_tokens=new, min_new_tokens=new,
                                 do_sample=False, use_cache=True, pad_token_id=model.config.pad_token_id)
        return out.shape[1] - ids[stage].shape[1]

    generate(0, 2)  # warm-up: kernels, allocator
    sync()
    start = time.perf_counter()
    images, stage_s, tokens = [], [[] for _ in lens], [0] * 4
    while len(images) < args.images and not (args.budget and images and time.perf_counter() - start > args.budget):
        t_img = time.perf_counter()
        for s, n in enumerate(lens):
            t = time.perf_counter()
            tokens[s] += generate(s, n)
            sync()
            stage_s[s].append(time.perf_counter() - t)
        images.append(time.perf_counter() - t_img)
    total = time.perf_counter() - start
    result = {
        "procedure": "authors': batch 1, four generate calls per image, image re-encoded per call, greedy, "
                     f"forced output lengths {lens}",
        "device": torch.cuda.get_device_name() if cuda else args.device,
        "dtype": args.dtype, "torch": torch.__version__, "transformers": transformers.__version__,
        "preprocessing_timed": preprocessed,
        "prompt_tokens": [len(s) - 1 for s in prompts["stages"]],
        "load_seconds": round(load_s, 3),
        "images": len(images), "seconds": round(total, 3),
        "seconds_per_image": [round(x, 3) for x in images],
        "stage_seconds_mean": [round(sum(x) / len(x), 4) for x in stage_s],
        "stage_tokens": tokens,
        "images_per_s": len(images) / total,
        "output_tokens_per_s": sum(tokens) / total,
    }
    if args.bench and os.path.exists(args.bench):
        bench = json.load(open(args.bench))
        result["vs_bench"] = [{"concurrency": r.get("concurrency"), "images_per_s": r.get("images_per_s"),
                               "ratio": r.get("images_per_s", 0) / result["images_per_s"]}
                              for r in bench.get("runs", [])]
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
