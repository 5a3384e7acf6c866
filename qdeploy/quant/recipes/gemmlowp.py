"""gemmlowp's fixed-point transcendental functions, vectorised over int32 raw values.

TFLite's int8 LOGISTIC, TANH and SOFTMAX reference kernels evaluate
``gemmlowp::logistic``, ``gemmlowp::tanh`` and ``exp_on_negative_values`` /
``one_over_one_plus_x_for_x_in_0_1`` of gemmlowp's fixedpoint/fixedpoint.h on
``FixedPoint<int32_t, IntegerBits>`` values. Here a fixed-point value is its raw
int32 (held in an int64 array) and the integer-bit count is an argument:

* product of ``F<a>`` and ``F<b>`` is ``F<a+b>`` with raw ``srdhm(x, y)``;
* ``Rescale<dst>(F<src>)`` is ``SaturatingRoundingMultiplyByPOT<src-dst>``:
  a saturating left shift for a positive exponent, ``rdbpot`` for a negative one;
* ``ExactMulByPot<k>`` changes only the type (the raw value is kept);
* ``+``/``-`` wrap like int32.
"""
from __future__ import annotations

import numpy as np

from ..fixedpoint import INT32_MAX, INT32_MIN, rdbpot, srdhm


def wrap32(x) -> np.ndarray:
    """Two's-complement int32 wrap-around of an int64 array (C int32 ``+``/``-``)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x - INT32_MIN) & 0xFFFFFFFF) + INT32_MIN


def sat_shl(x, exponent: int) -> np.ndarray:
    """``SaturatingRoundingMultiplyByPOT<exponent>`` for exponent >= 0."""
    return np.clip(np.asarray(x, dtype=np.int64) << exponent, INT32_MIN, INT32_MAX)


def rescale(x, src_bits: int, dst_bits: int) -> np.ndarray:
    """``Rescale<dst_bits>`` of a ``FixedPoint<int32, src_bits>`` raw value."""
    e = src_bits - dst_bits
    return sat_shl(x, e) if e >= 0 else rdbpot(x, -e)


def rounding_half_sum(a, b) -> np.ndarray:
    """``RoundingHalfSum``: (a + b) / 2 rounded half away from zero."""
    s = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    sign = np.where(s >= 0, 1, -1)
    t = s + sign
    return np.where(t >= 0, t // 2, -((-t) // 2))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a) -> np.ndarray:
    """exp(a) for F0 ``a`` in [-1/4, 0): Taylor expansion around -1/8."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883
    x = wrap32(np.asarray(a, dtype=np.int64) + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(wrap32(srdhm(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


# (exponent, exp(-2**exponent) in Q0.31) of gemmlowp's barrel shifter
_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
           (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """``exp_on_negative_values(FixedPoint<int32, integer_bits>)`` -> F0 raw."""
    a = np.asarray(a, dtype=np.int64)
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    a_mod_quarter_minus_one_quarter = wrap32((a & (one_quarter - 1)) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _BARREL:
        if integer_bits > exponent:
            bit = np.int64(1) << (frac + exponent)
            result = np.where(remainder & bit, srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal(half_denominator) -> np.ndarray:
    """Three Newton-Raphson steps for 1/half_denominator (F0 in, F2 raw out)."""
    x = wrap32(1515870810 + srdhm(half_denominator, -1010580540))  # 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = wrap32((1 << 29) - srdhm(half_denominator, x))
        x = wrap32(x + rescale(srdhm(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """1 / (1 + a) for F0 ``a`` in [0, 1) -> F0 raw."""
    x = _newton_reciprocal(rounding_half_sum(a, INT32_MAX))
    return rescale(x, 1, 0)  # Rescale<0>(ExactMulByPot<-1>(x))


def one_minus_x_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """(1 - a) / (1 + a) for F0 ``a`` in [0, 1) -> F0 raw."""
    x = _newton_reciprocal(rounding_half_sum(a, INT32_MAX))
    return rescale(wrap32(x - (1 << 29)), 2, 0)


def logistic(a, integer_bits: int) -> np.ndarray:
    """``gemmlowp::logistic(FixedPoint<int32, integer_bits>)`` -> F0 raw."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    abs_a = np.where(positive, a, -a)
    r_pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs_a, integer_bits))
    r_neg = wrap32(INT32_MAX - r_pos)
    return np.where(a == 0, 1 << 30, np.where(positive, r_pos, r_neg))


def tanh(a, integer_bits: int) -> np.ndarray:
    """``gemmlowp::tanh(FixedPoint<int32, integer_bits>)`` -> F0 raw."""
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    n = np.where(negative, a, -a)  # -|a|
    # neg_tanh_on_negative_values: ExactMulByPot<1> makes it F<integer_bits + 1>
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, -t, t))


def get_reciprocal(x, x_integer_digits: int):
    """TFLite's ``GetReciprocal`` (kernels/internal/common.h) for int32 ``x`` > 0:
    returns (F0 raw of 1 / (x normalised to [1, 2)), num_bits_over_unit)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = 32 - np.floor(np.log2(np.maximum(x, 1))).astype(np.int64) - 1
    # exact count of leading zeros of a uint32 (log2 of an int64 can round up)
    too_big = (x << headroom_plus_one) >= (1 << 32)
    headroom_plus_one = headroom_plus_one - too_big
    too_small = (x << headroom_plus_one) < (1 << 31)
    headroom_plus_one = headroom_plus_one + too_small
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_minus_one = wrap32((x << headroom_plus_one) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), num_bits_over_unit
