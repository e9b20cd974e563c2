"""Golden files for model/imageproc (issues 3 and 9).

Draws small test images in every format and colour mode the server accepts,
writes them to model/imageproc/testdata/, and for each of them (and for the
real photos in testdata/images) writes under
model/imageproc/testdata/golden/:

  <name>.rgb.png       PIL 9.4 Image.open(...).convert("RGB") of the source
                       (drawn images only; the photos are too large to keep)
  <name>.<S>.png       (S in the case's sizes) the 8-bit image after LLaVA's expand2square and
                       CLIPImageProcessor's bicubic resize + centre crop
  <name>.56.f32.gz     gzipped little-endian float32 pixel_values [3 x 56 x 56]
  normalize.f32        pixel_values of a 16x16 image holding every 8-bit value
                       in every channel (no resize): the rescale/normalise
                       arithmetic for all 256 inputs, which is all that maps the
                       8-bit <name>.336.png to the 336-pixel pixel_values
  manifest.json        the cases: source, original size, sizes, whether the
                       decoder must match bit for bit ("exact") or within JPEG
                       IDCT rounding ("jpeg")

Run from the repository root: .venv/bin/python tools/reference/imageproc_golden.py
"""

import gzip
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

PKG = os.path.join(common.REPO, "model", "imageproc", "testdata")
GOLDEN = os.path.join(PKG, "golden")
PHOTOS = os.path.join(common.TESTDATA, "images")
SIZES = (56, 336)
# The resize is format-independent: the 336-pixel goldens (upscaling for the
# drawn images) are kept for a few cases only, to keep the repository small.
FULL_SIZE_CASES = {"rgba_wide", "gray_small", "baseline420", "lossy"}


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def write_png_raw(path, arr, color_type, trns=None, plte=None):
    """Writes a PNG directly, for what PIL 9.4 cannot save (16-bit RGB, a
    palette shorter than the indices used): arr is uint16 [h x w x c] written
    as 16-bit samples, or uint8 [h x w] indices when plte is given."""
    h, w = arr.shape[:2]
    depth = 8 if plte is not None else 16
    dtype = "u1" if depth == 8 else ">u2"
    raw = b"".join(b"\0" + arr[y].astype(dtype).tobytes() for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
    if plte is not None:
        out += png_chunk(b"PLTE", plte)
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def offset_gif(data, screen, offset):
    """Rewrites a single-frame GIF so that its frame sits at offset on a
    larger logical screen."""
    b = bytearray(data)
    b[6:10] = struct.pack("<HH", *screen)
    pos = 13 + (3 << ((b[10] & 7) + 1) if b[10] & 0x80 else 0)
    while b[pos] == 0x21:  # skip extensions
        pos += 2
        while b[pos]:
            pos += b[pos] + 1
        pos += 1
    assert b[pos] == 0x2C, "image descriptor expected"
    b[pos + 1:pos + 5] = struct.pack("<HH", *offset)
    return bytes(b)


def draw_sources(rng):
    """Writes the drawn test images; returns {name: (file, kind)}."""
    os.makedirs(PKG, exist_ok=True)
    yy, xx = np.mgrid[0:61, 0:97]
    rgb = np.stack([xx * 255 // 96, yy * 255 // 60, (xx + yy) * 2 % 256], -1).astype(np.int32)
    rgb = np.clip(rgb + rng.integers(-40, 41, rgb.shape), 0, 255).astype(np.uint8)
    alpha = (xx * 3 + yy * 5) % 256
    cases = {}

    def save(name, im, fmt, kind="exact", **kw):
        path = os.path.join(PKG, name)
        im.save(path, fmt, **kw)
        cases[os.path.splitext(name)[0].replace(".", "_")] = (path, kind)

    rgba = Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8), "RGBA")
    save("rgba_wide.png", rgba, "PNG")
    tall = Image.fromarray(rgb.transpose(1, 0, 2).copy(), "RGB")
    save("rgb_tall.png", tall, "PNG")
    save("strip.png", Image.fromarray(rgb[:1, :90].copy(), "RGB"), "PNG")
    save("gray_small.png", Image.fromarray(rgb[:13, :20, 1].copy(), "L"), "PNG")
    save("la.png", Image.fromarray(np.dstack([rgb[..., 0], alpha]).astype(np.uint8), "LA"), "PNG")
    pal = rgba.convert("RGB").quantize(colors=40, dither=Image.Dither.NONE)
    save("palette_trns.png", pal, "PNG", transparency=3)
    save("palette.gif", pal, "GIF", transparency=5)
    frames = [pal, pal.transpose(Image.Transpose.FLIP_LEFT_RIGHT), pal.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    save("anim.gif", frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    save("bilevel.png", Image.fromarray(rgb[..., 0] > 128), "PNG")
    save("palette4.png", rgba.convert("RGB").quantize(colors=12, dither=Image.Dither.NONE), "PNG", bits=4)
    # A first frame smaller than the logical screen, at an offset: PIL fills
    # the rest of the canvas with the transparent index, else index 0.
    for name, trns in (("gif_offset", None), ("gif_offset_trns", 2)):
        small = pal.crop((0, 0, 9, 5))
        buf = io.BytesIO()
        small.save(buf, "GIF", optimize=False, **({} if trns is None else {"transparency": trns}))
        cases[name] = (os.path.join(PKG, name + ".gif"), "exact")
        with open(cases[name][0], "wb") as f:
            f.write(offset_gif(buf.getvalue(), screen=(23, 11), offset=(6, 3)))
    # 16-bit: RGB with a tRNS-free header, grey with values straddling 255
    # (PIL clips mode "I" to 255 when converting to RGB).
    rgb16 = (rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape)).astype(np.uint16)
    write_png_raw(os.path.join(PKG, "rgb16.png"), rgb16, 2)
    cases["rgb16"] = (os.path.join(PKG, "rgb16.png"), "exact")
    a16 = (alpha.astype(np.uint16) * 257)[..., None]
    write_png_raw(os.path.join(PKG, "rgba16.png"), np.concatenate([rgb16, a16], -1), 6)
    cases["rgba16"] = (os.path.join(PKG, "rgba16.png"), "exact")
    write_png_raw(os.path.join(PKG, "la16.png"), np.concatenate([rgb16[..., 1:2], a16], -1), 4)
    cases["la16"] = (os.path.join(PKG, "la16.png"), "exact")
    g16 = (xx * 5 + yy).astype(np.uint16)[..., None]
    write_png_raw(os.path.join(PKG, "gray16.png"), g16, 0)
    cases["gray16"] = (os.path.join(PKG, "gray16.png"), "exact")
    write_png_raw(os.path.join(PKG, "gray16_trns.png"), g16, 0, trns=struct.pack(">H", 100))
    cases["gray16_trns"] = (os.path.join(PKG, "gray16_trns.png"), "exact")
    # Indices past the palette's end: PIL maps them to grey (i, i, i).
    write_png_raw(os.path.join(PKG, "palette_short.png"), ((xx * 7 + yy * 3) % 256).astype(np.uint8), 3,
                  plte=bytes(rng.integers(0, 256, 3 * 16, dtype=np.uint8)))
    cases["palette_short"] = (os.path.join(PKG, "palette_short.png"), "exact")
    save("lossless.webp", rgba, "WEBP", lossless=True)
    save("lossy.webp", tall, "WEBP", quality=80)
    save("lossy_alpha.webp", rgba.crop((0, 0, 95, 61)), "WEBP", quality=70)
    save("baseline420.jpg", rgba.convert("RGB"), "JPEG", kind="jpeg", quality=90)
    save("baseline422_odd.jpg", tall.crop((0, 0, 59, 95)), "JPEG", kind="jpeg", quality=85, subsampling=1)
    save("baseline444.jpg", tall, "JPEG", kind="jpeg", quality=95, subsampling=0)
    save("progressive.jpg", rgba.convert("RGB").crop((0, 0, 95, 59)), "JPEG", kind="jpeg", quality=80, progressive=True)
    save("gray.jpg", tall.convert("L"), "JPEG", kind="jpeg", quality=90)
    cmyk = Image.fromarray(np.dstack([rgb, rgb[..., ::-1][..., :1]]).astype(np.uint8), "CMYK")
    save("cmyk.jpg", cmyk, "JPEG", kind="jpeg", quality=90)
    # Samplings PIL cannot write (4:4:0, as a lossless rotation of a 4:2:2
    # photo gives, and 4:1:1), written with OpenCV when it is installed
    # (pip install opencv-python-headless); otherwise the committed files
    # are kept. PIL still decodes them for the goldens.
    for name, factor in (("sampling440", "IMWRITE_JPEG_SAMPLING_FACTOR_440"),
                         ("sampling411", "IMWRITE_JPEG_SAMPLING_FACTOR_411")):
        path = os.path.join(PKG, name + ".jpg")
        try:
            import cv2
        except ImportError:
            cv2 = None
        if cv2 is not None:
            bgr = np.ascontiguousarray(rgb[:, :45, ::-1])
            ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85,
                                                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR, getattr(cv2, factor)])
            assert ok
            with open(path, "wb") as f:
                f.write(buf.tobytes())
        if os.path.exists(path):
            cases[name] = (path, "jpeg")
    return cases


def f32_gz(path, tensor):
    a = tensor.detach().float().contiguous().numpy().astype("<f4")
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(a.tobytes())


def main():
    rng = np.random.default_rng(20261125)
    cases = draw_sources(rng)
    os.makedirs(GOLDEN, exist_ok=True)
    if os.path.isdir(PHOTOS):
        for name in ("waterview.jpg", "extreme_ironing.jpg", "teasor.png"):
            kind = "jpeg" if name.endswith(".jpg") else "exact"
            cases["photo_" + os.path.splitext(name)[0]] = (os.path.join(PHOTOS, name), kind)
    manifest = []
    for name, (path, kind) in sorted(cases.items()):
        src = Image.open(path)
        rgb = src.convert("RGB")
        entry = {
            "name": name,
            "kind": kind,
            "width": rgb.width,
            "height": rgb.height,
            "mode": src.mode,
        }
        if not name.startswith("photo_"):
            entry["source"] = os.path.relpath(path, PKG).replace(os.sep, "/")
            Image.fromarray(np.asarray(rgb), "RGB").save(os.path.join(GOLDEN, name + ".rgb.png"))
        else:
            entry["photo"] = os.path.basename(path)
        entry["sizes"] = [s for s in SIZES if s == 56 or name in FULL_SIZE_CASES or name.startswith("photo_")]
        for size in entry["sizes"]:
            pixel, resized = common.preprocess(path, size)
            Image.fromarray(resized, "RGB").save(os.path.join(GOLDEN, f"{name}.{size}.png"))
            if size == 56:
                f32_gz(os.path.join(GOLDEN, f"{name}.56.f32.gz"), pixel)
        manifest.append(entry)
    # Every value in every channel, normalised without resizing.
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ramp = np.dstack([ramp, ramp[::-1], ramp.T])
    proc = common.image_processor(16)
    norm = proc.preprocess(Image.fromarray(ramp, "RGB"), do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"][0]
    Image.fromarray(ramp, "RGB").save(os.path.join(GOLDEN, "normalize.png"))
    common.write_f32(os.path.join(GOLDEN, "normalize.f32"), norm)
    common.write_json(os.path.join(GOLDEN, "manifest.json"), manifest)


if __name__ == "__main__":
    main()
