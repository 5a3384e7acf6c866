"""int8 PRELU with TFLite's recipe (per-channel slope as an int8 tensor).

* Prepare ``PreluPrepare`` (tensorflow/lite/micro/kernels/prelu_common.cc):
  two Q31 multipliers from double products of the float32 scales,
  ``output_multiplier_1 = QuantizeMultiplier(s_in / s_out)`` (the identity
  branch) and ``output_multiplier_2 = QuantizeMultiplier(s_in * s_alpha /
  s_out)`` (the slope branch); offsets ``-zp_in``, ``-zp_alpha``, ``zp_out``.
* Eval ``reference_ops::BroadcastPrelu4DSlow`` (reference/prelu.h):
  ``x = q - zp_in``; ``x >= 0``: ``MBQM(x, m1, s1)``, else
  ``MBQM(x * (alpha - zp_alpha), m2, s2)``; then ``+ zp_out`` and saturation
  to the output type (PRELU has no fused activation).

The slope ``alpha`` is an int8 tensor with its own per-tensor scale and zero
point (the TFLite int8 specification: PRELU input 1 is per-tensor int8), so a
per-channel slope is a tensor ``[C, 1, 1]`` (NCHW) broadcast against the
input, not a per-channel quantization. Both multipliers are positive (scales
are), a negative slope lives in the int8 values of ``alpha``.
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ._common import f32


def prelu_params(s_in: float, zp_in: int, s_alpha: float, zp_alpha: int,
                 s_out: float, zp_out: int) -> dict:
    """Prepare of int8 PRELU."""
    s_in, s_alpha, s_out = f32(s_in), f32(s_alpha), f32(s_out)
    m1, sh1 = fp.quantize_multiplier(s_in / s_out)
    m2, sh2 = fp.quantize_multiplier(s_in * s_alpha / s_out)
    return {"zp_in": int(zp_in), "zp_alpha": int(zp_alpha), "zp_out": int(zp_out),
            "multiplier_1": m1, "shift_1": sh1, "multiplier_2": m2, "shift_2": sh2}


def prelu_eval(q, alpha, params: dict, qmin: int = -128, qmax: int = 127) -> np.ndarray:
    """Eval of int8 PRELU (numpy broadcasting of ``alpha`` against ``q``);
    returns int64 values saturated to ``[qmin, qmax]``."""
    x = np.asarray(q, dtype=np.int64) - params["zp_in"]
    a = np.asarray(alpha, dtype=np.int64) - params["zp_alpha"]
    pos = fp.mbqm(x, params["multiplier_1"], params["shift_1"])
    neg = fp.mbqm(x * a, params["multiplier_2"], params["shift_2"])
    return np.clip(np.where(x >= 0, pos, neg) + params["zp_out"], qmin, qmax)
