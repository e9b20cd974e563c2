#!/usr/bin/env python3
"""The scene engine: deterministic synthetic images with full panoptic ground truth.

Each scene is 2-8 shapes (circle, square, triangle, star, ring, diamond, cross)
with a colour, a size, a fill pattern and an optional outline, on a background
with a colour, a brightness and a texture. The ground truth holds the five
dimensions of a panoptic caption: tags, boxes (in the model's 0-1000 frame of
the image padded to a square, DESIGN.md section 2), attributes, relations
(left of, above, inside, overlapping, larger than) and the global state.

For every image it writes the four PancapChain training tuples (stage prompts
exactly as DESIGN.md section 2 / chain.Prompt):
  1 localize: all boxes;
  2 tag:      the tags for the given boxes;
  3 discover: the entities missing from a random subset ("None" when none are);
  4 caption:  a caption of a closed grammar with inline <box>[[...]]</box>.

The caption grammar (parsed back by the Go package eval):
  * one global sentence naming the background: brightness, colour, texture;
  * one sentence per entity, in list order, whose noun phrase is
    "<size> <colour> <fill> <tag> <box>[[...]]</box>" optionally followed by
    "with a <dark|light> outline";
  * up to MAX_RELATIONS relation sentences "The <colour> <tag> <verb> <relation>
    the <colour> <tag>." between consecutive entities of the list.
(colour, tag) is unique within a scene, so "the red circle" names one entity.

Output, per split (train/val/test drawn from different seeds):
  DIR/<split>/images/NNNNNN.png
  DIR/<split>/scenes.jsonl   one ground-truth record per image
  DIR/<split>/tuples.jsonl   four training tuples per image

Usage: python training/scenes.py --out training/data --train 20000 --val 200 --test 200
"""

import argparse
import json
import math
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
from prompts import PROMPTS  # noqa: E402  (the exact stage prompts of DESIGN.md section 2)

SHAPES = ["circle", "square", "triangle", "star", "ring", "diamond", "cross"]
COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 220, 40),
    "orange": (245, 140, 20), "purple": (140, 50, 180), "white": (250, 250, 250), "black": (15, 15, 15),
}
FILLS = ["solid", "striped", "dotted"]
OUTLINES = ["none", "dark", "light"]
SIZES = ["small", "medium", "large"]
BACKGROUNDS = {"gray": (128, 128, 128), "blue": (70, 110, 170), "green": (90, 150, 90),
               "brown": (140, 100, 60), "pink": (220, 150, 170)}
BRIGHTNESS = ["bright", "dark"]
TEXTURES = ["plain", "striped", "dotted", "noisy"]
RELATIONS = ["left of", "above", "inside", "overlapping", "larger than"]
# Image sizes (W, H): square and both orientations, so padding matters.
CANVASES = [(256, 256), (256, 192), (192, 256), (256, 160), (224, 256)]
MAX_RELATIONS = 2
# Entity counts 1..8, weighted towards fewer so captions stay short; a split
# draws from a range of them (2..8 by default; 1..3 for a curriculum).
COUNT_WEIGHTS = {1: 8, 2: 8, 3: 7, 4: 5, 5: 3, 6: 2, 7: 1, 8: 1}

# Sentence frames of the caption (variety of language over a closed grammar).
GLOBAL_FRAMES = [
    "The image shows {n} shapes on a {b} {c} background with a {t} texture.",
    "On a {b} {c} background with a {t} texture there are {n} shapes.",
    "This is a {b} {c} background with a {t} texture holding {n} shapes.",
]
ENTITY_FRAMES = [
    "There is a {np}.",
    "We can see a {np}.",
    "A {np} is visible.",
    "The scene contains a {np}.",
]
RELATION_VERBS = {
    "left of": ["is to the left of", "lies to the left of"],
    "above": ["is above", "sits above"],
    "inside": ["is inside", "lies inside"],
    "overlapping": ["is overlapping", "overlaps"],
    "larger than": ["is larger than", "is bigger than"],
}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def to_frame(x, y, w, h):
    """A pixel point of a w x h image in the model's frame: thousandths of the
    max(w, h) square the image is centred on (expand2square offsets), floored
    and kept in [0, 999]."""
    side = max(w, h)
    ox, oy = (side - w) // 2, (side - h) // 2
    fx = int(math.floor((x + ox) * 1000 / side))
    fy = int(math.floor((y + oy) * 1000 / side))
    return min(max(fx, 0), 999), min(max(fy, 0), 999)


def fmt_box(b):
    return "<box>[[%d, %d, %d, %d]]</box>" % tuple(b)


def shape_polygon(tag, x1, y1, x2, y2):
    """Vertices of a polygonal shape inscribed in the pixel box."""
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    if tag == "square":
        return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    if tag == "triangle":
        return [(cx, y1), (x2, y2), (x1, y2)]
    if tag == "diamond":
        return [(cx, y1), (x2, cy), (cx, y2), (x1, cy)]
    if tag == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + r * rx * math.cos(a), cy + r * ry * math.sin(a)))
        # stretch vertically so the star touches its box's bottom too
        top, bot = min(p[1] for p in pts), max(p[1] for p in pts)
        return [(p[0], y1 + (p[1] - top) * (y2 - y1) / (bot - top)) for p in pts]
    if tag == "cross":
        tx, ty = rx / 3, ry / 3
        return [(cx - tx, y1), (cx + tx, y1), (cx + tx, cy - ty), (x2, cy - ty), (x2, cy + ty), (cx + tx, cy + ty),
                (cx + tx, y2), (cx - tx, y2), (cx - tx, cy + ty), (x1, cy + ty), (x1, cy - ty), (cx - tx, cy - ty)]
    raise ValueError(tag)


def shape_mask(size, tag, box):
    """An 'L' mask of the given size with the shape drawn in box (255 inside)."""
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    x1, y1, x2, y2 = box
    if tag == "circle":
        d.ellipse([x1, y1, x2 - 1, y2 - 1], fill=255)
    elif tag == "ring":
        d.ellipse([x1, y1, x2 - 1, y2 - 1], fill=255)
        t = max(3, (x2 - x1) // 5)
        d.ellipse([x1 + t, y1 + t, x2 - 1 - t, y2 - 1 - t], fill=0)
    else:
        d.polygon(shape_polygon(tag, x1, y1, x2 - 1, y2 - 1), fill=255)
    return m


def pattern(size, colour, fill):
    """An RGBA layer of the entity's fill pattern (transparent gaps)."""
    w, h = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    c = colour + (255,)
    if fill == "solid":
        d.rectangle([0, 0, w, h], fill=c)
    elif fill == "striped":
        step = 6
        for x in range(-h, w, step):
            d.line([(x, 0), (x + h, h)], fill=c, width=3)
    else:  # dotted
        for y in range(1, h, 6):
            for x in range(1 + (y // 6 % 2) * 3, w, 6):
                d.ellipse([x, y, x + 3, y + 3], fill=c)
    return layer


def background_rgb(colour, brightness):
    """The background's base colour scaled by its brightness."""
    k = 1.2 if brightness == "bright" else 0.55
    return tuple(min(255, int(v * k)) for v in BACKGROUNDS[colour])


def visible(colour, under):
    """Whether an entity colour stands out from the colour it is drawn on."""
    return sum(abs(a - b) for a, b in zip(COLOURS[colour], under)) > 180


def background(size, colour, brightness, texture, rng):
    """The background image: base colour scaled by brightness, plus texture."""
    rgb = background_rgb(colour, brightness)
    img = Image.new("RGB", size, rgb)
    d = ImageDraw.Draw(img)
    alt = tuple(min(255, int(v * 0.8 + 30)) for v in rgb)
    w, h = size
    if texture == "striped":
        for y in range(0, h, 16):
            d.rectangle([0, y, w, y + 7], fill=alt)
    elif texture == "dotted":
        for y in range(4, h, 14):
            for x in range(4, w, 14):
                d.ellipse([x, y, x + 3, y + 3], fill=alt)
    elif texture == "noisy":
        noise = np.random.default_rng(rng.randrange(2 ** 32)).random((h, w)) < 0.15  # [H × W] speckles
        a = np.array(img)
        a[noise] = alt
        img = Image.fromarray(a)
    return img


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


def contains(outer, inner):
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def intersects(a, b):
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def area(b):
    return (b[2] - b[0]) * (b[3] - b[1])


def relations_between(a, b):
    """Every true relation "a REL b" between two pixel boxes."""
    rel = []
    if a[2] <= b[0]:
        rel.append("left of")
    if a[3] <= b[1]:
        rel.append("above")
    if contains(b, a) and a != b:
        rel.append("inside")
    elif intersects(a, b) and not contains(a, b):
        rel.append("overlapping")
    if area(a) > 2 * area(b):
        rel.append("larger than")
    return rel


def salient(rels):
    """The one relation a caption states for an ordered pair (a fixed priority)."""
    for r in ["inside", "overlapping", "larger than", "left of", "above"]:
        if r in rels:
            return r
    return None


def size_name(box, w, h):
    f = max(box[2] - box[0], box[3] - box[1]) / float(max(w, h))
    return "small" if f < 0.17 else ("medium" if f < 0.3 else "large")


def place(rng, w, h, placed):
    """A pixel box for a new entity: free-standing (little overlap) or, now and
    then, inside a large entity already placed. None when no spot was found."""
    big = [p for p in placed if min(p[2] - p[0], p[3] - p[1]) >= 0.3 * max(w, h)]
    if big and rng.random() < 0.3:
        o = rng.choice(big)
        ow, oh = o[2] - o[0], o[3] - o[1]
        s = int(min(ow, oh) * rng.uniform(0.3, 0.45))
        x1 = o[0] + (ow - s) // 2 + rng.randint(-ow // 10, ow // 10)
        y1 = o[1] + (oh - s) // 2 + rng.randint(-oh // 10, oh // 10)
        cand = (x1, y1, x1 + s, y1 + s)
        if contains(o, cand) and all(not intersects(cand, p) or contains(p, cand) for p in placed):
            return cand
    for _ in range(50):
        s = int(max(w, h) * rng.uniform(0.1, 0.4))
        sw = max(12, min(w - 2, int(s * rng.uniform(0.8, 1.25))))
        sh = max(12, min(h - 2, int(s * rng.uniform(0.8, 1.25))))
        x1, y1 = rng.randrange(1, w - sw), rng.randrange(1, h - sh)
        cand = (x1, y1, x1 + sw, y1 + sh)
        if all(iou(cand, p) < 0.15 and not contains(cand, p) and not contains(p, cand) for p in placed):
            return cand
    return None


def make_scene(rng, counts=range(2, 9)):
    """One scene of len(counts) entities or fewer (when no spot is left): its
    image and its ground-truth record (boxes in the model frame)."""
    w, h = rng.choice(CANVASES)
    n = rng.choices(counts, weights=[COUNT_WEIGHTS[c] for c in counts])[0]
    g = {"colour": rng.choice(sorted(BACKGROUNDS)), "brightness": rng.choice(BRIGHTNESS),
         "texture": rng.choice(TEXTURES)}
    ents, used = [], set()
    for _ in range(n):
        px = place(rng, w, h, [e["pixel"] for e in ents])
        if px is None:
            break
        # drawn on the smallest entity holding it, else on the background
        holders = [e for e in ents if contains(e["pixel"], px)]
        under = (COLOURS[min(holders, key=lambda e: area(e["pixel"]))["colour"]] if holders
                 else background_rgb(g["colour"], g["brightness"]))
        for _ in range(40):
            tag, colour = rng.choice(SHAPES), rng.choice(sorted(COLOURS))
            if (colour, tag) not in used and visible(colour, under):
                break
        else:
            continue
        used.add((colour, tag))
        if tag in ("circle", "ring", "square", "star", "cross", "diamond"):
            s = min(px[2] - px[0], px[3] - px[1])  # these shapes keep their aspect ratio
            px = (px[0], px[1], px[0] + s, px[1] + s)
        ents.append({"tag": tag, "colour": colour, "fill": rng.choice(FILLS), "outline": rng.choice(OUTLINES),
                     "pixel": px})
    img = background((w, h), g["colour"], g["brightness"], g["texture"], rng)
    for e in sorted(ents, key=lambda e: -area(e["pixel"])):  # large first: small ones stay visible
        x1, y1, x2, y2 = e["pixel"]
        size = (x2 - x1, y2 - y1)
        m = shape_mask(size, e["tag"], (0, 0) + size)  # drawn in the box's own frame
        layer = pattern(size, COLOURS[e["colour"]], e["fill"])
        img.paste(layer.convert("RGB"), (x1, y1), ImageChops.multiply(layer.getchannel("A"), m))
        if e["outline"] != "none":
            oc = (20, 20, 20) if e["outline"] == "dark" else (245, 245, 245)
            pm = Image.new("L", (size[0] + 4, size[1] + 4), 0)  # zero margin: the border erodes too
            pm.paste(m, (2, 2))
            edge = ImageChops.subtract(pm, pm.filter(ImageFilter.MinFilter(5))).crop((2, 2, size[0] + 2, size[1] + 2))
            img.paste(Image.new("RGB", size, oc), (x1, y1), edge)
    for e in ents:
        x1, y1 = to_frame(e["pixel"][0], e["pixel"][1], w, h)
        x2, y2 = to_frame(e["pixel"][2], e["pixel"][3], w, h)
        e["box"] = [x1, y1, x2, y2]
        e["size"] = size_name(e["pixel"], w, h)
    ents.sort(key=lambda e: (e["box"][0], e["box"][1]))  # list order: left to right
    facts = []
    for i, a in enumerate(ents):
        for j, b in enumerate(ents):
            if i != j:
                facts.extend([i, r, j] for r in relations_between(a["pixel"], b["pixel"]))
    rels = []
    for i in range(len(ents) - 1):
        r = salient(relations_between(ents[i]["pixel"], ents[i + 1]["pixel"]))
        rr = salient(relations_between(ents[i + 1]["pixel"], ents[i]["pixel"]))
        if r is not None and (rr is None or RELATIONS.index(r) <= RELATIONS.index(rr) or r == "inside"):
            rels.append([i, r, i + 1])
        elif rr is not None:
            rels.append([i + 1, rr, i])
        if len(rels) == MAX_RELATIONS:
            break
    for e in ents:
        del e["pixel"]
    return img, {"width": w, "height": h, "entities": ents, "relations": rels, "facts": facts, "global": g}


def noun_phrase(e):
    np = "%s %s %s %s %s" % (e["size"], e["colour"], e["fill"], e["tag"], fmt_box(e["box"]))
    if e["outline"] != "none":
        np += " with a %s outline" % e["outline"]
    return np


def caption(scene, rng):
    """The stage-4 caption of a scene in the closed grammar."""
    ents, g = scene["entities"], scene["global"]
    frame = rng.choice(GLOBAL_FRAMES)
    if len(ents) == 1:
        frame = frame.replace("shapes", "shape").replace("there are", "there is")
    out = [frame.format(n=NUMBER_WORDS[len(ents)], b=g["brightness"], c=g["colour"], t=g["texture"])]
    for e in ents:
        s = rng.choice(ENTITY_FRAMES).format(np=noun_phrase(e))
        out.append(s[0].upper() + s[1:])
    for i, r, j in scene["relations"]:
        a, b = ents[i], ents[j]
        out.append("The %s %s %s the %s %s." % (a["colour"], a["tag"], rng.choice(RELATION_VERBS[r]),
                                                b["colour"], b["tag"]))
    return " ".join(out)


def tuples(scene, rng):
    """The four PancapChain training tuples (prompt is the user text)."""
    ents = scene["entities"]
    boxes = ", ".join(fmt_box(e["box"]) for e in ents)
    tagged = ["%s %s" % (e["tag"], fmt_box(e["box"])) for e in ents]
    k = rng.randint(1, len(ents)) if rng.random() < 0.75 else len(ents)
    given = sorted(rng.sample(range(len(ents)), k))
    missing = [tagged[i] for i in range(len(ents)) if i not in given]
    return [
        {"stage": 1, "prompt": PROMPTS[1], "answer": boxes},
        {"stage": 2, "prompt": PROMPTS[2].format(boxes), "answer": ", ".join(tagged)},
        {"stage": 3, "prompt": PROMPTS[3].format(", ".join(tagged[i] for i in given)),
         "answer": ", ".join(missing) if missing else "None"},
        {"stage": 4, "prompt": PROMPTS[4].format(", ".join(tagged)), "answer": scene["caption"]},
    ]


def write_split(root, name, count, seed, counts=range(2, 9)):
    """Renders count scenes of one split from its seed, with entity counts drawn from counts."""
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    rng = random.Random(seed)
    with open(os.path.join(d, "scenes.jsonl"), "w") as fs, open(os.path.join(d, "tuples.jsonl"), "w") as ft, \
            ThreadPoolExecutor(os.cpu_count()) as pool:  # PNG encoding runs outside the GIL
        saves = []
        for i in range(count):
            img, scene = make_scene(rng, counts)
            rel = "images/%06d.png" % i
            saves.append(pool.submit(img.save, os.path.join(d, rel)))
            scene = {"id": "%s-%06d" % (name, i), "image": rel, **scene}
            scene["caption"] = caption(scene, rng)
            fs.write(json.dumps(scene) + "\n")
            for t in tuples(scene, rng):
                ft.write(json.dumps({"id": scene["id"], "image": rel, **t}) + "\n")
        for f in saves:
            f.result()  # raises a failed save's error
    print("wrote %d scenes to %s" % (count, d))


SEEDS = {"train": 1, "val": 2, "test": 3}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--entities", default="2-8",
                    help="range of entities per scene, LO-HI (1-3 makes a curriculum's first, easier data)")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.entities.split("-"))
    if not 1 <= lo <= hi <= 8:
        ap.error("--entities must be LO-HI within 1-8")
    for name, count in (("train", a.train), ("val", a.val), ("test", a.test)):
        write_split(a.out, name, count, SEEDS[name], range(lo, hi + 1))


if __name__ == "__main__":
    main()
