"""QUANTIZE: float32 -> int8 (AffineQuantize) and int8 -> int8 (Requantize).

* :func:`quantize_input` reproduces ``reference_ops::AffineQuantize``
  (tensorflow/lite/kernels/internal/reference/quantize.h): the float32 input is
  divided by the float32 scale *in float32*, rounded half away from zero
  (``TfLiteRound``), offset by the zero point and clamped.
* :func:`requantize_params` / :func:`requantize_eval` reproduce TFLite's int8 ->
  int8 QUANTIZE (Prepare in tensorflow/lite/micro/kernels/quantize_common.cc:
  ``QuantizeMultiplier(s_in / s_out)`` in double; Eval
  ``reference_ops::Requantize`` in reference/requantize.h:
  ``MultiplyByQuantizedMultiplier(q - zp_in) + zp_out``, clamped).
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ._common import f32


_CHUNK = 1 << 20   # elements quantized at a time: the float64 temporaries stay a few MiB


def quantize_input(x, scale: float, zp: int, qmin: int = -128, qmax: int = 127) -> np.ndarray:
    """float32 ``x`` -> integers in [qmin, qmax] (int8 unless qmin >= 0: uint8)."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty(x.shape, np.uint8 if qmin >= 0 else np.int8)
    flat, dst = x.reshape(-1), out.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        v = flat[i:i + _CHUNK] / np.float32(f32(scale))  # float32 division, as in C
        v = v.astype(np.float64)  # exact; rounding in float64 avoids the float32 x+0.5 pitfall
        r = fp.round_away(v)
        r = np.clip(np.nan_to_num(r), -(2.0 ** 40), 2.0 ** 40).astype(np.int64) + int(zp)
        dst[i:i + _CHUNK] = np.clip(r, qmin, qmax)
    return out


def dequantize(q, scale: float, zp: int) -> np.ndarray:
    """``scale * (q - zp)`` (TFLite DEQUANTIZE: computed in double, stored as float32)."""
    return (f32(scale) * (np.asarray(q, dtype=np.int64) - int(zp))).astype(np.float32)


def requantize_params(s_in: float, zp_in: int, s_out: float, zp_out: int) -> dict:
    """Prepare of int8 -> int8 QUANTIZE: Q31 multiplier and shift of ``s_in / s_out``."""
    m, s = fp.quantize_multiplier(f32(s_in) / f32(s_out))
    return {"multiplier": m, "shift": s, "zp_in": int(zp_in), "zp_out": int(zp_out)}


def requantize_eval(q, params: dict, act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """Eval of int8 -> int8 QUANTIZE (``reference_ops::Requantize``)."""
    acc = fp.mbqm(np.asarray(q, dtype=np.int64) - params["zp_in"], params["multiplier"],
                  params["shift"]) + params["zp_out"]
    return np.clip(acc, act_min, act_max).astype(np.int8)
