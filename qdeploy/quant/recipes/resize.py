"""int8 RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR as TFLite computes them (NCHW here).

* Bilinear: ``reference_ops::ResizeBilinearInteger`` (reference/resize_bilinear.h),
  what TFLite Micro runs for int8 (micro/kernels/resize_bilinear.cc): the scale
  ``in/out`` in Q10 (``((1<<10) in + out/2) / out``), source coordinates in
  Q10, weights products in Q20, rounded half away from zero with C division.
  Input and output share scale and zero point.
* Nearest: ``reference_ops::ResizeNearestNeighbor``
  (reference/resize_nearest_neighbor.h): source index
  ``floor((x + offset) * scale)`` (``TfLiteRound`` with align_corners) in float32,
  clamped to the input. The index tables are integers computed once per shape.

ONNX ``Resize`` maps exactly onto these flags:

=============================  =====================  ===============================
coordinate_transformation_mode TFLite flags           nearest_mode (nearest only)
=============================  =====================  ===============================
asymmetric                     (False, False)         floor
half_pixel                     (False, True)          round_prefer_ceil
pytorch_half_pixel (out > 1)   (False, True)          round_prefer_ceil
align_corners                  (True, False)          round_prefer_ceil
=============================  =====================  ===============================

(flags are ``(align_corners, half_pixel_centers)``). Other combinations
(``tf_crop_and_resize``, ``round_prefer_floor``, ``ceil``, ``pytorch_half_pixel``
with an output size of 1) have no TFLite equivalent. For bilinear the Q10
coordinate arithmetic of TFLite is itself an approximation of ONNX's float
coordinates; the reference interpreter follows TFLite.
"""
from __future__ import annotations

import numpy as np

from ..fixedpoint import round_away
from ._common import cdiv

_FLAGS = {"asymmetric": (False, False), "half_pixel": (False, True),
          "pytorch_half_pixel": (False, True), "align_corners": (True, False)}
_NEAREST_MODE = {"asymmetric": "floor", "half_pixel": "round_prefer_ceil",
                 "pytorch_half_pixel": "round_prefer_ceil", "align_corners": "round_prefer_ceil"}


def tflite_resize_flags(coordinate_transformation_mode: str, out_hw,
                        nearest_mode: str | None = None) -> tuple[bool, bool]:
    """``(align_corners, half_pixel_centers)`` of an ONNX Resize, or ValueError."""
    mode = coordinate_transformation_mode
    if mode not in _FLAGS or (mode == "pytorch_half_pixel" and min(out_hw) <= 1):
        raise ValueError(f"Resize coordinate_transformation_mode '{mode}' has no TFLite "
                         "equivalent (use half_pixel, align_corners or asymmetric)")
    if nearest_mode is not None and nearest_mode != _NEAREST_MODE[mode]:
        raise ValueError(f"Resize nearest_mode '{nearest_mode}' with '{mode}' has no TFLite "
                         f"equivalent (use '{_NEAREST_MODE[mode]}')")
    return _FLAGS[mode]


def resize_bilinear_params(in_shape, sizes, coordinate_transformation_mode: str) -> dict:
    """Prepare of RESIZE_BILINEAR from an ONNX Resize (NCHW shapes/sizes)."""
    out_hw = (int(sizes[-2]), int(sizes[-1]))
    ac, hp = tflite_resize_flags(coordinate_transformation_mode, out_hw)
    return {"out_hw": list(out_hw), "align_corners": ac, "half_pixel_centers": hp}


def _scale_10(in_size: int, out_size: int, align_corners: bool) -> int:
    if align_corners and out_size > 1:
        return ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    return ((1 << 10) * in_size + out_size // 2) // out_size


def _interp_axis(in_size: int, out_size: int, align_corners: bool, half_pixel: bool):
    """``ComputeInterpolationValuesInteger`` for every output index."""
    scale = _scale_10(in_size, out_size, align_corners)
    v = np.arange(out_size, dtype=np.int64) * scale
    if half_pixel:
        v = v + scale // 2 - (1 << 9)
    lo = np.maximum(cdiv(v, 1 << 10), 0)
    hi = np.minimum(cdiv(v + (1 << 10) - 1, 1 << 10), in_size - 1)
    return v, lo, hi


def bilinear_taps(in_size: int, out_size: int, align_corners: bool, half_pixel: bool):
    """The two source indices of every output index along one axis and the
    Q10 weight of the second one: ``(lo, hi, frac)`` (the first weighs
    ``1024 - frac``)."""
    v, lo, hi = _interp_axis(in_size, out_size, align_corners, half_pixel)
    return lo, hi, v - (lo << 10)


def resize_bilinear_eval(q, out_hw, align_corners: bool = False,
                         half_pixel_centers: bool = False) -> np.ndarray:
    """int8 RESIZE_BILINEAR on NCHW ``q``."""
    q = np.asarray(q, dtype=np.int64)
    h, w = q.shape[-2:]
    y0, y1, fy = bilinear_taps(h, int(out_hw[0]), align_corners, half_pixel_centers)
    x0, x1, fx = bilinear_taps(w, int(out_hw[1]), align_corners, half_pixel_centers)
    fy, fx = fy[:, None], fx[None, :]  # Q10 weights of the upper row y1 / column x1
    Y0, Y1, X0, X1 = y0[:, None], y1[:, None], x0[None, :], x1[None, :]
    acc = (q[..., Y0, X0] * ((1 << 10) - fy) * ((1 << 10) - fx)
           + q[..., Y1, X0] * fy * ((1 << 10) - fx)
           + q[..., Y0, X1] * ((1 << 10) - fy) * fx
           + q[..., Y1, X1] * fy * fx)
    out = cdiv(acc + np.where(acc > 0, 1 << 19, -(1 << 19)), 1 << 20)
    return out.astype(np.int8)


def nearest_indices(in_size: int, out_size: int, align_corners: bool,
                    half_pixel_centers: bool) -> np.ndarray:
    """``GetNearestNeighbor`` for every output index (float32, as TFLite)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    v = ((np.arange(out_size).astype(np.float32) + offset) * scale).astype(np.float64)
    idx = round_away(v) if align_corners else np.floor(v)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if half_pixel_centers else idx


def resize_nearest_eval(q, out_hw, align_corners: bool = False,
                        half_pixel_centers: bool = False) -> np.ndarray:
    """RESIZE_NEAREST_NEIGHBOR on NCHW ``q`` (any dtype: it only copies)."""
    q = np.asarray(q)
    h, w = q.shape[-2:]
    iy = nearest_indices(h, int(out_hw[0]), align_corners, half_pixel_centers)
    ix = nearest_indices(w, int(out_hw[1]), align_corners, half_pixel_centers)
    return q[..., iy[:, None], ix[None, :]]
