"""Power-of-two scales for the ``fpga`` profile.

The fpga profile requantises by a rounding arithmetic shift
(:func:`qdeploy.quant.fixedpoint.shift_round`), so every scale is ``2**k``.
"""
from __future__ import annotations

import math


def pow2_scale(real_range: float, qmax: int = 127) -> float:
    """Smallest ``2**k`` with ``qmax * 2**k >= real_range`` (symmetric int8 covering
    [-real_range, real_range]). A zero range gets ``2**-7``: any scale represents
    0 exactly, and 1/128 keeps a constant-zero tensor's neighbours well scaled."""
    r = abs(float(real_range))
    if not math.isfinite(r):
        raise ValueError(f"range {real_range} is not finite")
    if r == 0.0:
        return 2.0 ** -7
    m, e = math.frexp(r / qmax)  # r/qmax = m * 2**e, m in [0.5, 1)
    k = e - 1 if m == 0.5 else e
    while qmax * 2.0 ** (k - 1) >= r:  # guard the division's rounding
        k -= 1
    while qmax * 2.0 ** k < r:
        k += 1
    return 2.0 ** k
