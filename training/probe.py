#!/usr/bin/env python3
"""Does a training checkpoint look at the image? A quick probe of RUN/ckpt.pt.

For each stage, the validation loss of --tuples validation tuples with their
own images and with the images of other scenes (each tuple paired with the
image 7 scenes on): a model that ignores the image scores both alike. Then
stage 1 (localize) greedily on --images validation scenes, with their own and
with other scenes' images: boxes matched one-to-one to the true ones (greedy
by IoU), location F1 at IoU >= 0.5. Also, per decoder layer, the share of
the answer tokens' attention that lands on the image tokens, and over how
many of them it spreads. The first full run scored the same loss
with shuffled images (its ViT had no usable position signal); a run that
localises must open a gap here long before `pancap eval` shows it.

Usage: python training/probe.py --run training/runs/s1 [--data training/data] [--images 24]
"""

import argparse
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
import common  # noqa: E402
import train  # noqa: E402

BOX = re.compile(r"\[\[(\d+), (\d+), (\d+), (\d+)\]\]")


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched(pred, true, thresh=0.5):
    """Pairs with IoU >= thresh of a greedy one-to-one matching by IoU."""
    pairs = sorted(((iou(p, t), i, j) for i, p in enumerate(pred) for j, t in enumerate(true)), reverse=True)
    used_p, used_t, hits = set(), set(), 0
    for v, i, j in pairs:
        if v < thresh:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            hits += 1
    return hits


@torch.no_grad()
def image_attention(model, examples, pixels):
    """Per decoder layer, (the mean share of the answer tokens' attention (all
    heads) that lands on the 64 image tokens, the effective number of image
    tokens it spreads over: exp of the entropy of the attention within
    them) over a batch of examples. A decoder that ignores the image keeps
    the share near 0; one that reads it as an average spreads over ~64; one
    that looks at the entities concentrates on a few."""
    feats = train.image_features(model, train.normalise(pixels[[e[0] for e in examples]]))
    x, mask, _ = train.collate(model, examples, feats)
    att = model.language_model(inputs_embeds=x, attention_mask=mask, output_attentions=True).attentions
    shares = []
    for a in att:  # [B × heads × L × L]
        per = []
        for b, (_, prompt, answer) in enumerate(examples):
            k = prompt.index(common.IMAGE_TOKEN_INDEX)
            n = len(prompt) - 1 + feats.shape[1]  # the answer's first position
            rows = a[b, :, n - 1:n - 1 + len(answer)]  # the positions that predict the answer tokens
            img = rows[..., k:k + feats.shape[1]]  # [heads × answer × 64]
            share = img.sum(-1, keepdim=True)
            p = img / share.clamp_min(1e-12)  # attention within the image tokens
            spread = torch.exp(-(p * p.clamp_min(1e-12).log()).sum(-1))  # effective number of tokens attended
            per.append((share.mean().item(), spread.mean().item()))
        shares.append(tuple(sum(v) / len(per) for v in zip(*per)))
    return shares


@torch.no_grad()
def localize(model, tok, example, pixels, max_new=220):
    """The greedy stage-1 answer of one (image index, prompt ids, answer ids) example."""
    idx, prompt, _ = example
    feats = train.image_features(model, train.normalise(pixels[[idx]]))[0]
    embed = model.get_input_embeddings()
    k = prompt.index(common.IMAGE_TOKEN_INDEX)
    x = torch.cat([embed(torch.tensor(prompt[:k])), feats, embed(torch.tensor(prompt[k + 1:]))])[None]
    out = model.language_model.generate(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long),
                                        max_new_tokens=max_new, do_sample=False, eos_token_id=common.EOS,
                                        pad_token_id=common.EOS)
    return tok.sp_model.decode([t for t in out[0].tolist() if t < tok.sp_model.get_piece_size()])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--tuples", type=int, default=48)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    tok = common.load_tokenizer(os.path.join(a.run, "tokenizer.model"))
    scenes = train.read_jsonl(os.path.join(a.data, "val", "scenes.jsonl"))
    pixels = train.pixel_cache(a.data, "val", scenes)
    examples = train.encode_examples(train.read_jsonl(os.path.join(a.data, "val", "tuples.jsonl")), tok,
                                     {s["image"]: i for i, s in enumerate(scenes)})
    model, state = train.load_run(a.run)
    print("checkpoint at step %d" % state["state"]["step"])

    def other(ex):  # each tuple with the image of the scene 7 on
        return [(ex[(i + 7) % len(ex)][0], p, q) for i, (_, p, q) in enumerate(ex)]

    own = train.validation(model, examples, pixels, a.tuples, False)
    others = train.validation(model, {st: other(ex[:a.tuples]) for st, ex in examples.items()}, pixels,
                              a.tuples, False)
    model.eval()  # validation leaves the model in training mode
    for st in sorted(own):
        print("stage %d loss: own image %.4f, other image %.4f" % (st, own[st], others[st]))

    for st in sorted(examples):
        shares = image_attention(model, examples[st][:8], pixels)
        print("stage %d: attention on the image tokens per layer (share, effective tokens): %s" % (
            st, " ".join("%.3f/%.1f" % v for v in shares)))

    ex = examples[1][:a.images]
    for name, e in (("own image", ex), ("other image", other(ex))):
        hits = n_pred = n_true = 0
        for (_, _, answer), example in zip(ex, e):
            pred = [tuple(map(int, m)) for m in BOX.findall(localize(model, tok, example, pixels))]
            true = [tuple(map(int, m)) for m in BOX.findall(tok.sp_model.decode(answer[:-1]))]
            hits += matched(pred, true)
            n_pred, n_true = n_pred + len(pred), n_true + len(true)
        p, r = hits / max(n_pred, 1), hits / max(n_true, 1)
        print("stage 1 greedy, %s: %d boxes predicted, %d true, location F1 %.3f (P %.3f R %.3f)" % (
            name, n_pred, n_true, 2 * p * r / max(p + r, 1e-9), p, r))


if __name__ == "__main__":
    main()
