"""Property tests of the fixed-point primitives against exact rational arithmetic.

Exact references (Python ints / Fractions, no floats):
* ``srdhm(a, b) = floor(a*b / 2**31 + 1/2)`` — gemmlowp's nudge makes ties go
  *up* (toward +inf: 0.5 -> 1 but -0.5 -> 0), saturated at INT32_MIN * INT32_MIN;
* ``rdbpot(x, e)`` = x / 2**e rounded half away from zero;
* ``mbqm`` = rdbpot(srdhm(x * 2**left, m), right) and within 1 LSB of x * real;
* ``shift_round(x, s) = floor(x / 2**s + 1/2)``.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from qdeploy.quant import fixedpoint as fp

i32 = st.integers(fp.INT32_MIN, fp.INT32_MAX)


def floor_half_up(fr: Fraction) -> int:
    return math.floor(fr + Fraction(1, 2))


def round_half_away(fr: Fraction) -> int:
    return floor_half_up(fr) if fr >= 0 else -floor_half_up(-fr)


@given(i32, i32)
@example(fp.INT32_MIN, fp.INT32_MIN)
@example(1 << 30, 1)  # 0.5 LSB tie
@example(-(1 << 30), 1)  # -0.5 tie
@example(3 << 29, -2)  # -1.5 tie
@example(fp.INT32_MAX, fp.INT32_MAX)
def test_srdhm_is_exact_rounding(a, b):
    got = int(fp.srdhm(a, b))
    if a == b == fp.INT32_MIN:
        assert got == fp.INT32_MAX
    else:
        assert got == floor_half_up(Fraction(a * b, 1 << 31))
        assert fp.INT32_MIN <= got <= fp.INT32_MAX


@given(i32, st.integers(0, 31))
@example(5, 1)
@example(-5, 1)
@example(-6, 2)
@example(fp.INT32_MIN, 31)
def test_rdbpot_rounds_half_away_from_zero(x, e):
    assert int(fp.rdbpot(x, e)) == round_half_away(Fraction(x, 1 << e))


def test_rdbpot_ties():
    x = np.array([1, -1, 3, -3, 2, -2, 6, -6])
    np.testing.assert_array_equal(fp.rdbpot(x, 1), [1, -1, 2, -2, 1, -1, 3, -3])
    np.testing.assert_array_equal(fp.rdbpot(x, 2), [0, 0, 1, -1, 1, -1, 2, -2])


@given(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False))
def test_quantize_multiplier_range_and_error(real):
    m, s = fp.quantize_multiplier(real)
    assert (1 << 30) <= m < (1 << 31)
    value = Fraction(m) * Fraction(2) ** (s - 31)
    assert abs(value - Fraction(real)) <= Fraction(2) ** (s - 32)  # half a Q31 step


def test_quantize_multiplier_edges():
    assert fp.quantize_multiplier(0.0) == (0, 0)
    assert fp.quantize_multiplier(1.0) == (1 << 30, 1)
    assert fp.quantize_multiplier(0.5) == (1 << 30, 0)
    assert fp.quantize_multiplier(1 - 2.0 ** -40) == (1 << 30, 1)  # rounds to 2**31: renormalised
    assert fp.quantize_multiplier(2.0 ** -40) == (0, 0)  # shift < -31 flushes to zero


@given(st.integers(-(1 << 20), 1 << 20), st.floats(min_value=2.0 ** -20, max_value=2.0 ** 8))
def test_mbqm_matches_exact_two_step_rounding(x, real):
    m, s = fp.quantize_multiplier(real)
    left, right = max(s, 0), max(-s, 0)
    if abs(x) << left >= 1 << 31:
        return  # TFLite's int32 precondition
    exact = round_half_away(Fraction(floor_half_up(Fraction((x << left) * m, 1 << 31)),
                                     1 << right))
    got = int(fp.mbqm(x, m, s))
    assert got == exact
    assert abs(got - Fraction(x) * Fraction(m) * Fraction(2) ** (s - 31)) <= 1


@given(st.integers(-(1 << 24), 1 << 24), st.floats(min_value=1e-6, max_value=0.999))
def test_mbqm_smaller_than_one_equals_mbqm(x, real):
    m, s = fp.quantize_multiplier_smaller_than_one(real)
    assert s <= 0
    assert int(fp.mbqm_smaller_than_one(x, m, s)) == int(fp.mbqm(x, m, s))


@given(st.integers(-255, 255), st.floats(min_value=1.001, max_value=2.0 ** 20))
def test_mbqm_greater_than_one_equals_mbqm(x, real):
    m, s = fp.quantize_multiplier(real)
    assert s >= 0
    assert int(fp.mbqm_greater_than_one(x, m, s)) == int(fp.mbqm(x, m, s))


def test_mbqm_per_channel_broadcast():
    m, s = fp.quantize_multiplier_array([0.5, 0.25, 3.0])
    x = np.array([[10, 10, 10], [-7, -7, -7]])
    # -7 * 0.5 = -3.5 -> -3: the tie is decided by srdhm (half up), not by rdbpot;
    # -7 * 0.25: srdhm gives -3.5 -> -3, then rdbpot(-3, 1) = -1.5 -> -2 (double rounding)
    np.testing.assert_array_equal(fp.mbqm(x, m, s), [[5, 3, 30], [-3, -2, -21]])


@given(st.integers(-(1 << 40), 1 << 40), st.integers(-8, 30))
def test_shift_round_is_round_half_up(x, s):
    want = floor_half_up(Fraction(x, 1 << s)) if s >= 0 else x << -s
    assert int(fp.shift_round(x, s)) == want
