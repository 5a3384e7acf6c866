"""Scales, zero points and integer weights: the quantizer's arithmetic rules.

Activations (per tensor):
* asymmetric (arm, ort): the range is nudged to include 0, ``scale = (hi - lo)
  / (qmax - qmin)`` and ``zero_point = qmin + round(-lo / scale)`` clamped to
  the dtype (TFLite's ``ChooseQuantizationParams``);
* symmetric power-of-two (fpga): ``scale = 2**ceil(log2(max|lo|,|hi| / 127))``,
  zero point 0.
* A degenerate range, narrower than ``MIN_SPAN`` (a constant activation, a
  dead ReLU whose output is 0 on every calibration sample), holds no
  information to resolve: it is given the width ``DEGENERATE_SPAN`` = 1
  (asymmetric: ``[lo, lo + 1]``, scale 1/255; symmetric: ``max|x|`` = 1/2).
  Zero stays exact at any scale, so the tensor's values are the same; what the
  scale sets is the requantisation ratios of the ops around it, which runtimes
  bound: behind a dead ReLU the width ``MIN_SPAN`` itself (scale 3.9e-8) made
  the conv's ``s_in * s_w / s_out`` exceed 256, and LiteRT's XNNPACK refused
  the TFLite file. A unit range sits in the middle of the usual activation
  scales, so the ratios to its neighbours stay near 1. (TFLite's converter and
  onnxruntime give an all-zero tensor the scale 1, PyTorch a scale of at least
  6.1e-5.) Ranges of
  ``MIN_SPAN`` or more are untouched.

Weights: int8 symmetric in [-127, 127], per output channel or per tensor, so
``scale = max|w| / 127`` (power-of-two targets: the power of two with the
smallest weight MSE, ``pow2_select.pow2_weight_scale``, which may clip the
largest weights). Two corrections, both documented per layer in the
quantizer's warnings:
* an all-zero channel has no range: its scale is chosen so that the channel's
  requantisation multiplier is 1 (``s_out / s_in``); the int weights are 0
  either way and the bias then keeps full output precision;
* the int32 bias ``round(b / (s_in * s_w))`` must fit int32: where it would
  not (``s_in * s_w`` tiny against a large bias) the weight scale is raised to
  ``|b| / (s_in * (2**31 - 1))`` (the weights lose precision, the bias fits).
Scales are float32 values (what every emitter writes); derived quantities
(multipliers, bias scales) are computed from those float32 values in float64,
as the TFLite converter does.
"""
from __future__ import annotations

import math

import numpy as np

from .fixedpoint import round_away, tflite_round

MIN_SPAN = 1e-5          # a range narrower than this is degenerate ...
DEGENERATE_SPAN = 1.0    # ... and gets this width (see the module docstring)
INT32_LIMIT = (1 << 31) - 1


def pow2_ceil(x: float) -> float:
    """The smallest power of two >= x (x > 0)."""
    m, e = math.frexp(x)
    return math.ldexp(1.0, e - 1) if m == 0.5 else math.ldexp(1.0, e)


def activation_params(lo: float, hi: float, qmin: int, qmax: int, symmetric: bool,
                      pow2: bool) -> tuple[np.float32, int]:
    """(scale, zero_point) for a real range ``[lo, hi]``."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        m = symmetric_maxabs(lo, hi)
        s = m / 127.0
        if pow2:
            s = pow2_ceil(s)
        return np.float32(s), 0
    if hi - lo < MIN_SPAN:
        hi = lo + DEGENERATE_SPAN
    s = np.float32((hi - lo) / (qmax - qmin))
    zp = qmin + tflite_round(-lo / float(s))
    return s, int(min(max(zp, qmin), qmax))


def symmetric_maxabs(lo: float, hi: float) -> float:
    """``max(|lo|, |hi|)`` of a symmetric range; ``DEGENERATE_SPAN / 2`` for a
    degenerate one (narrower than ``MIN_SPAN``)."""
    m = max(-min(float(lo), 0.0), max(float(hi), 0.0))
    return m if 2 * m >= MIN_SPAN else DEGENERATE_SPAN / 2


def quantize_value(x: float, scale: float, zp: int, qmin: int, qmax: int) -> int:
    return int(min(max(zp + tflite_round(float(x) / float(scale)), qmin), qmax))


def clamp_bounds(clamp, scale: float, zp: int, qmin: int, qmax: int) -> tuple[int, int]:
    """Integer clamp of a fused activation ``(lo, hi)`` intersected with the
    dtype range (TFLite ``CalculateActivationRangeQuantized``)."""
    lo, hi = clamp if clamp is not None else (-math.inf, math.inf)
    amin = qmin if not math.isfinite(lo) else max(qmin, zp + tflite_round(lo / float(scale)))
    amax = qmax if not math.isfinite(hi) else min(qmax, zp + tflite_round(hi / float(scale)))
    return int(amin), int(amax)


def weight_scales(w: np.ndarray, per_channel: bool, pow2: bool, s_in: float, s_out: float,
                  bias: np.ndarray | None, wmax: int = 127) -> tuple[np.ndarray, list[str]]:
    """float32 weight scales (one per output channel = axis 0, or one) and notes
    about the corrections applied; ``wmax`` 127, or 63 for 7-bit weights."""
    notes: list[str] = []
    w = np.asarray(w, np.float64)
    c = w.shape[0]
    maxabs = np.abs(w.reshape(c, -1)).max(axis=1)
    b = np.zeros(c) if bias is None else np.abs(np.asarray(bias, np.float64).reshape(c))
    if not per_channel:
        maxabs = np.full(c, maxabs.max())
    s = maxabs / float(wmax)
    zero = maxabs == 0
    if zero.any():
        s[zero] = s_out / s_in
        notes.append(f"{int(zero.sum())} all-zero output channel(s): scale set for a unit multiplier")
    # The int32 bias must leave room for the dot product it is added to: every backend
    # (TFLite's reference kernels, onnxruntime's MLAS, the C bundle) accumulates bias + sum in
    # int32, and |x - zp_x| <= 255, |w| <= wmax on w[0].size terms. A bias allowed up to 2**31
    # wrapped onnxruntime's accumulator on ppocr_v5_det (QDQ up to 174 LSB off the reference).
    room = float(w[0].size) * 255 * wmax
    limit = max(INT32_LIMIT - room, INT32_LIMIT / 2)
    need = b / (float(s_in) * limit) * (1 + 1e-6)
    raise_ = need > s
    if raise_.any():
        if not per_channel:
            need = np.full(c, need.max())
        s = np.maximum(s, need)
        notes.append(f"weight scale raised on {int(raise_.sum())} channel(s) so that the int32 bias plus "
                     "the dot product fit the int32 accumulator (s_in * s_w too small for the bias)")
    if pow2:   # fpga: the power of two with the smallest weight MSE (pow2_select.py), >= the bias bound
        from .pow2_select import pow2_weight_scale
        lower = need if per_channel else np.full(c, need.max())
        s = np.array([pow2_ceil(v) if zero[k] else pow2_weight_scale(w[k] if per_channel else w, lower[k])
                      for k, v in enumerate(s[:c if per_channel else 1])])
    if not per_channel:
        s = s[:1]
    return s.astype(np.float32), notes


def quantize_weights(w: np.ndarray, scales: np.ndarray, wmax: int = 127) -> np.ndarray:
    """int8 weights in [-wmax, wmax] (127; 63 for 7-bit weights), round half away from zero."""
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = round_away(np.asarray(w, np.float64) / scales.astype(np.float64).reshape(shape))
    return np.clip(q, -wmax, wmax).astype(np.int8)


def quantize_bias(b: np.ndarray | None, s_in: float, s_w: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias and its float32 scale ``s_in * s_w`` (per channel)."""
    bscale = (np.float64(s_in) * s_w.astype(np.float64)) * np.ones(c)
    if b is None:
        return np.zeros(c, np.int32), bscale.astype(np.float32)
    q = round_away(np.asarray(b, np.float64) / bscale)
    return np.clip(q, -INT32_LIMIT - 1, INT32_LIMIT).astype(np.int32), bscale.astype(np.float32)


def pow2_exponent(scale: float) -> int:
    """log2 of a power-of-two scale (exact)."""
    m, e = math.frexp(float(scale))
    if m != 0.5:
        raise ValueError(f"scale {scale} is not a power of two")
    return e - 1
