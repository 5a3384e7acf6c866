"""256-entry lookup tables for element-wise activations.

A table is indexed by ``q - qmin`` (int8: ``q + 128``) and holds the output
integer for every possible input, so a lookup is exactly the function that
built it:

* ``logistic_lut``, ``tanh_lut``, ``hard_swish_lut``, ``leaky_relu_lut`` run
  the TFLite int8 reference recipe (:mod:`.activations`) on all 256 inputs, so
  a lookup is bit-exact with TFLite's kernel;
* :func:`float_lut` evaluates the real function in float64 on the dequantized
  input and rounds half away from zero: for functions without a TFLite kernel
  (SiLU, HardSigmoid, ...) and for the ``fpga`` profile;
* :func:`lut_vs_recipe_error` measures, in output LSB, how far a float LUT is
  from the TFLite recipe (DESIGN §2: "where a LUT replaces a TFLite kernel's
  recipe, the difference is measured and stated").
"""
from __future__ import annotations

import math

import numpy as np

from ..fixedpoint import round_away
from . import activations as act
from ._common import f32


def _all_inputs(dtype=np.int8) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.arange(info.min, info.max + 1, dtype=np.int64)


def logistic_lut(in_scale: float, in_zp: int, out_scale=None, out_zp=-128) -> np.ndarray:
    """TFLite int8 LOGISTIC as a table (output scale 1/256, zero point -128)."""
    return act.logistic_eval(_all_inputs(), act.logistic_params(in_scale, in_zp, out_scale, out_zp))


def tanh_lut(in_scale: float, in_zp: int, out_scale=None, out_zp=0) -> np.ndarray:
    """TFLite int8 TANH as a table (output scale 1/128, zero point 0)."""
    return act.tanh_eval(_all_inputs(), act.tanh_params(in_scale, in_zp, out_scale, out_zp))


def hard_swish_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """TFLite int8 HARD_SWISH as a table."""
    return act.hard_swish_eval(_all_inputs(),
                               act.hard_swish_params(in_scale, in_zp, out_scale, out_zp))


def leaky_relu_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int,
                   alpha: float = 0.01) -> np.ndarray:
    """TFLite int8 LEAKY_RELU as a table."""
    return act.leaky_relu_eval(_all_inputs(),
                               act.leaky_relu_params(in_scale, in_zp, out_scale, out_zp, alpha))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


FUNCTIONS = {
    "sigmoid": lambda x, **k: _sigmoid(x),
    "tanh": lambda x, **k: np.tanh(x),
    "hardswish": lambda x, **k: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hardsigmoid": lambda x, alpha=1 / 6, beta=0.5, **k: np.clip(alpha * x + beta, 0.0, 1.0),
    "silu": lambda x, **k: x * _sigmoid(x),
    "relu": lambda x, **k: np.maximum(x, 0.0),
    "relu6": lambda x, **k: np.clip(x, 0.0, 6.0),
    "leaky_relu": lambda x, alpha=0.01, **k: np.where(x >= 0, x, alpha * x),
}


def float_lut(fn_name: str, in_scale: float, in_zp: int, out_scale: float, out_zp: int,
              dtype=np.int8, **kwargs) -> np.ndarray:
    """``round_half_away(fn(s_in * (q - zp_in)) / s_out) + zp_out``, clamped, for
    all inputs q of ``dtype`` (int8 or uint8), computed in float64.

    ``fn_name`` is a key of :data:`FUNCTIONS`; ``hardsigmoid`` takes
    ``alpha``/``beta`` (ONNX defaults 0.2/0.5 are *not* assumed: the default
    here is PyTorch's 1/6, 0.5), ``leaky_relu`` takes ``alpha``.
    """
    if fn_name not in FUNCTIONS:
        raise ValueError(f"no LUT function '{fn_name}' (known: {', '.join(sorted(FUNCTIONS))})")
    info = np.iinfo(dtype)
    q = _all_inputs(dtype)
    y = FUNCTIONS[fn_name](f32(in_scale) * (q - int(in_zp)).astype(np.float64), **kwargs)
    v = y / f32(out_scale)
    r = round_away(v) + int(out_zp)
    return np.clip(r, info.min, info.max).astype(dtype)


def lut_eval(q, lut) -> np.ndarray:
    """Look ``q`` up in a table built by this module (index ``q - qmin``)."""
    lut = np.asarray(lut)
    return lut[np.asarray(q, dtype=np.int64) - np.iinfo(lut.dtype).min]


_RECIPES = {
    "sigmoid": lambda s, z, so, zo, **k: logistic_lut(s, z),
    "tanh": lambda s, z, so, zo, **k: tanh_lut(s, z),
    "hardswish": lambda s, z, so, zo, **k: hard_swish_lut(s, z, so, zo),
    "leaky_relu": lambda s, z, so, zo, alpha=0.01, **k: leaky_relu_lut(s, z, so, zo, alpha),
}
_FIXED_OUTPUT = {"sigmoid": (1 / 256, -128), "tanh": (1 / 128, 0)}


def lut_vs_recipe_error(fn_name: str, in_scale: float, in_zp: int, out_scale: float = math.nan,
                        out_zp: int = 0, **kwargs) -> int:
    """Max |float LUT - TFLite recipe| in output LSB over all 256 int8 inputs.

    For sigmoid/tanh the output quantization is the one TFLite fixes (the
    ``out_*`` arguments are ignored)."""
    if fn_name not in _RECIPES:
        raise ValueError(f"'{fn_name}' has no TFLite integer recipe to compare with")
    out_scale, out_zp = _FIXED_OUTPUT.get(fn_name, (out_scale, out_zp))
    table = float_lut(fn_name, in_scale, in_zp, out_scale, out_zp, **kwargs).astype(np.int64)
    recipe = _RECIPES[fn_name](in_scale, in_zp, out_scale, out_zp, **kwargs).astype(np.int64)
    return int(np.max(np.abs(table - recipe)))
