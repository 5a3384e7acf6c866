"""int8 AVERAGE_POOL_2D and MEAN (over H, W) with TFLite's rounding.

* AVERAGE_POOL_2D: ``reference_integer_ops::AveragePool``
  (reference/integer_ops/pooling.h). Input and output share scale and zero
  point (the spec ties them), so the raw int8 values are summed over the
  *valid* (unpadded) part of each window and divided by the number of valid
  elements, rounding half away from zero with C truncation
  (``(acc +- count/2) / count``), then clamped. ONNX AveragePool with
  ``count_include_pad=0`` has exactly these semantics; ``count_include_pad=1``
  divides by the full kernel area and does *not* map onto this kernel when a
  window overlaps the padding. ``ceil_mode`` is not supported here (the caller
  passes pads that give the output size).
* MEAN: Prepare ``PrepareMeanOrSumHelper`` (micro/kernels/reduce_common.cc:
  ``QuantizeMultiplier(s_in / s_out)``), Eval ``QuantizedMeanOrSum``
  (reference/reduce.h), which folds ``1/count`` into the multiplier:
  ``shift_n = min(floor(log2 count), 32, 31 + shift)``,
  ``multiplier' = (multiplier << shift_n) // count``, ``shift' = shift - shift_n``,
  then ``y = MBQM(sum(q) - zp_in * count, multiplier', shift') + zp_out``.
  The same recipe applies whether or not the scales differ (TFLite Micro has
  no special case for equal scales). :func:`mean_params` does the count
  folding once, at Prepare time, since shapes are static.
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ._common import clamp8, f32


def avg_pool_eval(acc_sum, count) -> np.ndarray:
    """TFLite's rounded integer average of window sums (count > 0), as int64."""
    acc = np.asarray(acc_sum, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    num = np.where(acc > 0, acc + count // 2, acc - count // 2)
    q = np.abs(num) // count  # C division truncates toward zero
    return np.where(num < 0, -q, q)


def _window_ranges(size: int, kernel: int, stride: int, pad_begin: int, out: int):
    start = np.arange(out) * stride - pad_begin
    return np.clip(start, 0, size), np.clip(start + kernel, 0, size)


def _windows(in_hw, kernel, strides, pads):
    """Valid row and column ranges ``(y0, y1, x0, x1)`` of every pooling window
    (``pads=(top, left, bottom, right)``, output size ``(H + top + bottom - kh)
    // sh + 1``)."""
    (h, w), (kh, kw), (sh, sw), (pt, pl, pb, pr) = in_hw, kernel, strides, pads
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    return _window_ranges(h, kh, sh, pt, oh) + _window_ranges(w, kw, sw, pl, ow)


def window_counts(in_hw, kernel, strides, pads) -> np.ndarray:
    """Number of valid (unpadded) input elements in each AVERAGE_POOL_2D window,
    ``[OH, OW]`` (int64)."""
    y0, y1, x0, x1 = _windows(in_hw, kernel, strides, pads)
    return (y1 - y0)[:, None] * (x1 - x0)[None, :]


def window_sums(q, kernel, strides, pads) -> tuple[np.ndarray, np.ndarray]:
    """Integer sums of an NCHW tensor over the valid part of each pooling
    window (int64 ``[N, C, OH, OW]``) and their counts (:func:`window_counts`).
    A window entirely in the padding is an error (TFLite fails on it)."""
    q = np.asarray(q, dtype=np.int64)
    n, c, h, w = q.shape
    y0, y1, x0, x1 = _windows((h, w), kernel, strides, pads)
    # integral image: S[.., i, j] = sum of q[.., :i, :j]
    s = np.zeros((n, c, h + 1, w + 1), dtype=np.int64)
    s[:, :, 1:, 1:] = q.cumsum(2).cumsum(3)
    Y0, X0 = y0[:, None], x0[None, :]
    Y1, X1 = y1[:, None], x1[None, :]
    sums = s[:, :, Y1, X1] - s[:, :, Y0, X1] - s[:, :, Y1, X0] + s[:, :, Y0, X0]
    count = (Y1 - Y0) * (X1 - X0)
    if np.any(count == 0):
        raise ValueError("average pool window entirely in the padding (TFLite fails on it)")
    return sums, count


def avg_pool2d_eval(q, kernel, strides, pads, act_min: int = -128, act_max: int = 127):
    """int8 AVERAGE_POOL_2D on an NCHW tensor.

    ``kernel=(kh, kw)``, ``strides=(sh, sw)``, ``pads=(top, left, bottom, right)``
    (ONNX order); output size ``(H + top + bottom - kh) // sh + 1``.
    """
    sums, count = window_sums(q, kernel, strides, pads)
    return clamp8(avg_pool_eval(sums, count), act_min, act_max)


def mean_params(s_in: float, zp_in: int, s_out: float, zp_out: int, count: int) -> dict:
    """Prepare of int8 MEAN over ``count`` elements per output (1/count folded in)."""
    m, shift = fp.quantize_multiplier(f32(s_in) / f32(s_out))
    count = int(count)
    if count <= 0:
        raise ValueError("MEAN over an empty axis")
    shift_n = min(count.bit_length() - 1, 32, 31 + shift)
    return {"zp_in": int(zp_in), "zp_out": int(zp_out), "count": count,
            "multiplier": int((m << shift_n) // count), "shift": int(shift - shift_n)}


def mean_eval(q, params: dict, axes=(2, 3), keepdims: bool = True,
              act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """Eval of int8 MEAN (``QuantizedMeanOrSum``) over ``axes`` of ``q``."""
    q = np.asarray(q, dtype=np.int64)
    count = int(np.prod([q.shape[a] for a in axes]))
    if count != params["count"]:
        raise ValueError(f"MEAN params are for {params['count']} elements, tensor has {count}")
    acc = q.sum(axis=tuple(axes), keepdims=keepdims) - params["zp_in"] * count
    out = fp.mbqm(acc, params["multiplier"], params["shift"]) + params["zp_out"]
    return clamp8(out, act_min, act_max)
