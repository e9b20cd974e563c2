"""Shared pieces of the Python reference: paths, model geometry, the LLaVA
prompt template and tokenisation, image preprocessing and binary writers.

Everything here follows the authors' LLaVA code and Hugging Face transformers
4.37.2 exactly; see ../shared/DESIGN.md §1-§2 and tools/reference/README.md.
"""

import json
import os

import numpy as np
import torch
from PIL import Image

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TESTDATA = os.path.join(REPO, "testdata")
CHECKPOINTS = os.path.join(REPO, "testdata", "checkpoints")
GOLDEN = os.path.join(REPO, "testdata", "golden")
IMAGES = os.path.join(REPO, "testdata", "images")
TOKENIZER_MODEL = os.path.join(REPO, "model", "presets", "tokenizers", "tiny.model")

# LLaVA's placeholder id for the image in input_ids (llava/constants.py).
IMAGE_TOKEN_INDEX = -200
# Rows of the llava-hf embedding/lm_head: the tokenizer's 1000 ids padded to
# a multiple of 16 (like llava-hf's 32000 -> 32064); id 1000 is <image>.
VOCAB = 1000
HF_VOCAB = 1008
HF_IMAGE_TOKEN = 1000
HF_PAD_TOKEN = 1001
BOS, EOS = 1, 2

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# Geometry of the `tiny` preset (DESIGN.md §7).
TEXT = dict(
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    max_position_embeddings=4096,
    hidden_act="silu",
    bos_token_id=BOS,
    eos_token_id=EOS,
    tie_word_embeddings=False,
)
VISION = dict(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    patch_size=14,
    num_channels=3,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=64,
)


def vicuna_prompt(user_text):
    """The vicuna_v1 single-turn conversation of LLaVA with the image first."""
    return SYSTEM + " USER: <image>\n" + user_text + " ASSISTANT:"


def load_tokenizer(path=TOKENIZER_MODEL):
    """The slow LlamaTokenizer with transformers 4.37.2 defaults (legacy)."""
    from transformers import LlamaTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    return LlamaTokenizer(vocab_file=path)


def tokenizer_image_token(prompt, tokenizer):
    """LLaVA's llava/mm_utils.py tokenizer_image_token, verbatim in effect:
    split at <image>, tokenise each chunk with BOS, keep only the first BOS,
    and put IMAGE_TOKEN_INDEX where each <image> was."""
    chunks = [tokenizer(c).input_ids for c in prompt.split("<image>")]
    ids = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    sep = [IMAGE_TOKEN_INDEX] * (offset + 1)
    joined = [e for sub in zip(chunks, [sep] * len(chunks)) for e in sub][:-1]
    for x in joined:
        ids.extend(x[offset:])
    return ids


def image_processor(size):
    """CLIPImageProcessor configured like openai/clip-vit-large-patch14-336,
    at the given square size."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": size},
        resample=3,
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def expand2square(img, background):
    """LLaVA's expand2square: pad to a centred square with a background colour."""
    w, h = img.size
    if w == h:
        return img
    if w > h:
        out = Image.new(img.mode, (w, w), background)
        out.paste(img, (0, (w - h) // 2))
        return out
    out = Image.new(img.mode, (h, h), background)
    out.paste(img, ((h - w) // 2, 0))
    return out


def preprocess(path, size):
    """LLaVA process_images with image_aspect_ratio "pad".

    Returns (pixel_values [3 × S × S] float32, resized [S × S × 3] uint8): the
    second is the 8-bit image after padding, bicubic resize and centre crop,
    before rescaling and normalisation."""
    from transformers.image_utils import ChannelDimension

    proc = image_processor(size)
    img = Image.open(path).convert("RGB")
    sq = expand2square(img, tuple(int(x * 255) for x in proc.image_mean))
    pixel = proc.preprocess(sq, return_tensors="pt")["pixel_values"][0].float().contiguous()
    last = ChannelDimension.LAST
    r = proc.resize(np.array(sq), size=proc.size, resample=proc.resample, input_data_format=last)
    r = proc.center_crop(r, size=proc.crop_size, input_data_format=last)
    resized = np.ascontiguousarray(r, dtype=np.uint8)
    # The 8-bit image must be exactly what the processor normalised.
    again = (torch.from_numpy(resized).permute(2, 0, 1).double() / 255 - torch.tensor(CLIP_MEAN).double()[:, None, None]) / torch.tensor(CLIP_STD).double()[:, None, None]
    assert torch.allclose(again.float(), pixel, atol=1e-5), "resized image does not match pixel_values"
    return pixel, resized


def write_f32(path, tensor):
    """Writes a tensor as raw little-endian float32; returns its shape."""
    a = tensor.detach().to(torch.float32).contiguous().numpy().astype("<f4")
    with open(path, "wb") as f:
        f.write(a.tobytes())
    return list(tensor.shape)


def write_json(path, obj):
    """Writes JSON deterministically (sorted keys, 1-space indent, newline)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def summary(t):
    """Summary statistics of a tensor, for quick human and test comparison."""
    t = t.detach().to(torch.float64).flatten()
    return {
        "mean": float(t.mean()),
        "std": float(t.std(unbiased=False)),
        "min": float(t.min()),
        "max": float(t.max()),
        "l2": float(t.norm()),
    }


def rel(path):
    """Path relative to the repository root, with forward slashes."""
    return os.path.relpath(path, REPO).replace(os.sep, "/")
