#!/usr/bin/env python3
"""Train a small PancapChain (LLaVA-1.5 architecture) from scratch on the scene tuples.

  * Tokenizer: a LLaMA-style SentencePiece BPE (byte fallback, digits split,
    identity normalisation) trained with tools/reference/train_tokenizer.py's
    settings on the training tuples plus that script's corpus, 1000 pieces
    (bos 1, eos 2), so the llava-hf embedding has 1008 rows with <image> at 1000
    exactly like the reference checkpoints (tools/reference/common.py).
  * Model: transformers' LlavaForConditionalGeneration: CLIP-style ViT at 128 px,
    patch 16 (64 image tokens), width 192 x 4 layers, quick_gelu, position
    table initialised to 2-D sin-cos (sincos_positions); mlp2x_gelu
    projector 192 -> 256 -> 256; LLaMA decoder width 256 x 4 layers, SwiGLU FFN
    688, RMSNorm, RoPE, untied lm_head. Features from the second-to-last vision
    layer with CLS dropped, as LLaVA-1.5.
  * Data: each batch holds tuples of one stage (drawn uniformly) and of
    similar lengths (draw_batch), so padding is small; each tuple becomes the vicuna_v1 conversation
    "{system} USER: <image>\\n{prompt} ASSISTANT: {answer}</s>"; the prompt is
    tokenised as LLaVA's tokenizer_image_token does and the answer as
    sp.encode(answer) + </s>; the loss covers only the answer tokens (and </s>).
    Images go through LLaVA's preprocessing: expand2square with the CLIP mean
    colour, then CLIPImageProcessor at 128 px (cached once as uint8).
  * Optimiser: AdamW lr 1e-3, wd 0.01, linear warm-up then cosine to 10 %. The
    number of steps is sized to --minutes from the measured speed (after 10
    steps, then re-sized every 10 steps from the mean speed so far, and the
    run stops at the budget) unless fixed with --steps; it is stored in the
    checkpoint, so a run resumed in several pieces follows the same schedule.
  * bf16 autocast when the CPU has AMX or AVX512-BF16, or on a GPU (--bf16
    auto|on|off); --device cuda trains on a GPU (training/recipe.sh).
  * --init starts from another run's weights (a curriculum's) with a fresh
    optimiser and schedule; --tokenizer reuses a trained tokenizer.model.

Writes RUN/tokenizer.model, RUN/ckpt.pt (every --save-every seconds and at the
end; --resume continues it), RUN/loss.tsv (step, seconds, stage, loss, lr) and
RUN/val.tsv (the loss per stage on the validation split at every checkpoint).

Usage: python training/train.py --data training/data --run training/runs/tiny --minutes 120
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
import common  # noqa: E402
import train_tokenizer  # noqa: E402

sys.path.insert(0, HERE)
import scenes as scene_engine  # noqa: E402

IMAGE_SIZE = 128
IGNORE = -100
VISION = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3, patch_size=16,
              num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=192)
TEXT = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=4096,
            hidden_act="silu", bos_token_id=common.BOS, eos_token_id=common.EOS, tie_word_embeddings=False)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def train_tokenizer_model(tuples, dst):
    """Trains the run's tokenizer.model (skipped when dst exists, e.g. on resume)."""
    if os.path.exists(dst):
        return
    lines = [common.SYSTEM + " USER: <image>"]
    for t in tuples:
        lines.append(t["prompt"] + " ASSISTANT:")
        lines.append(t["answer"])
    lines += train_tokenizer.corpus(seed=20240601)
    train_tokenizer.OUT_DIR = os.path.dirname(dst)  # the trainer writes OUT_DIR/<name>.model
    train_tokenizer.train(os.path.splitext(os.path.basename(dst))[0], common.VOCAB, lines)


def build_model():
    """A freshly initialised (seeded) llava-hf model of the training geometry."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=IMAGE_SIZE, **VISION).to_dict(),
        text_config=LlamaConfig(vocab_size=common.HF_VOCAB, pad_token_id=common.HF_PAD_TOKEN, **TEXT).to_dict(),
        image_token_index=common.HF_IMAGE_TOKEN, projector_hidden_act="gelu",
        vision_feature_select_strategy="default", vision_feature_layer=-2,
        pad_token_id=common.HF_PAD_TOKEN, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg)
    with torch.no_grad():
        model.vision_tower.vision_model.embeddings.position_embedding.weight.copy_(
            sincos_positions(IMAGE_SIZE // VISION["patch_size"], VISION["hidden_size"]))
    return model


def sincos_positions(grid, width):
    """The ViT's position table at initialisation [1 + grid² × width]: the CLS
    row zero, then per patch (row-major) width/4 frequencies of sin and cos of
    its row, then of its column. The default N(0, 0.02) init leaves position
    ~20× weaker than a patch's content (std ≈ 0.5 at init), and the first full
    run never grew it (std 0.024 after 1,695 steps against content 4.2): its
    ViT was blind to where a patch lies and the model never localised. A
    table of unit amplitude carries position from step 0; it is still learned
    (the architecture and the export are unchanged)."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # [width/4]
    pos = torch.arange(grid, dtype=torch.float64)[:, None] * omega  # [grid × width/4]
    rows = torch.cat([pos.sin(), pos.cos()], 1)  # [grid × width/2]
    table = torch.cat([rows.repeat_interleave(grid, 0), rows.repeat(grid, 1)], 1)  # [grid² × width]
    return torch.cat([torch.zeros(1, width, dtype=torch.float64), table]).float()


def pixel_cache(data_dir, split, scenes):
    """uint8 [N x S x S x 3] of every image after expand2square, bicubic resize
    and centre crop (CLIPImageProcessor), cached as an .npy beside the split."""
    path = os.path.join(data_dir, split, "pixels_%d.npy" % IMAGE_SIZE)
    if os.path.exists(path):
        arr = np.load(path, mmap_mode="r")
        if arr.shape[0] == len(scenes):
            return arr
    from concurrent.futures import ThreadPoolExecutor

    from transformers.image_utils import ChannelDimension

    proc = common.image_processor(IMAGE_SIZE)
    bg = tuple(int(x * 255) for x in proc.image_mean)
    out = np.zeros((len(scenes), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)  # [N × S × S × 3]
    last = ChannelDimension.LAST

    def one(i):
        img = common.expand2square(Image.open(os.path.join(data_dir, split, scenes[i]["image"])).convert("RGB"), bg)
        r = proc.resize(np.array(img), size=proc.size, resample=proc.resample, input_data_format=last)
        out[i] = proc.center_crop(r, size=proc.crop_size, input_data_format=last)

    with ThreadPoolExecutor(os.cpu_count()) as pool:  # PIL's decode and resize run outside the GIL
        list(pool.map(one, range(len(scenes))))
    np.save(path, out)
    return out


MEAN = torch.tensor(common.CLIP_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(common.CLIP_STD).view(1, 3, 1, 1)


def normalise(u8):
    """uint8 [B × S × S × 3] -> CLIP pixel_values [B × 3 × S × S] (rescale, normalise)."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255
    return (x - MEAN) / STD


def encode_examples(tuples, tok, index_of):
    """Per stage, (image index, prompt ids with one IMAGE_TOKEN_INDEX, answer ids + eos) of its tuples."""
    out = {}
    for t in tuples:
        prompt = common.tokenizer_image_token(common.vicuna_prompt(t["prompt"]), tok)
        answer = tok.sp_model.encode(t["answer"]) + [common.EOS]
        out.setdefault(t["stage"], []).append((index_of[t["image"]], prompt, answer))
    return out


BUCKETS = 8  # a batch is one of this many length-sorted slices of a random draw


def stage_pool(stages, weights):
    """The list draw_batch draws a stage from: each of stages (1-based)
    repeated weights[stage - 1] times, so [1, 1, 1, 1] keeps the uniform
    draw and [3, 3, 1, 1] draws stages 1-2 three times as often."""
    return [st for st in stages for _ in range(weights[st - 1])]


def draw_batch(examples, stages, size, seed, step):
    """(stage, batch) of a step, a pure function of (seed, step) so a resumed run
    draws the same batches: a stage drawn uniformly from stages (a stage
    listed twice is drawn twice as often), BUCKETS × size examples
    of it drawn with replacement and sorted by length, and one of the BUCKETS
    slices chosen uniformly (every drawn example is equally likely to be used,
    and a batch's lengths are alike, so padding is small)."""
    rng = random.Random(seed * 1_000_003 + step)
    stage = rng.choice(stages)
    pool = examples[stage]
    draw = sorted((pool[rng.randrange(len(pool))] for _ in range(BUCKETS * size)), key=lambda e: len(e[1]) + len(e[2]))
    k = rng.randrange(BUCKETS)
    return stage, draw[k * size:(k + 1) * size]


@torch.no_grad()
def validation(model, examples, pixels, size, bf16):
    """Mean answer-token loss per stage over the first `size` tuples of each
    stage of the validation split, in batches of 8."""
    model.eval()
    out = {}
    for st, ex in sorted(examples.items()):
        ex = ex[:size]
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            losses = [batch_loss(model, ex[i:i + 8], pixels)[0].item() * len(ex[i:i + 8])
                      for i in range(0, len(ex), 8)]
        out[st] = sum(losses) / len(ex)
    model.train()
    return out


def image_features(model, pixel_values):
    """[B × 3 × S × S] -> projected image tokens [B × 64 × hidden] (layer -2,
    CLS dropped)."""
    hs = model.vision_tower(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
    return model.multi_modal_projector(hs)


def load_checkpoint(path):
    """A checkpoint save wrote, on the CPU (it holds more than tensors)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def load_run(run):
    """(the trained model of RUN/ckpt.pt in eval mode, the checkpoint)."""
    c = load_checkpoint(os.path.join(run, "ckpt.pt"))
    model = build_model()
    model.load_state_dict(c["model"])
    return model.eval(), c


def collate(model, examples, feats):
    """The right-padded inputs of a batch given its image features [B × P × H]:
    embeddings [B × L × H] (image features spliced where <image> was, zeros
    past the end), attention mask [B × L] and labels [B × L] (IGNORE but on
    the answer tokens). Built as whole tensors (one embedding lookup, one
    splice), so that a batch costs a few kernel launches on a GPU."""
    n, p = feats.shape[:2]
    rows = []  # per example: (token ids with 0 in the image slots, first image slot, answer start)
    for _, prompt, answer in examples:
        k = prompt.index(common.IMAGE_TOKEN_INDEX)
        ids = prompt[:k] + [0] * p + prompt[k + 1:] + answer
        rows.append((ids, k, len(ids) - len(answer)))
    length = max(len(r[0]) for r in rows)
    ids = torch.zeros(n, length, dtype=torch.long)  # [B × L]
    mask = torch.zeros(n, length, dtype=torch.long)
    image = torch.zeros(n, length, dtype=torch.bool)
    y = torch.full((n, length), IGNORE, dtype=torch.long)
    for b, (t, k, a) in enumerate(rows):
        ids[b, :len(t)] = torch.tensor(t)
        mask[b, :len(t)] = 1
        image[b, k:k + p] = True
        y[b, a:len(t)] = ids[b, a:len(t)]
    dev = feats.device
    ids, mask, image, y = ids.to(dev), mask.to(dev), image.to(dev), y.to(dev)
    x = model.get_input_embeddings()(ids) * mask.unsqueeze(-1)  # [B × L × H], zeros past the end
    x = x.masked_scatter(image.unsqueeze(-1).expand_as(x), feats.to(x.dtype))  # row-major: feats[b, i] in slot i
    return x, mask, y


def batch_loss(model, examples, pixels, aux=None):
    """(mean cross-entropy over the answer tokens of a batch of examples, the
    auxiliary patch loss): with aux = (head, labels), the cross-entropy of
    head's classes of each projected image token against labels [N × P] of
    the batch's images (patch_labels); else 0."""
    idx = [e[0] for e in examples]
    feats = image_features(model, normalise(pixels[idx]).to(model.device))  # [B × P × H]
    x, mask, y = collate(model, examples, feats)
    logits = model.language_model(inputs_embeds=x, attention_mask=mask).logits  # [B × L × V]
    lm = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                           y[:, 1:].reshape(-1), ignore_index=IGNORE)
    if aux is None:
        return lm, torch.zeros((), device=lm.device)
    head, labels = aux
    z = head(feats).float()  # [B × P × classes]
    target = torch.from_numpy(labels[idx]).to(z.device)  # [B × P]
    return lm, torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), target.reshape(-1))


def patch_labels(scenes):
    """int64 [N × P]: per image and patch (row-major, as the image tokens), 0
    for background or 1 + the SHAPES index of the smallest entity whose box
    holds the patch's centre (boxes in the model's 0-1000 square frame). The
    targets of the auxiliary loss (--aux-weight), which keeps the image
    tokens telling their patches apart while the decoder learns to read them."""
    grid = IMAGE_SIZE // VISION["patch_size"]
    out = np.zeros((len(scenes), grid * grid), dtype=np.int64)
    for i, sc in enumerate(scenes):
        ents = sorted(sc["entities"], key=lambda e: (e["box"][2] - e["box"][0]) * (e["box"][3] - e["box"][1]))
        for r in range(grid):
            for c in range(grid):
                x, y = (c + 0.5) * 1000 / grid, (r + 0.5) * 1000 / grid
                for e in ents:
                    b = e["box"]
                    if b[0] <= x < b[2] and b[1] <= y < b[3]:
                        out[i, r * grid + c] = 1 + scene_engine.SHAPES.index(e["tag"])
                        break
    return out


def lr_at(step, total, base, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def cpu_has_bf16():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return torch.backends.mkldnn.is_available() and ("amx_bf16" in flags or "avx512_bf16" in flags)


def save(path, model, head, opt, state):
    tmp = path + ".tmp"
    c = {"model": model.state_dict(), "optim": opt.state_dict(), "state": state, "rng": {"torch": torch.get_rng_state()}}
    if head is not None:
        c["aux_head"] = head.state_dict()
    torch.save(c, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--run", default=os.path.join(HERE, "runs", "tiny"))
    ap.add_argument("--minutes", type=float, default=120, help="training time budget (sizes the schedule)")
    ap.add_argument("--steps", type=int, default=0,
                    help="fix the number of steps instead of sizing it to --minutes (with --resume: the new total)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=float, default=0.03, help="warm-up fraction of the steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (training/recipe.sh)")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="bf16 autocast (auto: on a GPU, or a CPU with AMX or AVX512-BF16)")
    ap.add_argument("--save-every", type=float, default=300, help="seconds between checkpoints (and validations)")
    ap.add_argument("--val-size", type=int, default=32, help="validation tuples per stage")
    ap.add_argument("--resume", action="store_true", help="continue RUN/ckpt.pt")
    ap.add_argument("--init", help="start from this checkpoint's weights (and aux head) with a fresh optimiser and "
                                   "schedule, e.g. a curriculum run's ckpt.pt")
    ap.add_argument("--tokenizer", help="use this tokenizer.model (copied into RUN) instead of training one on --data")
    ap.add_argument("--cache-only", action="store_true",
                    help="only build the pixel caches of --data's train and val splits (recipe.sh prepares data with it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aux-weight", type=float, default=0,
                    help="weight of the auxiliary patch loss (a linear head, not exported, classifying each image "
                         "token as background or a shape; 0: none)")
    ap.add_argument("--stage-weights", default="1,1,1,1", type=lambda v: [int(x) for x in v.split(",")],
                    help="relative frequency of stages 1-4 in the batches (the default draws them uniformly)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    scenes = read_jsonl(os.path.join(a.data, "train", "scenes.jsonl"))
    val_scenes = read_jsonl(os.path.join(a.data, "val", "scenes.jsonl"))
    pixels = pixel_cache(a.data, "train", scenes)
    val_pixels = pixel_cache(a.data, "val", val_scenes)
    if a.cache_only:
        return
    os.makedirs(a.run, exist_ok=True)
    tuples = read_jsonl(os.path.join(a.data, "train", "tuples.jsonl"))
    tok_path = os.path.join(a.run, "tokenizer.model")
    if a.tokenizer and not os.path.exists(tok_path):
        shutil.copyfile(a.tokenizer, tok_path)
    train_tokenizer_model(tuples, tok_path)
    tok = common.load_tokenizer(tok_path)
    examples = encode_examples(tuples, tok, {s["image"]: i for i, s in enumerate(scenes)})
    val_examples = encode_examples(read_jsonl(os.path.join(a.data, "val", "tuples.jsonl")), tok,
                                   {s["image"]: i for i, s in enumerate(val_scenes)})
    for st, ex in sorted(examples.items()):
        lengths = [len(p) + len(q) + 63 for _, p, q in ex]
        print("stage %d: %d examples, %.0f tokens on average, %d at most" % (
            st, len(ex), sum(lengths) / len(lengths), max(lengths)), flush=True)
    stages = stage_pool(sorted(examples), a.stage_weights)

    model = build_model().to(a.device)
    # the auxiliary patch classifier (never exported): background or a shape
    head = torch.nn.Linear(TEXT["hidden_size"], 1 + len(scene_engine.SHAPES)).to(a.device) if a.aux_weight > 0 else None
    aux = (head, patch_labels(scenes)) if head is not None else None
    params = [*model.parameters(), *(head.parameters() if head is not None else [])]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95), weight_decay=0.01)
    ckpt = os.path.join(a.run, "ckpt.pt")
    state = {"step": 0, "total": a.steps, "seconds": 0.0, "seed": a.seed, "batch": a.batch, "sized": not a.steps}
    torch.manual_seed(a.seed)

    def load_weights(c):
        model.load_state_dict(c["model"])
        if head is not None and c.get("aux_head") is not None:
            head.load_state_dict(c["aux_head"])

    if a.init and not (a.resume and os.path.exists(ckpt)):
        c = load_checkpoint(a.init)
        load_weights(c)
        print("initialised from %s (its step %d)" % (a.init, c["state"]["step"]), flush=True)
    if a.resume and os.path.exists(ckpt):
        c = load_checkpoint(ckpt)
        load_weights(c)
        opt.load_state_dict(c["optim"])
        state = c["state"]
        torch.set_rng_state(c["rng"]["torch"])
        if a.steps:
            state["total"] = a.steps  # extend (or cut) a run: the cosine stretches to the new end
            state["sized"] = False
        print("resumed at step %d of %d" % (state["step"], state["total"]), flush=True)
    bf16 = a.bf16 == "on" or (a.bf16 == "auto" and (model.device.type == "cuda" or cpu_has_bf16()))
    nparams = sum(p.numel() for p in model.parameters())
    print("%.2fM parameters on %s, bf16 autocast %s, %d threads" % (nparams / 1e6, model.device, bf16, a.threads),
          flush=True)

    log = open(os.path.join(a.run, "loss.tsv"), "a" if state["step"] else "w")
    if state["step"] == 0:
        log.write("step\tseconds\tstage\tloss\tlr\taux\n")
    val_log = open(os.path.join(a.run, "val.tsv"), "a" if state["step"] else "w")
    if state["step"] == 0:
        val_log.write("step\t" + "\t".join("stage%d" % st for st in sorted(val_examples)) + "\tmean\n")

    def checkpoint():
        save(ckpt, model, head, opt, state)
        v = validation(model, val_examples, val_pixels, a.val_size, bf16)
        val_log.write("%d\t%s\t%.4f\n" % (state["step"], "\t".join("%.4f" % v[st] for st in sorted(v)),
                                           sum(v.values()) / len(v)))
        val_log.flush()
        print("step %d: validation loss %s" % (state["step"], ", ".join("%d: %.3f" % kv for kv in sorted(v.items()))),
              flush=True)
    model.train()
    budget = a.minutes * 60
    t0, last_save = time.time() - state["seconds"], time.time()
    probe = 10  # steps timed to size the schedule, and between re-sizings
    while state["total"] == 0 or state["step"] < state["total"]:
        if state.get("sized") and state["seconds"] >= budget:
            break  # the machine got slower than the re-sized schedule expected
        step = state["step"]
        total = state["total"] or 10 ** 9
        lr = lr_at(step, total, a.lr, max(probe * 3, int(a.warmup * state["total"])))
        for g in opt.param_groups:
            g["lr"] = lr
        stage, batch = draw_batch(examples, stages, a.batch, a.seed, step)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, aux_loss = batch_loss(model, batch, pixels, aux)
        opt.zero_grad(set_to_none=True)
        (loss + a.aux_weight * aux_loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        state["seconds"] = time.time() - t0
        log.write("%d\t%.1f\t%d\t%.4f\t%.6f\t%.4f\n" % (state["step"], state["seconds"], stage, loss.item(), lr,
                                                        aux_loss.item()))
        log.flush()
        if state["step"] % 10 == 0:
            print("step %d/%s  %.0fs  loss %.4f  aux %.4f  lr %.2e" % (
                state["step"], state["total"] or "?", state["seconds"], loss.item(), aux_loss.item(), lr), flush=True)
        if state.get("sized") and state["step"] % probe == 0:
            # the steps left at the mean speed so far fill what is left of the budget
            per = state["seconds"] / state["step"]
            first = state["total"] == 0
            state["total"] = max(state["step"] + 1, state["step"] + int((budget - state["seconds"]) / per))
            if first:
                print("%.2f s/step: %d steps fit %.0f minutes" % (per, state["total"], a.minutes), flush=True)
        if time.time() - last_save > a.save_every:
            checkpoint()
            last_save = time.time()
    checkpoint()
    print("done: %d steps in %.0f s" % (state["step"], state["seconds"]), flush=True)


if __name__ == "__main__":
    main()
