"""Choosing power-of-two scales by mean squared error (fpga profile).

A power-of-two scale that *covers* a range (the smallest ``2**k`` with ``127 *
2**k >= max|x|``) leaves up to one bit of the int8 grid unused: a tensor whose
maximum is 1.01 * 127 * 2**k gets the scale ``2**(k+1)`` and uses half of it.
Clipping those few largest values at the finer scale is usually the smaller
error. So each candidate is scored by the squared error of symmetric int8
quantize-dequantize and the best wins (ties: the covering, i.e. larger, scale):

* **weights** (:func:`pow2_weight_scale`, exact on the weights): candidates
  are the covering scale and ``CANDIDATES - 1`` finer ones; values are rounded
  to ``[-127, 127]`` and the error is summed over every weight. Scales below a
  lower bound (the int32-bias constraint of ``scales.weight_scales``) are not
  candidates.
* **activations** (:func:`pow2_activation_scale`, from the calibration
  histogram of :mod:`qdeploy.calibration.observers`, exact zeros excluded since
  int8 represents them exactly): values inside the clip range
  ``[qmin * s, qmax * s]`` cost ``s**2 / 12`` (uniform rounding noise: the
  histogram bins are at least 16x finer than any candidate step), clipped ones
  their squared distance from the bin centre to the clip bound. Without a
  histogram (a ``--ranges`` file of min/max observers and no samples) the
  covering scale is kept.

Only the covering scale and the ones below are candidates: a coarser scale
never has a smaller error.
"""
from __future__ import annotations


import numpy as np

from .fixedpoint import round_away
from .recipes.pow2 import pow2_scale

CANDIDATES = 3   # the covering scale and the two below it


def weight_error(w: np.ndarray, scale: float) -> float:
    """Sum of squared errors of symmetric int8 weights at ``scale`` (round half
    away from zero, clip to [-127, 127], as ``scales.quantize_weights``)."""
    r = np.asarray(w, np.float64) / scale
    q = np.clip(round_away(r), -127, 127)
    return float(np.sum((q * scale - np.asarray(w, np.float64)) ** 2))


def pow2_weight_scale(w: np.ndarray, lower: float = 0.0) -> float:
    """The power-of-two weight scale with the smallest weight MSE among the
    covering one and the ``CANDIDATES - 1`` below it that are ``>= lower``
    (an all-zero ``w`` keeps the covering scale of ``lower``)."""
    maxabs = float(np.max(np.abs(w))) if np.size(w) else 0.0
    if maxabs == 0.0:
        return pow2_scale(lower * 127) if lower > 0 else 1.0
    top = max(pow2_scale(maxabs), pow2_scale(lower * 127) if lower > 0 else 0.0)
    best = (weight_error(w, top), top)
    for k in range(1, CANDIDATES):
        s = top / 2 ** k
        if s < lower:
            break
        e = weight_error(w, s)
        if e < best[0]:
            best = (e, s)
    return best[1]


def histogram_error(counts: np.ndarray, centres: np.ndarray, scale: float, qmin: int, qmax: int) -> float:
    """Expected squared error of symmetric int8 quantization at ``scale`` of the
    values in a histogram (``counts`` at bin ``centres``)."""
    lo, hi = qmin * scale, qmax * scale
    clip = np.where(centres < lo, centres - lo, np.where(centres > hi, centres - hi, 0.0))
    inside = (centres >= lo) & (centres <= hi)
    return float(np.sum(counts * clip ** 2) + np.sum(counts[inside]) * scale ** 2 / 12)


def pow2_activation_scale(maxabs: float, observer, qmin: int = -128, qmax: int = 127) -> float:
    """The power-of-two activation scale for a calibrated ``maxabs`` (the
    covering scale's bound), refined by the MSE over ``observer``'s histogram
    when it has one (``counts``, ``edges()`` and ``zeros``)."""
    top = pow2_scale(maxabs, qmax)
    counts = getattr(observer, "counts", None)
    if counts is None or not np.any(counts):
        return top
    counts = counts.astype(np.float64).copy()
    counts[len(counts) // 2] -= observer.zeros   # exact zeros: no error at any scale
    e = observer.edges()
    centres = (e[:-1] + e[1:]) / 2
    keep = counts > 0
    counts, centres = counts[keep], centres[keep]
    best = (histogram_error(counts, centres, top, qmin, qmax), top)
    for k in range(1, CANDIDATES):
        s = top / 2 ** k
        err = histogram_error(counts, centres, s, qmin, qmax)
        if err < best[0]:
            best = (err, s)
    return best[1]
