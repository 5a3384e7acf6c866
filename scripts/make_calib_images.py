"""Regenerate the bundled calibration photographs in ``calib/`` and their
``calib/PROVENANCE.md``.

Every source image ships inside a package on PyPI under a licence that allows
redistribution (public domain, CC0 or CC BY 2.0 with attribution, recorded in
PROVENANCE.md). Each output is either the whole image or a fixed crop of it,
resized so its long side is at most 320 px (Pillow, Lanczos) and saved as an
RGB JPEG at quality 90 without metadata. Run with the same package versions
to get the same files::

    pip install scikit-image matplotlib scikit-learn
    python scripts/make_calib_images.py
"""
from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "calib"
LONG_SIDE = 320
QUALITY = 90

_SKIMAGE = ("scikit-image", "skimage.data")
_SKLEARN = ("scikit-learn", "sklearn.datasets.images")
_MPL = ("matplotlib", "matplotlib sample_data")

PD_NASA = "public domain (NASA; skimage.data.hubble_deep_field docstring)"
CC_BY = ("CC BY 2.0, attribution: 'Some rights reserved by danielbuechele' "
         "(sklearn/datasets/images/README.txt)")
CC_BY_FLOWER = ("CC BY 2.0, attribution: photographer vultilion on Flickr "
                "(sklearn/datasets/images/README.txt)")

# (output name, source, original file, licence, crop box (l, t, r, b) in the original or None)
IMAGES = [
    ("astronaut.jpg", _SKIMAGE, "astronaut.png",
     "public domain (skimage.data.astronaut docstring: no known copyright restrictions)", None),
    ("astronaut_face.jpg", _SKIMAGE, "astronaut.png", "public domain (as astronaut.jpg)",
     (128, 0, 384, 256)),
    ("astronaut_helmet.jpg", _SKIMAGE, "astronaut.png", "public domain (as astronaut.jpg)",
     (300, 260, 512, 512)),
    ("coffee.jpg", _SKIMAGE, "coffee.png", "CC0 (Rachel Michetti; skimage.data.coffee docstring)", None),
    ("coffee_cup.jpg", _SKIMAGE, "coffee.png", "CC0 (as coffee.jpg)", (150, 20, 450, 320)),
    ("chelsea.jpg", _SKIMAGE, "chelsea.png", "CC0 (Stefan van der Walt; skimage.data.chelsea docstring)", None),
    ("chelsea_face.jpg", _SKIMAGE, "chelsea.png", "CC0 (as chelsea.jpg)", (60, 10, 300, 250)),
    ("rocket.jpg", _SKIMAGE, "rocket.jpg", "public domain (SpaceX; skimage.data.rocket docstring)", None),
    ("rocket_pad.jpg", _SKIMAGE, "rocket.jpg", "public domain (as rocket.jpg)", (200, 40, 520, 427)),
    ("hubble_deep_field.jpg", _SKIMAGE, "hubble_deep_field.jpg", PD_NASA, None),
    ("china.jpg", _SKLEARN, "china.jpg", CC_BY, None),
    ("china_roof.jpg", _SKLEARN, "china.jpg", CC_BY, (0, 0, 320, 240)),
    ("china_garden.jpg", _SKLEARN, "china.jpg", CC_BY, (300, 180, 640, 427)),
    ("flower.jpg", _SKLEARN, "flower.jpg", CC_BY_FLOWER, None),
    ("flower_centre.jpg", _SKLEARN, "flower.jpg", CC_BY_FLOWER, (180, 60, 480, 360)),
    ("grace_hopper.jpg", _MPL, "grace_hopper.jpg",
     "public domain (U.S. Navy official photograph of Rear Admiral Grace M. Hopper)", None),
]


def _source_path(source, name: str) -> Path:
    if source is _SKIMAGE:
        import skimage.data
        return Path(skimage.data.__file__).parent / name
    if source is _SKLEARN:
        import sklearn.datasets
        return Path(sklearn.datasets.__file__).parent / "images" / name
    import matplotlib
    return Path(matplotlib.get_data_path()) / "sample_data" / name


def make_one(src: Path, crop, dst: Path) -> str:
    """Crop, resize to LONG_SIDE and save; returns the transformation in words."""
    im = Image.open(src)
    im.load()
    steps = []
    if im.mode != "RGB":
        steps.append(f"converted {im.mode} to RGB")
        im = im.convert("RGB")
    if crop is not None:
        im = im.crop(crop)
        steps.append(f"cropped box (left, top, right, bottom) = {crop}")
    w, h = im.size
    scale = min(1.0, LONG_SIDE / max(w, h))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        im = im.resize(size, Image.LANCZOS)
        steps.append(f"resized {w}x{h} to {size[0]}x{size[1]} (Lanczos)")
    im.save(dst, "JPEG", quality=QUALITY, optimize=True)
    steps.append(f"JPEG quality {QUALITY}")
    return "; ".join(steps)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rows = []
    for out_name, source, orig, licence, crop in IMAGES:
        package, where = source
        src = _source_path(source, orig)
        how = make_one(src, crop, OUT / out_name)
        version = importlib.metadata.version(package)
        digest = hashlib.sha256((OUT / out_name).read_bytes()).hexdigest()[:16]
        rows.append(f"| {out_name} | {package} {version} ({where}) | {orig} | {licence} | {how} | {digest} |")
    text = [
        "# Bundled calibration photographs",
        "",
        "Real photographs used by `qdeploy quantize` when no `--calib` is given, by the README",
        "commands and by the tests. Each comes from a package on PyPI and is redistributable under",
        "the licence named below (public domain, CC0, or CC BY 2.0 with the attribution given).",
        f"They were made by `scripts/make_calib_images.py`: long side at most {LONG_SIDE} px,",
        f"RGB JPEG quality {QUALITY}, no metadata.",
        "",
        "| file | source package (version) | original | licence | transformation | sha256 (first 16) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "CC BY 2.0: https://creativecommons.org/licenses/by/2.0/ — china.jpg is by danielbuechele",
        "(flickr.com/photos/danielbuechele/6061409035), flower.jpg by vultilion",
        "(flickr.com/photos/vultilion/6056698931), both retrieved by Robert Layton for scikit-learn.",
        "The crops are derived works under the same licence.",
        "",
    ]
    (OUT / "PROVENANCE.md").write_text("\n".join(text))
    total = sum(p.stat().st_size for p in OUT.glob("*.jpg"))
    print(f"wrote {len(rows)} images to {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
