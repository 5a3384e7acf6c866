"""The int8 PRELU recipe against TFLite Micro (bit-exact judge) and exact rationals.

One-op PRELU models (the slope a constant int8 tensor or a runtime input, one
value per channel broadcast over H and W) run on TFLite Micro's reference kernel
must give exactly the recipe's int8 outputs; the recipe must stay within one
output LSB of the exact real-valued PReLU of the dequantized operands."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdeploy.quant.recipes import prelu_eval, prelu_params

pytest.importorskip("tflite_micro")
from tests.quant.tflite_oneop import Const, Out, Tensor, run_oneop  # noqa: E402

scales = st.floats(min_value=1e-3, max_value=0.5).map(lambda s: float(np.float32(s)))
alpha_scales = st.floats(min_value=1e-4, max_value=0.02).map(lambda s: float(np.float32(s)))
zps = st.integers(-128, 127)


@settings(max_examples=30, deadline=None)
@given(scales, zps, alpha_scales, zps, st.floats(0.3, 2.0), zps, st.booleans(), st.integers(0, 2 ** 16))
def test_prelu_matches_tflm(s_in, zp_in, s_a, zp_a, ratio, zp_out, const_alpha, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-128, 128, (1, 4, 5, 3)).astype(np.int8)     # NHWC, 3 channels
    alpha = rng.integers(-128, 128, (1, 1, 1, 3)).astype(np.int8)
    s_out = float(np.float32(s_in * ratio))
    spec = Const(alpha, s_a, zp_a) if const_alpha else Tensor(alpha, s_a, zp_a)
    want = run_oneop("PRELU", [Tensor(q, s_in, zp_in), spec], Out(q.shape, s_out, zp_out))
    got = prelu_eval(q, alpha, prelu_params(s_in, zp_in, s_a, zp_a, s_out, zp_out))
    np.testing.assert_array_equal(got, want)


def test_prelu_all_inputs_and_saturation_match_tflm():
    q = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)
    for alpha_q, s_out in [(-128, 0.01), (127, 0.01), (0, 0.05), (50, 0.2)]:
        a = np.array(alpha_q, np.int8).reshape(1, 1, 1, 1)
        want = run_oneop("PRELU", [Tensor(q, 0.05, -3), Const(a, 0.02, 0)], Out(q.shape, s_out, 7))
        got = prelu_eval(q, a, prelu_params(0.05, -3, 0.02, 0, s_out, 7))
        np.testing.assert_array_equal(got, want)
        if s_out == 0.01:   # 0.05 * 130 / 0.01 saturates the positive side
            assert got.max() == 127


def test_prelu_within_one_lsb_of_exact_rationals():
    s_in, zp_in, s_a, zp_a, s_out, zp_out = 0.0625, 5, 0.01, -20, 0.03, -10
    p = prelu_params(s_in, zp_in, s_a, zp_a, s_out, zp_out)
    q = np.arange(-128, 128)
    for a in (-128, -20, 0, 77, 127):
        got = prelu_eval(q, a, p)
        for qi, yi in zip(q, got):
            x = Fraction(np.float32(s_in).item()) * (int(qi) - zp_in)
            slope = Fraction(np.float32(s_a).item()) * (a - zp_a)
            y = x if x >= 0 else x * slope
            exact = y / Fraction(np.float32(s_out).item()) + zp_out
            exact = min(max(exact, -128), 127)
            assert abs(int(yi) - exact) <= 1
