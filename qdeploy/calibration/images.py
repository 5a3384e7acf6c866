"""Decode one image and turn it into a model input, as a recipe says.

Decoding is Pillow's (jpg, png, bmp, webp). Decisions where the issue is silent:

* EXIF orientation is applied first (``ImageOps.exif_transpose``), so a phone
  photo is seen upright, as every viewer shows it.
* Colour: palette, grayscale, CMYK and RGBA images become RGB with Pillow's
  ``convert("RGB")``. The alpha channel is dropped, not composited, which is
  what torchvision's image loader does in training. ``gray`` uses Pillow's
  ITU-R 601 luma (``convert("L")``). 16-bit images keep their high byte.
* Resizing is bilinear in Pillow (antialiased when shrinking, like
  torchvision's PIL path). ``stretch`` ignores the aspect ratio; ``crop``
  scales the image to cover HxW (the shorter side matches) and cuts the
  centre; ``letterbox`` scales it to fit inside HxW and centres it on a canvas
  filled with ``pad`` (pixel units) -- odd margins put the extra pixel
  right/bottom.
* No size (``size=None``): the image keeps its own size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import QDeployError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def decode(path: Path, channels: str) -> Image.Image:
    """The upright image in mode RGB (``rgb``/``bgr``) or L (``gray``).
    Raises :class:`QDeployError` naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except Exception as e:  # Pillow raises many types for broken files
        raise QDeployError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        im = Image.fromarray((np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8))
    elif im.mode == "F":
        im = Image.fromarray(np.asarray(im).clip(0, 255).astype(np.uint8))
    return im.convert("L" if channels == "gray" else "RGB")


def resize(im: Image.Image, size, mode: str, pad: int) -> Image.Image:
    """Resize to ``size`` = (H, W) with mode stretch | crop | letterbox."""
    if size is None:
        return im
    h, w = size
    iw, ih = im.size
    if mode == "stretch":
        return im.resize((w, h), Image.BILINEAR)
    if mode == "crop":
        s = max(w / iw, h / ih)
        nw, nh = max(w, round(iw * s)), max(h, round(ih * s))
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - w) // 2, (nh - h) // 2
        return im.crop((left, top, left + w, top + h))
    if mode == "letterbox":
        s = min(w / iw, h / ih)
        nw, nh = min(w, max(1, round(iw * s))), min(h, max(1, round(ih * s)))
        fill = pad if im.mode == "L" else (pad, pad, pad)
        canvas = Image.new(im.mode, (w, h), fill)
        canvas.paste(im.resize((nw, nh), Image.BILINEAR), ((w - nw) // 2, (h - nh) // 2))
        return canvas
    raise QDeployError(f"unknown resize mode '{mode}'; choose stretch, crop or letterbox")


def to_tensor(im: Image.Image, recipe: dict) -> np.ndarray:
    """Pixels -> float32 ``(p * scale - mean) / std`` in the recipe's channel
    order and layout (C,H,W or H,W,C)."""
    p = np.asarray(im, dtype=np.float32)
    if p.ndim == 2:
        p = p[:, :, None]
    if recipe["channels"] == "bgr":
        p = p[:, :, ::-1]
    mean = np.asarray(recipe["mean"], np.float32)
    std = np.asarray(recipe["std"], np.float32)
    x = (p * np.float32(recipe["scale"]) - mean) / std
    if recipe["layout"] == "nchw":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def load(path: Path, recipe: dict) -> np.ndarray:
    """One image file -> one preprocessed sample (see the module docstring)."""
    size = recipe.get("size")
    im = decode(path, recipe["channels"])
    im = resize(im, size, recipe["resize"], recipe.get("pad") or 0)
    return to_tensor(im, recipe)
