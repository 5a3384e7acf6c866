"""Element-wise int8 activations with their own TFLite integer recipe.

Each op has a Prepare function ``<op>_params(...) -> dict`` (all float -> int
decisions) and an Eval function ``<op>_eval(q, params) -> int8``:

* LOGISTIC: Prepare ``CalculateArithmeticOpDataLogistic``
  (tensorflow/lite/micro/kernels/logistic_common.cc), Eval
  ``reference_integer_ops::Logistic`` (reference/integer_ops/logistic.h):
  input in Q4.27 via ``frexp(s_in * 2**27)``, saturation outside the input
  radius, ``gemmlowp::logistic``, output fixed at scale 1/256, zero point -128.
* TANH: Prepare ``CalculateArithmeticOpData`` (micro/kernels/tanh.cc), Eval
  ``reference_integer_ops::Tanh`` (reference/integer_ops/tanh.h): same input
  recipe, ``gemmlowp::tanh``, output fixed at scale 1/128, zero point 0.
* HARD_SWISH: Prepare ``HardSwishPrepare`` (micro/kernels/hard_swish_common.cc,
  float32 scale arithmetic, 16-bit multipliers), Eval
  ``reference_ops::HardSwish`` (reference/hard_swish.h).
* LEAKY_RELU: Prepare ``CalculateOpDataLeakyRelu``
  (micro/kernels/leaky_relu_common.cc: identity and alpha multipliers from
  float32 products), Eval ``reference_ops::QuantizeLeakyRelu``
  (reference/leaky_relu.h).

The LUT producers in :mod:`.luts` run these Eval functions on all 256 inputs.
"""
from __future__ import annotations

import math

import numpy as np

from .. import fixedpoint as fp
from . import gemmlowp as gl
from ._common import clamp8, f32

_INPUT_INTEGER_BITS = 4  # LOGISTIC and TANH take their input in Q4.27


def _input_q4_params(in_scale: float, in_zp: int) -> dict:
    """The shared Prepare of int8 LOGISTIC and TANH."""
    real = f32(in_scale) * float(1 << (31 - _INPUT_INTEGER_BITS))
    q, left_shift = math.frexp(real)
    multiplier = fp.tflite_round(q * (1 << 31))
    if multiplier >= 1 << 31:  # TFLite casts 2**31 to int32 here (undefined); refuse instead
        raise ValueError(f"input scale {in_scale} gives a Q31 multiplier of 2**31")
    # CalculateInputRadius(4, left_shift, 31), in double as TFLite does
    radius = math.floor(((1 << _INPUT_INTEGER_BITS) - 1) * 2.0 ** (31 - _INPUT_INTEGER_BITS)
                        / 2.0 ** left_shift)
    return {"zp_in": int(in_zp), "multiplier": int(multiplier), "left_shift": int(left_shift),
            "radius": int(radius)}


def _check_fixed_output(op: str, out_scale, out_zp, scale: float, zp: int) -> None:
    if out_scale is not None and (f32(out_scale) != f32(scale) or int(out_zp) != zp):
        raise ValueError(f"{op} int8 output must have scale {scale} and zero point {zp} "
                         f"(TFLite fixes it), got {out_scale}, {out_zp}")


def logistic_params(in_scale: float, in_zp: int, out_scale=None, out_zp=-128) -> dict:
    """Prepare of int8 LOGISTIC (output scale 1/256, zero point -128)."""
    _check_fixed_output("Logistic", out_scale, out_zp, 1 / 256, -128)
    return _input_q4_params(in_scale, in_zp)


def tanh_params(in_scale: float, in_zp: int, out_scale=None, out_zp=0) -> dict:
    """Prepare of int8 TANH (output scale 1/128, zero point 0)."""
    _check_fixed_output("Tanh", out_scale, out_zp, 1 / 128, 0)
    return _input_q4_params(in_scale, in_zp)


def _q4_eval(q, params: dict, fn, out_fraction_bits: int, out_zp: int) -> np.ndarray:
    x = np.asarray(q, dtype=np.int64) - params["zp_in"]
    inside = np.abs(x) < params["radius"]
    x_q4 = fp.mbqm(np.where(inside, x, 0), params["multiplier"], params["left_shift"])
    y = fp.rdbpot(fn(x_q4, _INPUT_INTEGER_BITS), 31 - out_fraction_bits) + out_zp
    y = np.where(inside, y, np.where(x > 0, 127, -128))
    return clamp8(y)


def logistic_eval(q, params: dict) -> np.ndarray:
    """Eval of int8 LOGISTIC (``reference_integer_ops::Logistic``)."""
    return _q4_eval(q, params, gl.logistic, 8, -128)


def tanh_eval(q, params: dict) -> np.ndarray:
    """Eval of int8 TANH (``reference_integer_ops::Tanh``)."""
    return _q4_eval(q, params, gl.tanh, 7, 0)


def _downscale_to_int16(multiplier: int) -> int:
    """``DownScaleInt32ToInt16Multiplier`` (kernels/internal/common.h)."""
    if multiplier >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (multiplier + (1 << 15)) >> 16


def hard_swish_params(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> dict:
    """Prepare of int8 HARD_SWISH (float32 arithmetic exactly as ``HardSwishPrepare``)."""
    hires = np.float32(1.0 / 128.0) * np.float32(f32(in_scale))
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    out_m, out_e = fp.quantize_multiplier(float(hires / np.float32(f32(out_scale))))
    rel_m, rel_e = fp.quantize_multiplier(float(hires / reluish_scale))
    if out_e > 0:
        raise ValueError(f"HardSwish output scale {out_scale} is too small for input scale "
                         f"{in_scale} (TFLite needs output_multiplier_exponent <= 0)")
    return {"zp_in": int(in_zp), "zp_out": int(out_zp),
            "output_multiplier": _downscale_to_int16(out_m), "output_exponent": int(out_e),
            "reluish_multiplier": _downscale_to_int16(rel_m), "reluish_exponent": int(rel_e)}


def _srdhm16(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16."""
    ab = np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)
    r = fp._trunc_div_pow2(ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14)), 15)
    return np.where((np.asarray(a) == -32768) & (np.asarray(b) == -32768), 32767, r)


def _sdhm16(a, b) -> np.ndarray:
    """``SaturatingDoublingHighMul`` on int16 (truncating, like ARM SQDMULH)."""
    ab = np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)
    r = fp._trunc_div_pow2(ab, 15)
    return np.where((np.asarray(a) == -32768) & (np.asarray(b) == -32768), 32767, r)


def _sat_shl16(x, amount: int) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.int64) * (1 << amount), -32768, 32767)


def _wrap16(x) -> np.ndarray:
    return ((np.asarray(x, dtype=np.int64) + 32768) & 0xFFFF) - 32768


def hard_swish_eval(q, params: dict) -> np.ndarray:
    """Eval of int8 HARD_SWISH (``reference_ops::HardSwish``), int16 intermediates."""
    x = _wrap16(np.asarray(q, dtype=np.int64) - params["zp_in"])
    hires = _wrap16(x * (1 << 7))
    preshift = _srdhm16(hires, params["output_multiplier"])
    e = params["reluish_exponent"]
    reluish = hires
    if e > 0:
        reluish = _sat_shl16(reluish, e - 1)
    reluish = _srdhm16(reluish, params["reluish_multiplier"])
    if e > 0:
        reluish = _sat_shl16(reluish, 1)
    if e < 0:
        reluish = fp.rdbpot(reluish, -e)
    reluish = (reluish + (1 << 15)) >> 1
    out = fp.rdbpot(_sdhm16(reluish, preshift), -params["output_exponent"])
    return clamp8(_wrap16(out + params["zp_out"]))


def quantize_multiplier_signed(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier`` for any sign (LEAKY_RELU's alpha may be negative):
    TFLite rounds ``frexp``'s signed fraction, so -2**31 is kept as is."""
    if real >= 0:
        return fp.quantize_multiplier(real)
    q, shift = math.frexp(real)
    m = fp.tflite_round(q * (1 << 31))
    if shift < -31:
        return 0, 0
    return int(m), int(shift)


def leaky_relu_params(in_scale: float, in_zp: int, out_scale: float, out_zp: int,
                      alpha: float = 0.01) -> dict:
    """Prepare of int8 LEAKY_RELU (``CalculateOpDataLeakyRelu``).

    The source writes the products in float32, but the TFLite Micro build that
    is our judge evaluates them in double (measured: ``s_in * alpha / s_out``
    rounded to float32 first is 1 LSB off on some inputs), so double it is.
    A negative ``alpha`` (not a leaky ReLU any more) is bit-exact except at
    exact ties of the negative branch, where TFLite Micro differs by 1 LSB
    (tests/quant/test_recipes.py bounds it)."""
    s_in, s_out = f32(in_scale), f32(out_scale)
    m_alpha, sh_alpha = quantize_multiplier_signed(s_in * f32(alpha) / s_out)
    m_id, sh_id = fp.quantize_multiplier(s_in / s_out)
    return {"zp_in": int(in_zp), "zp_out": int(out_zp), "multiplier_identity": m_id,
            "shift_identity": sh_id, "multiplier_alpha": m_alpha, "shift_alpha": sh_alpha}


def leaky_relu_eval(q, params: dict) -> np.ndarray:
    """Eval of int8 LEAKY_RELU (``reference_ops::QuantizeLeakyRelu``)."""
    x = np.asarray(q, dtype=np.int64) - params["zp_in"]
    pos = fp.mbqm(x, params["multiplier_identity"], params["shift_identity"])
    neg = fp.mbqm(x, params["multiplier_alpha"], params["shift_alpha"])
    return clamp8(np.where(x >= 0, pos, neg) + params["zp_out"])
