"""Small helpers shared by the recipes: float32 scales, C integer division."""
from __future__ import annotations

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def f32(x) -> float:
    """A scale as a TFLite file stores it (float32), returned as a Python float.

    Every Prepare computation starts from the float32 value, because that is
    what TFLite's and TFLite Micro's Prepare functions read from the flatbuffer.
    """
    return float(np.float32(x))


def cdiv(a, b):
    """C integer division (truncation toward zero) of int64 arrays, ``b > 0``."""
    a = np.asarray(a, dtype=np.int64)
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def clamp8(x, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """Clamp an integer array to [lo, hi] and return it as int8."""
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi).astype(np.int8)
