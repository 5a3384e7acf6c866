"""int8 SOFTMAX with TFLite's recipe (output scale 1/256, zero point -128).

Prepare: ``CalculateSoftmaxParams`` (tensorflow/lite/micro/kernels/softmax_common.cc)
with ``PreprocessSoftmaxScaling`` (kernels/internal/quantization_util.cc):
``beta * s_in * 2**26`` (capped at 2**31 - 1) as a Q31 multiplier with a left
shift, and ``diff_min = -CalculateInputRadius(5, left_shift)``.
Eval: ``reference_ops::Softmax`` for int8 (reference/softmax.h): per row,
differences to the row maximum are rescaled to Q5.26, ``exp_on_negative_values``
is summed in Q12.19, the sum's reciprocal comes from ``GetReciprocal``, and each
output is ``RoundingDivideByPOT(reciprocal * exp, num_bits_over_unit + 23) - 128``.
Differences below ``diff_min`` give -128.
"""
from __future__ import annotations

import math

import numpy as np

from .. import fixedpoint as fp
from . import gemmlowp as gl
from ._common import clamp8, f32

_SCALED_DIFF_INTEGER_BITS = 5
_ACCUMULATION_INTEGER_BITS = 12
# The most values a row may hold on TFLite: its int8 SOFTMAX checks that the exponent of the
# final shift, num_bits_over_unit + 23, is at most 31 (TFLITE_CHECK: the program stops
# otherwise), i.e. that the sum of the exponentials in Q12.19 is below 2**28: a sum under 512.
# Each exponential is at most 1.0 (the row's maximum gives exactly 1.0), so 512 equal values
# already fail. This interpreter and the C runtime
# compute the wider shift exactly; quant/float_tail.py and prepare.unsupported_reason keep
# such rows out of arm-profile graphs.
SOFTMAX_MAX_DEPTH = 511


def softmax_params(in_scale: float, in_zp: int = 0, out_scale=None, out_zp: int = -128,
                   beta: float = 1.0) -> dict:
    """Prepare of int8 SOFTMAX; the input zero point does not matter (differences)."""
    if out_scale is not None and (f32(out_scale) != f32(1 / 256) or int(out_zp) != -128):
        raise ValueError(f"Softmax int8 output must have scale 1/256 and zero point -128, "
                         f"got {out_scale}, {out_zp}")
    real = min(f32(beta) * f32(in_scale) * float(1 << (31 - _SCALED_DIFF_INTEGER_BITS)),
               float((1 << 31) - 1))
    if real <= 1.0:
        raise ValueError(f"Softmax input scale {in_scale} is too small (TFLite needs "
                         "beta * scale * 2**26 > 1)")
    m, left_shift = fp.quantize_multiplier(real)
    radius = math.floor(((1 << _SCALED_DIFF_INTEGER_BITS) - 1)
                        * 2.0 ** (31 - _SCALED_DIFF_INTEGER_BITS) / 2.0 ** left_shift)
    return {"multiplier": m, "left_shift": left_shift, "diff_min": -int(radius)}


def softmax_eval(q, params: dict, axis: int = -1) -> np.ndarray:
    """Eval of int8 SOFTMAX along ``axis``."""
    x = np.moveaxis(np.asarray(q, dtype=np.int64), axis, -1)
    diff = x - x.max(axis=-1, keepdims=True)
    used = diff >= params["diff_min"]
    scaled = fp.mbqm_greater_than_one(np.where(used, diff, 0), params["multiplier"],
                                      params["left_shift"])
    exps = gl.exp_on_negative_values(scaled, _SCALED_DIFF_INTEGER_BITS)
    in_acc = gl.rescale(exps, 0, _ACCUMULATION_INTEGER_BITS)
    sum_of_exps = gl.wrap32(np.where(used, in_acc, 0).sum(axis=-1, keepdims=True))
    reciprocal, bits_over_unit = gl.get_reciprocal(sum_of_exps, _ACCUMULATION_INTEGER_BITS)
    exponent = bits_over_unit + 31 - 8
    out = fp.rdbpot(fp.srdhm(reciprocal, exps), exponent) - 128
    out = np.where(used, out, -128)
    return np.moveaxis(clamp8(out), -1, axis)
