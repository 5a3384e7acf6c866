"""The preprocessing recipe stored inside every calibration set.

A pixel value ``p`` (0..255, after decoding, resizing and channel conversion)
becomes ``x = (p * scale - mean[c]) / std[c]`` for output channel ``c``. The
presets fix ``scale``, ``mean`` and ``std``:

=========  =======  ======================  ======================  ===========
preset     scale    mean                    std                     range
=========  =======  ======================  ======================  ===========
imagenet   1/255    0.485, 0.456, 0.406     0.229, 0.224, 0.225     about ±2.6
unit       1/255    0                       1                       [0, 1]
symmetric  1/255    0.5                     0.5                     [-1, 1]
raw        1        0                       1                       [0, 255]
=========  =======  ======================  ======================  ===========

Decisions where the issue is silent:

* ``--mean``/``--std`` replace the preset's mean/std and keep its scale, so
  ``--preset unit --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225`` is the
  torchvision convention and ``--preset raw --mean 123.675,116.28,103.53
  --std 58.395,57.12,57.375`` the Caffe/OpenCV one. A mean above 1.5 with a
  1/255 scale is refused: it is the classic mix-up of the two conventions.
* mean/std are listed in the order of the *output* channels. Presets are
  defined for RGB and reversed for ``bgr``; for ``gray`` they use the average
  of the three channels (ImageNet: mean 0.449, std 0.226).
* A single value is broadcast to every channel.

The recipe is a plain JSON-able dict (see :func:`image_recipe`) so it can be
stored in the .npz, printed and compared; ``FORMAT``/``VERSION`` identify it.
"""
from __future__ import annotations

import numpy as np

from ..errors import QDeployError
from ..schema import Key, check

FORMAT = "qdeploy-calib-set"
VERSION = 1

PRESETS = {
    "imagenet": (1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "unit": (1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "symmetric": (1 / 255, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "raw": (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
CHANNELS = ("rgb", "bgr", "gray")
LAYOUTS = ("nchw", "nhwc")
RESIZE_MODES = ("stretch", "crop", "letterbox")
DEFAULT_PAD = 114  # letterbox fill in pixel units, as YOLO-family pipelines use


def _per_channel(values, n: int, what: str) -> list[float]:
    vals = [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise QDeployError(f"--{what} has {len(vals)} values but the set has {n} channel(s); "
                           f"give 1 or {n} values")
    return vals


def normalisation(preset: str, channels: str, mean=None, std=None) -> tuple[float, list, list]:
    """(scale, mean, std) for the output channels, mean/std in output order."""
    if preset not in PRESETS:
        raise QDeployError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    if channels not in CHANNELS:
        raise QDeployError(f"unknown channels '{channels}'; choose one of {', '.join(CHANNELS)}")
    scale, pmean, pstd = PRESETS[preset]
    if channels == "bgr":
        pmean, pstd = pmean[::-1], pstd[::-1]
    elif channels == "gray":
        pmean, pstd = (float(np.mean(pmean)),), (float(np.mean(pstd)),)
    n = 1 if channels == "gray" else 3
    m = _per_channel(pmean if mean is None else mean, n, "mean")
    s = _per_channel(pstd if std is None else std, n, "std")
    if not all(np.isfinite(v) for v in m):
        raise QDeployError(f"--mean must be finite, got {m}")
    if any(not np.isfinite(v) or v <= 0 for v in s):
        raise QDeployError(f"--std must be positive and finite, got {s}")
    if scale < 1 and any(abs(v) > 1.5 for v in m):
        raise QDeployError(f"--mean {m} looks like pixel units (0..255) but preset '{preset}' "
                           "scales pixels to [0, 1] first; use --preset raw with pixel-unit "
                           "mean/std, or give mean/std in [0, 1] units")
    return scale, m, s


def image_recipe(*, size, resize, pad, channels, layout, preset, mean, std, sources,
                 limit, seed) -> dict:
    """The recipe of a set built from images (what :func:`describe` prints)."""
    scale, m, s = normalisation(preset, channels, mean, std)
    return {
        "format": FORMAT, "version": VERSION, "kind": "images",
        "size": [int(size[0]), int(size[1])], "resize": resize,
        "pad": int(pad) if resize == "letterbox" else None,
        "interpolation": "bilinear", "channels": channels, "layout": layout,
        "preset": preset if mean is None and std is None else f"{preset}+custom",
        "scale": scale, "mean": m, "std": s, "dtype": "float32",
        "sources": sources, "limit": limit, "seed": seed,
    }


def tensor_recipe(*, sample_shape, layout, sources, limit, seed) -> dict:
    """The recipe of a set stacked from .npy/.npz tensors (no pixel pipeline)."""
    return {
        "format": FORMAT, "version": VERSION, "kind": "tensors",
        "sample_shape": [int(d) for d in sample_shape], "layout": layout,
        "dtype": "float32", "sources": sources, "limit": limit, "seed": seed,
    }


# What a saved recipe must hold (qdeploy/schema.py); load_set checks it, so a set
# whose recipe lost or mistyped a field is one line, not a traceback later.
_COMMON = {"format": Key("str"), "version": Key("int"), "kind": Key("str", ("images", "tensors")),
           "layout": Key("str", LAYOUTS), "dtype": Key("str", ("float32",), required=False),
           "sources": Key("list", required=False), "limit": Key("int", required=False, nullable=True),
           "seed": Key("int", required=False, nullable=True)}
IMAGE_SCHEMA = {**_COMMON, "size": Key("ints"), "resize": Key("str", RESIZE_MODES),
                "pad": Key("int", required=False, nullable=True),
                "interpolation": Key("str", required=False), "channels": Key("str", CHANNELS),
                "preset": Key("str"), "scale": Key("num"), "mean": Key("nums"), "std": Key("nums")}
TENSOR_SCHEMA = {**_COMMON, "sample_shape": Key("ints")}


def check_recipe(recipe: dict, where: str, fix: str) -> dict:
    """A saved recipe's fields checked (kinds, allowed values); returns it."""
    check(recipe, {"kind": Key("str", ("images", "tensors"))}, where, "recipe", extra=True, fix=fix)
    schema = IMAGE_SCHEMA if recipe["kind"] == "images" else TENSOR_SCHEMA
    check(recipe, schema, where, "recipe", extra=True, fix=fix)
    if recipe["kind"] == "images":
        n = 1 if recipe["channels"] == "gray" else 3
        if len(recipe["size"]) != 2 or len(recipe["mean"]) != n or len(recipe["std"]) != n \
                or min(recipe["std"]) <= 0:
            raise QDeployError(f"{where}: recipe size/mean/std do not fit {n} channel(s) "
                               f"(size [H, W], positive std); {fix}")
    return recipe


def expected_range(recipe: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (lo, hi) an image recipe can produce; None for tensor sets."""
    if recipe.get("kind") != "images":
        return None
    m, s = np.asarray(recipe["mean"]), np.asarray(recipe["std"])
    return (0 * recipe["scale"] - m) / s, (255 * recipe["scale"] - m) / s


def describe(recipe: dict) -> str:
    """One line such as ``224x224 crop, rgb nchw, imagenet`` for messages."""
    if recipe.get("kind") != "images":
        return f"tensors {'x'.join(map(str, recipe['sample_shape']))} ({recipe['layout']})"
    h, w = recipe["size"]
    pad = f" pad {recipe['pad']}" if recipe["resize"] == "letterbox" else ""
    return f"{h}x{w} {recipe['resize']}{pad}, {recipe['channels']} {recipe['layout']}, {recipe['preset']}"
