"""int8 ADD, SUB and MUL with TFLite's recipes (numpy broadcasting, as TFLite's).

* ADD: Prepare ``CalculateOpDataAdd`` (tensorflow/lite/micro/kernels/add_common.cc),
  Eval ``reference_integer_ops::Add`` / ``BroadcastAdd6DSlow``
  (reference/integer_ops/add.h): both inputs shifted left by 20, scaled by
  ``s_i / (2 max(s1, s2))`` (``QuantizeMultiplierSmallerThanOneExp``), summed,
  scaled by ``2 max(s1, s2) / (2**20 s_out)``; all multipliers in double.
* SUB: Prepare ``CalculateOpDataSub`` (micro/kernels/sub_common.cc) is the same
  recipe: ``twice_max`` is a float32 product (exact: a doubling), every real
  multiplier a double quotient. (An earlier version divided in float32: 19 of
  301 random SUBs then differed from TFLite Micro by 1 LSB, e.g. s1 = s2 = 0.5,
  s_out = 1/3, whose float32 output multiplier is exactly 3/4 and rounds ties.)
  Eval ``reference_ops::Sub`` (reference/sub.h) subtracts the scaled inputs.
* MUL: Prepare ``CalculateOpDataMul`` (micro/kernels/mul_common.cc):
  ``QuantizeMultiplier(s1 * s2 / s_out)`` in double; Eval
  ``reference_integer_ops::Mul`` (reference/integer_ops/mul.h):
  ``MultiplyByQuantizedMultiplier((q1 - zp1) * (q2 - zp2)) + zp_out``.

The fused activation is the clamp ``[act_min, act_max]``.
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ._common import clamp8, f32

LEFT_SHIFT = 20  # int8 ADD/SUB


def _smaller_than_one(real: float, what: str) -> tuple[int, int]:
    m, s = fp.quantize_multiplier(real) if 0.0 < real < 1.0 else (0, 1)
    if s > 0:
        raise ValueError(f"{what} multiplier {real} is not below 1: the output scale is too "
                         "small for the input scales (TFLite refuses it)")
    return m, s


def _add_like_params(reals, zp1, zp2, zp_out) -> dict:
    (m1, s1), (m2, s2), (mo, so) = (_smaller_than_one(r, w) for r, w in
                                    zip(reals, ("input-1", "input-2", "output")))
    return {"left_shift": LEFT_SHIFT, "zp1": int(zp1), "zp2": int(zp2), "zp_out": int(zp_out),
            "multiplier1": m1, "shift1": s1, "multiplier2": m2, "shift2": s2,
            "multiplier_out": mo, "shift_out": so}


def add_params(s1: float, zp1: int, s2: float, zp2: int, s_out: float, zp_out: int) -> dict:
    """Prepare of int8 ADD (double arithmetic, as ``CalculateOpDataAdd``)."""
    s1, s2, s_out = f32(s1), f32(s2), f32(s_out)
    twice_max = 2.0 * max(s1, s2)
    reals = (s1 / twice_max, s2 / twice_max, twice_max / ((1 << LEFT_SHIFT) * s_out))
    return _add_like_params(reals, zp1, zp2, zp_out)


def sub_params(s1: float, zp1: int, s2: float, zp2: int, s_out: float, zp_out: int) -> dict:
    """Prepare of int8 SUB (TFLite Micro's ``CalculateOpDataSub``: ADD's Prepare)."""
    return add_params(s1, zp1, s2, zp2, s_out, zp_out)


def _scaled_inputs(q1, q2, p: dict):
    x1 = (np.asarray(q1, dtype=np.int64) - p["zp1"]) * (1 << p["left_shift"])
    x2 = (np.asarray(q2, dtype=np.int64) - p["zp2"]) * (1 << p["left_shift"])
    return (fp.mbqm_smaller_than_one(x1, p["multiplier1"], p["shift1"]),
            fp.mbqm_smaller_than_one(x2, p["multiplier2"], p["shift2"]))


def _finish(raw, p: dict, act_min: int, act_max: int) -> np.ndarray:
    out = fp.mbqm_smaller_than_one(raw, p["multiplier_out"], p["shift_out"]) + p["zp_out"]
    return clamp8(out, act_min, act_max)


def add_eval(q1, q2, params: dict, act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """Eval of int8 ADD (broadcasting)."""
    a, b = _scaled_inputs(q1, q2, params)
    return _finish(a + b, params, act_min, act_max)


def sub_eval(q1, q2, params: dict, act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """Eval of int8 SUB (broadcasting)."""
    a, b = _scaled_inputs(q1, q2, params)
    return _finish(a - b, params, act_min, act_max)


def mul_params(s1: float, zp1: int, s2: float, zp2: int, s_out: float, zp_out: int) -> dict:
    """Prepare of int8 MUL."""
    m, s = fp.quantize_multiplier(f32(s1) * f32(s2) / f32(s_out))
    return {"zp1": int(zp1), "zp2": int(zp2), "zp_out": int(zp_out), "multiplier": m, "shift": s}


def mul_eval(q1, q2, params: dict, act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """Eval of int8 MUL (broadcasting, e.g. the SE-block x[N,C,H,W] * s[N,C,1,1])."""
    prod = (np.asarray(q1, dtype=np.int64) - params["zp1"]) * \
           (np.asarray(q2, dtype=np.int64) - params["zp2"])
    out = fp.mbqm(prod, params["multiplier"], params["shift"]) + params["zp_out"]
    return clamp8(out, act_min, act_max)
