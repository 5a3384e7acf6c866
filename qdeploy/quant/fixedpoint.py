"""Fixed-point helpers of the TFLite int8 specification (gemmlowp arithmetic).

These are the integer primitives every requantisation in qdeploy is made of,
with exactly the semantics of TFLite's reference kernels, TFLite Micro and
CMSIS-NN (the "double rounding" form, i.e. without TFLITE_SINGLE_ROUNDING):

* :func:`quantize_multiplier` — a positive real multiplier as a Q31 integer
  multiplier and a power-of-two exponent (``QuantizeMultiplier``);
* :func:`srdhm` — ``SaturatingRoundingDoublingHighMul``;
* :func:`rdbpot` — ``RoundingDivideByPOT`` (round half away from zero);
* :func:`mbqm` — ``MultiplyByQuantizedMultiplier`` (the per-layer requantisation);
* :func:`mbqm_smaller_than_one` / :func:`mbqm_greater_than_one` — the
  ``...SmallerThanOneExp`` / ``...GreaterThanOne`` forms used by Add, Logistic, ...

All functions take and return numpy integer arrays (int64 internally) or
Python ints, vectorised. The C runtime implements the same functions in C99;
the property tests check them against exact rational arithmetic.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def tflite_round(x: float) -> int:
    """``TfLiteRound``/``std::round``: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def round_away(x) -> np.ndarray:
    """:func:`tflite_round` of every element (float64 in, float64 out)."""
    x = np.asarray(x, np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``real ~= multiplier * 2**(shift - 31)`` with ``multiplier`` in
    [2**30, 2**31) (or 0). Returns ``(multiplier, shift)``; shift > 0 is a left shift."""
    real = float(real)
    if real < 0:
        raise ValueError("quantize_multiplier takes a non-negative multiplier")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tflite_round(q * (1 << 31))
    assert q_fixed <= (1 << 31)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_array(reals) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel :func:`quantize_multiplier`: int32 multipliers, int32 shifts."""
    pairs = [quantize_multiplier(r) for r in np.asarray(reals, dtype=np.float64).reshape(-1)]
    m = np.array([p[0] for p in pairs], dtype=np.int32)
    s = np.array([p[1] for p in pairs], dtype=np.int32)
    return m, s


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp``: for 0 < real < 1, shift <= 0."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"multiplier {real} is not in (0, 1)")
    m, s = quantize_multiplier(real)
    assert s <= 0
    return m, s


def _trunc_div_pow2(x: np.ndarray, bits: int) -> np.ndarray:
    """C integer division by 2**bits (truncation toward zero)."""
    q = np.abs(x) >> bits
    return np.where(x < 0, -q, q)


def srdhm(a, b):
    """``SaturatingRoundingDoublingHighMul(a, b)`` on int32 values."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = _trunc_div_pow2(ab + nudge, 31)
    return np.where(overflow, INT32_MAX, res).astype(np.int64)


def rdbpot(x, exponent):
    """``RoundingDivideByPOT(x, exponent)``: x / 2**exponent rounded to nearest,
    ties away from zero; ``exponent`` in [0, 31]."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def mbqm(x, multiplier, shift):
    """``MultiplyByQuantizedMultiplier(x, multiplier, shift)`` (double rounding):
    ``RoundingDivideByPOT(SRDHM(x * 2**max(shift,0), multiplier), max(-shift,0))``.
    ``multiplier``/``shift`` broadcast against ``x`` (per-channel: shape them)."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rdbpot(srdhm(x * (np.int64(1) << left), multiplier), right)


def mbqm_smaller_than_one(x, multiplier, shift):
    """``MultiplyByQuantizedMultiplierSmallerThanOneExp`` (shift <= 0)."""
    return rdbpot(srdhm(x, multiplier), -np.asarray(shift, dtype=np.int64))


def mbqm_greater_than_one(x, multiplier, left_shift):
    """``MultiplyByQuantizedMultiplierGreaterThanOne`` (left_shift >= 0)."""
    x = np.asarray(x, dtype=np.int64)
    return srdhm(x * (np.int64(1) << np.asarray(left_shift, dtype=np.int64)), multiplier)


def saturate(x, lo: int, hi: int, dtype=np.int8) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi).astype(dtype)


def shift_round(x, shift):
    """The fpga profile's requantisation: arithmetic shift right by ``shift``
    with round-half-up (``(x + 2**(shift-1)) >> shift``); shift <= 0 shifts left."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    right = np.maximum(shift, 0)
    rounded = (x + np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)) >> right
    return rounded << np.maximum(-shift, 0)
