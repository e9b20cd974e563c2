"""Draw N distinct synthetic scenes (shapes on a plain background) as PNGs and
write AIPerf's single_turn dataset for them: one image, no text, per line.

Usage: make_workload.py OUT_DIR N [WIDTHxHEIGHT]
"""

from __future__ import annotations

import json
import pathlib
import random
import sys

from PIL import Image, ImageDraw  # AIPerf's dependencies include Pillow


def scene(rng: random.Random, width: int, height: int) -> Image.Image:
    img = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 4)):
        x0, y0 = rng.randrange(width * 3 // 4), rng.randrange(height * 3 // 4)
        x1, y1 = x0 + rng.randint(width // 10, width // 4), y0 + rng.randint(height // 10, height // 4)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice([draw.rectangle, draw.ellipse])
        shape([x0, y0, x1, y1], fill=colour)
    return img


def main() -> None:
    out, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    width, height = map(int, (sys.argv[3] if len(sys.argv) > 3 else "1000x667").split("x"))
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(out / "aiperf.jsonl", "w") as f:
        for i in range(n):
            path = images / f"scene-{i:04d}.png"
            scene(rng, width, height).save(path)
            f.write(json.dumps({"image": str(path.resolve())}) + "\n")


if __name__ == "__main__":
    main()
