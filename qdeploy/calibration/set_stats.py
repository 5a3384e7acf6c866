"""``qdeploy calib inspect``: what is in a calibration set, and whether its
numbers look like its recipe.

Warnings (each one line in ``warnings``):

* values outside what the recipe can produce, e.g. up to 255 where ``unit``
  or ``imagenet`` was declared (the pixels were never scaled), or within
  [0, 1] where ``raw`` was declared (scaled twice);
* no negative value although the recipe subtracts a mean (the mean/std step
  was skipped);
* a flat sample: every channel holds one value (a black frame, a failed decode);
* exact duplicates (the same sample bytes more than once);
* fewer than 2 samples.

Statistics accumulate in float64 over chunks of samples, so a large set never
needs a float64 copy of itself.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .recipe import describe, expected_range

_CHUNK = 64


def channel_axis(x: np.ndarray, recipe: dict) -> int | None:
    """Axis of the channels in the stacked array (None: a per-tensor view)."""
    if x.ndim < 3:
        return None
    return 1 if recipe.get("layout", "nchw") == "nchw" else x.ndim - 1


def sample_names(recipe: dict, count: int) -> list[str]:
    """A name per sample: the image file, or ``file[i]`` for tensor files."""
    srcs = recipe.get("sources") or []
    if recipe.get("kind") == "images" and len(srcs) == count:
        return [s["name"] for s in srcs]
    names = [f"{s['name']}[{i}]" for s in srcs for i in range(int(s.get("count", 0)))]
    return names if len(names) == count else [f"sample {i}" for i in range(count)]


def _per_channel_view(sample: np.ndarray, axis: int | None) -> np.ndarray:
    """One sample as (channels, values)."""
    if axis is None:
        return sample.reshape(1, -1)
    return np.moveaxis(sample, axis - 1, 0).reshape(sample.shape[axis - 1], -1)


def _channel_stats(x: np.ndarray, axis: int | None) -> list[dict]:
    c = 1 if axis is None else x.shape[axis]
    s = np.zeros(c)
    ss = np.zeros(c)
    lo = np.full(c, np.inf)
    hi = np.full(c, -np.inf)
    n = 0
    for i in range(0, len(x), _CHUNK):
        b = x[i:i + _CHUNK].astype(np.float64)
        b = b.reshape(1, -1) if axis is None else np.moveaxis(b, axis, 0).reshape(c, -1)
        s += b.sum(axis=1)
        ss += (b * b).sum(axis=1)
        lo = np.minimum(lo, b.min(axis=1))
        hi = np.maximum(hi, b.max(axis=1))
        n += b.shape[1]
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean * mean, 0.0))
    return [{"channel": i, "mean": float(mean[i]), "std": float(std[i]),
             "min": float(lo[i]), "max": float(hi[i])} for i in range(c)]


def _recipe_warnings(recipe: dict, chans: list[dict]) -> list[str]:
    rng = expected_range(recipe)
    if rng is None or len(chans) != len(rng[0]):
        return []
    out = []
    lo_all = min(c["min"] for c in chans)
    hi_all = max(c["max"] for c in chans)
    bad = [f"channel {c['channel']} spans [{c['min']:.4g}, {c['max']:.4g}], expected "
           f"[{lo:.4g}, {hi:.4g}]" for c, lo, hi in zip(chans, *rng)
           if c["max"] > hi + 1e-3 * (hi - lo) or c["min"] < lo - 1e-3 * (hi - lo)]
    if bad:
        hint = ""
        if recipe["scale"] < 1 and hi_all > 2:
            hint = "; the values look like raw 0..255 pixels that were never scaled"
        out.append(f"values outside what recipe '{recipe['preset']}' produces: "
                   f"{'; '.join(bad)}{hint}")
    if max(rng[1]) > 10 and hi_all <= 1.0 and not bad:
        out.append(f"all values lie in [{lo_all:.4g}, {hi_all:.4g}] but recipe "
                   f"'{recipe['preset']}' expects values up to {max(rng[1]):.4g}; were the pixels "
                   "scaled twice?")
    if any(m > 0 for m in recipe["mean"]) and lo_all >= 0:
        out.append(f"no negative value (min {lo_all:.4g}) although recipe '{recipe['preset']}' "
                   "subtracts a mean; was the mean/std step skipped?")
    return out


def inspect_set(cs) -> dict:
    """Count, shape, dtype, recipe, per-channel statistics, duplicates,
    constant samples and warnings of a :class:`~.dataset.CalibSet`, as a
    JSON-able dict with stable keys."""
    x, recipe = cs.x, cs.recipe
    names = sample_names(recipe, len(x))
    axis = channel_axis(x, recipe)
    chans = _channel_stats(x, axis) if len(x) else []
    groups: dict[str, list[str]] = {}
    constant = []
    for i in range(len(x)):
        groups.setdefault(hashlib.sha256(np.ascontiguousarray(x[i]).tobytes()).hexdigest(),
                          []).append(names[i])
        per_ch = _per_channel_view(x[i], axis)
        if per_ch.size and (per_ch.min(axis=1) == per_ch.max(axis=1)).all():
            constant.append({"sample": names[i], "value": [float(v) for v in per_ch[:, 0]]})
    dups = [g for g in groups.values() if len(g) > 1]
    warnings = _recipe_warnings(recipe, chans) if chans else []
    warnings += [f"sample {c['sample']} is a flat image (constant "
                 f"{', '.join(f'{v:.4g}' for v in c['value'])})" for c in constant]
    warnings += [f"exact duplicates: {' = '.join(g)}" for g in dups]
    if len(x) < 2:
        warnings.append(f"only {len(x)} sample(s): too few to calibrate (use 100 or more "
                        "representative inputs)")
    return {
        "count": int(len(x)), "shape": [int(d) for d in x.shape], "dtype": str(x.dtype),
        "summary": describe(recipe), "recipe": recipe, "channels": chans,
        "duplicates": dups, "constant": constant, "warnings": warnings,
    }
