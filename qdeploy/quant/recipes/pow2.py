"""Power-of-two scales for the ``fpga`` profile.

The fpga profile requantises by a rounding arithmetic shift
(:func:`qdeploy.quant.fixedpoint.shift_round`), so every scale is ``2**k``.
"""
from __future__ import annotations

import math

import numpy as np


def pow2_scale(real_range: float, qmax: int = 127) -> float:
    """Smallest ``2**k`` with ``qmax * 2**k >= real_range`` (symmetric int8 covering
    [-real_range, real_range]). A zero range gets ``2**-7``: any scale represents
    0 exactly, and 1/128 keeps a constant-zero tensor's neighbours well scaled."""
    r = abs(float(real_range))
    if not math.isfinite(r):
        raise ValueError(f"range {real_range} is not finite")
    if r == 0.0:
        return 2.0 ** -7
    m, e = math.frexp(r / qmax)  # r/qmax = m * 2**e, m in [0.5, 1)
    k = e - 1 if m == 0.5 else e
    while qmax * 2.0 ** (k - 1) >= r:  # guard the division's rounding
        k -= 1
    while qmax * 2.0 ** k < r:
        k += 1
    return 2.0 ** k


def mean_shift_params(e_in: int, e_out: int, count: int, bits: int = 7) -> dict:
    """fpga spatial mean (GlobalAveragePool, ReduceMean over H, W) from an input
    of scale ``2**e_in`` to an output of scale ``2**e_out``:
    ``y = shift_round(m * sum(x), shift)`` (:func:`mean_shift_eval`).

    The real factor ``2**(e_in - e_out) / count`` is not a power of two for
    most counts (7x7 = 49), so it is ``m / 2**shift`` with ``m`` a positive
    ``bits``-bit integer (default 7: ``m`` is an int8 weight and ``m * x`` one
    int8 MAC, so the mean is a depthwise convolution with a constant kernel
    and no divider or wide multiplier is needed). ``(m, shift)`` minimises
    ``|m / 2**shift - factor|`` (ties: the smallest shift): the gain error is
    below ``2**-bits`` relative (0.4 % for 7 bits) and 0 for power-of-two
    counts. ``m * sum`` of int8 inputs stays below ``2**31`` for windows up
    to ``2**(31 - 7 - bits)`` elements (131072 for 7 bits)."""
    count = int(count)
    if count <= 0:
        raise ValueError("mean over an empty window")
    factor = 2.0 ** (int(e_in) - int(e_out)) / count
    top = (1 << bits) - 1
    best = None
    for shift in range(-40, 64):
        m = min(max(int(math.floor(factor * 2.0 ** shift + 0.5)), 1), top)
        err = abs(m / 2.0 ** shift - factor)
        if best is None or err < best[0]:
            best = (err, m, shift)
    return {"requant": "shift", "multiplier": best[1], "shift": best[2], "count": count}


def mean_shift_eval(q, params: dict, axes=(2, 3), keepdims: bool = True,
                    act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """Eval of :func:`mean_shift_params`: integer sum over ``axes``, times the
    multiplier, rounding shift, clamp (int8)."""
    from ..fixedpoint import shift_round
    q = np.asarray(q, dtype=np.int64)
    count = int(np.prod([q.shape[a] for a in axes]))
    if count != params["count"]:
        raise ValueError(f"mean params are for {params['count']} elements, tensor has {count}")
    acc = q.sum(axis=tuple(axes), keepdims=keepdims) * int(params["multiplier"])
    return np.clip(shift_round(acc, int(params["shift"])), act_min, act_max).astype(np.int8)


def avg_pool_shift_params(e_in: int, e_out: int, counts, bits: int = 7) -> dict:
    """fpga AveragePool from an input of scale ``2**e_in`` to an output of scale
    ``2**e_out``: each output position is ``shift_round(m * sum, shift)`` over
    its window's valid elements, as the spatial mean (:func:`mean_shift_params`,
    the same 7-bit multiplier and its error bound), instead of TFLite's integer
    division by the count.

    With ``count_include_pad=0`` the number of valid elements shrinks at the
    borders (a 3x3 window with padding 1 has 4, 6 or 9), so the parameters are
    a table with one ``(multiplier, shift)`` per distinct count that occurs
    (``counts`` ascending; at most 9 entries for one 2-D pool, usually 1-4).
    The kernel selects the entry of each position's own count, which the
    window geometry fixes at compile time; it never divides."""
    counts = sorted({int(c) for c in np.ravel(counts)})
    table = [mean_shift_params(e_in, e_out, c, bits) for c in counts]
    return {"requant": "shift", "counts": np.array(counts, np.int32),
            "multiplier": np.array([p["multiplier"] for p in table], np.int32),
            "shift": np.array([p["shift"] for p in table], np.int32)}


def avg_pool_shift_eval(q, kernel, strides, pads, params: dict,
                        act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """Eval of :func:`avg_pool_shift_params` on an NCHW int8 tensor: window sums
    over the valid elements, each times the multiplier of its count, rounding
    shift, clamp (int8)."""
    from ..fixedpoint import shift_round
    from .pooling import window_sums
    sums, count = window_sums(q, kernel, strides, pads)
    counts = np.asarray(params["counts"], np.int64)
    k = np.minimum(np.searchsorted(counts, count), len(counts) - 1)
    if np.any(counts[k] != count):
        raise ValueError(f"average pool params are for window counts {counts.tolist()}, "
                         f"the tensor has {sorted(set(np.ravel(count).tolist()))}")
    acc = sums * np.asarray(params["multiplier"], np.int64)[k]
    y = shift_round(acc, np.asarray(params["shift"], np.int64)[k])
    return np.clip(y, act_min, act_max).astype(np.int8)
