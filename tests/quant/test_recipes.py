"""The TFLite int8 recipes against TFLite Micro (the judge) and independent arithmetic.

Each test builds a one-op int8 TFLite model (tests/quant/tflite_oneop.py), runs
it on TFLite Micro's reference kernels and requires the recipe's Eval to give
exactly the same int8 outputs. LUT ops are checked on all 256 inputs. Where a
straightforward computation is feasible (ADD by exact rationals, average-pool
rounding, pooling windows) it is written here independently as well.
TFLite Micro runs NHWC; the recipes take NCHW, so arrays are transposed.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdeploy.quant import recipes as R

pytest.importorskip("tflite_micro")
from tests.quant.tflite_oneop import Const, Out, Tensor, run_oneop  # noqa: E402

ALL = np.arange(-128, 128, dtype=np.int8)
scales = st.floats(min_value=1e-3, max_value=0.5).map(lambda s: float(np.float32(s)))
zps = st.integers(-128, 127)
FAST = settings(max_examples=25, deadline=None)


def nhwc(x):
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def nchw(x):
    return np.transpose(x, (0, 3, 1, 2))


def tflm_lut(op, s_in, zp_in, s_out, zp_out, options=None):
    x = ALL.reshape(1, 16, 16, 1)
    return run_oneop(op, [Tensor(x, s_in, zp_in)], Out(x.shape, s_out, zp_out), options).ravel()


# -- LUT activations: all 256 inputs ------------------------------------------------------

@FAST
@given(scales, zps)
def test_logistic_lut_matches_tflm(s, zp):
    np.testing.assert_array_equal(R.logistic_lut(s, zp), tflm_lut("LOGISTIC", s, zp, 1 / 256, -128))


@FAST
@given(scales, zps)
def test_tanh_lut_matches_tflm(s, zp):
    np.testing.assert_array_equal(R.tanh_lut(s, zp), tflm_lut("TANH", s, zp, 1 / 128, 0))


@FAST
@given(scales, zps, st.floats(0.3, 1.5), zps)
def test_hard_swish_lut_matches_tflm(s, zp, ratio, zp_out):
    s_out = float(np.float32(s * ratio))
    np.testing.assert_array_equal(R.hard_swish_lut(s, zp, s_out, zp_out),
                                  tflm_lut("HARD_SWISH", s, zp, s_out, zp_out))


@FAST
@given(scales, zps, st.floats(0.3, 2.0), zps, st.sampled_from([0.01, 0.1, 0.2, 0.3, 1.5]))
def test_leaky_relu_lut_matches_tflm(s, zp, ratio, zp_out, alpha):
    s_out = float(np.float32(s * ratio))
    np.testing.assert_array_equal(R.leaky_relu_lut(s, zp, s_out, zp_out, alpha=alpha),
                                  tflm_lut("LEAKY_RELU", s, zp, s_out, zp_out, {"alpha": alpha}))


@FAST
@given(scales, zps, st.floats(0.3, 2.0), zps, st.sampled_from([-0.25, -0.1]))
def test_leaky_relu_negative_alpha_within_one_lsb_of_tflm(s, zp, ratio, zp_out, alpha):
    """A negative slope makes the alpha multiplier negative; TFLite Micro's build then
    rounds exact ties of the negative branch differently from the double-rounding
    MultiplyByQuantizedMultiplier (seen: -125 * -0.25 = 31.25 -> TFLM 31, recipe 32 at
    s_in = s_out = 0.5). No real CNN has a negative leaky slope; the difference is
    stated in leaky_relu_params and bounded here."""
    s_out = float(np.float32(s * ratio))
    ours = R.leaky_relu_lut(s, zp, s_out, zp_out, alpha=alpha).astype(int)
    tflm = tflm_lut("LEAKY_RELU", s, zp, s_out, zp_out, {"alpha": alpha}).astype(int)
    assert np.abs(ours - tflm).max() <= 1


def test_fixed_output_quantization_is_enforced():
    with pytest.raises(ValueError, match="1/256|0.00390625"):
        R.logistic_lut(0.1, 0, 0.01, 0)
    with pytest.raises(ValueError):
        R.softmax_params(0.1, 0, 1 / 128, 0)


# -- float LUTs ---------------------------------------------------------------------------

def test_float_lut_rounds_half_away_from_zero_and_clamps():
    # relu6 with s_in = 1/4, s_out = 1/2: y = q/4 -> q/2 in output LSB; ties at odd q
    lut = R.float_lut("relu6", 0.25, 0, 0.5, 0)
    q = ALL.astype(np.int64)
    want = np.clip(np.floor(np.clip(q, 0, 24) / 2 + 0.5), -128, 127)  # x >= 0: half up
    np.testing.assert_array_equal(lut, want)
    neg = R.float_lut("leaky_relu", 1.0, 0, 1.0, 0, alpha=0.5)
    assert neg[-3 + 128] == -2 and neg[-1 + 128] == -1 and neg[5 + 128] == 5  # -1.5 -> -2
    u8 = R.float_lut("sigmoid", 0.1, 128, 1 / 256, 0, dtype=np.uint8)
    assert u8.dtype == np.uint8 and R.lut_eval(np.array([128], np.uint8), u8)[0] == 128


def test_float_lut_hardsigmoid_alpha_beta():
    lut = R.float_lut("hardsigmoid", 0.1, 0, 1 / 256, -128, alpha=0.2, beta=0.5)
    x = 0.1 * ALL.astype(np.float64)
    want = np.clip(np.floor(np.clip(0.2 * x + 0.5, 0, 1) * 256 + 0.5) - 128, -128, 127)
    np.testing.assert_array_equal(lut, want)


@pytest.mark.parametrize("fn,s_out,zp_out", [("sigmoid", None, 0), ("tanh", None, 0),
                                             ("hardswish", 0.02, -100), ("leaky_relu", 0.05, 10)])
def test_lut_vs_recipe_error_is_at_most_one_lsb(fn, s_out, zp_out):
    """DESIGN §2: a float LUT replacing a TFLite recipe differs by at most 1 LSB."""
    for s_in, zp in [(0.05, 0), (0.03, -20), (0.1, 17)]:
        err = R.lut_vs_recipe_error(fn, s_in, zp, s_out if s_out else float("nan"), zp_out)
        assert err <= 1, (fn, s_in, zp, err)


def test_lut_eval_indexes_by_q_minus_qmin():
    lut = R.logistic_lut(0.05, 3)
    q = np.array([[-128, 0], [5, 127]], dtype=np.int8)
    np.testing.assert_array_equal(R.lut_eval(q, lut), R.logistic_eval(q, R.logistic_params(0.05, 3)))


# -- ADD / SUB / MUL ----------------------------------------------------------------------

def _edge_tensor(rng, shape):
    """Random int8 with the extremes and zero forced in (saturation, ties)."""
    x = rng.integers(-128, 128, size=shape).astype(np.int8)
    flat = x.reshape(-1)
    flat[:3] = [-128, 127, 0]
    return x


def _binary_judge(op, q1, q2, p1, p2, po, act=None):
    out_shape = np.broadcast_shapes(q1.shape, q2.shape)
    out = run_oneop(op, [Tensor(nhwc(q1), *p1), Tensor(nhwc(q2), *p2)],
                    Out((out_shape[0], *out_shape[2:], out_shape[1]), *po),
                    {"fusedActivationFunction": act or 0})
    return nchw(out)


shapes2 = st.sampled_from([((1, 3, 4, 5), (1, 3, 4, 5)), ((1, 8, 4, 4), (1, 8, 1, 1)),
                           ((2, 3, 4, 5), (1, 1, 1, 5)), ((1, 4, 3, 3), (1, 1, 3, 3))])


@FAST
@given(st.sampled_from(["ADD", "SUB", "MUL"]), shapes2, scales, zps, scales, zps, scales, zps,
       st.integers(0, 2**31))
def test_binary_ops_match_tflm(op, shapes, s1, z1, s2, z2, so, zo, seed):
    rng = np.random.default_rng(seed)
    q1, q2 = _edge_tensor(rng, shapes[0]), _edge_tensor(rng, shapes[1])
    if op == "MUL":
        so = float(np.float32(so * 50 * max(s1, s2)))  # keep products in range
    else:
        so = max(so, float(np.float32(2 * max(s1, s2) / 2**18)))
    fn = {"ADD": (R.add_params, R.add_eval), "SUB": (R.sub_params, R.sub_eval),
          "MUL": (R.mul_params, R.mul_eval)}[op]
    got = fn[1](q1, q2, fn[0](s1, z1, s2, z2, so, zo))
    np.testing.assert_array_equal(got, _binary_judge(op, q1, q2, (s1, z1), (s2, z2), (so, zo)))


@pytest.mark.parametrize("op", ["ADD", "SUB"])
def test_add_sub_output_multiplier_tie_matches_tflm(op):
    """s_out = 1/3 with s1 = s2 = 0.5: the output multiplier is 3/4 if divided in float32
    (ties everywhere), slightly below in double, as TFLite Micro's Prepare divides."""
    rng = np.random.default_rng(0)
    q1, q2 = _edge_tensor(rng, (1, 3, 4, 5)), _edge_tensor(rng, (1, 3, 4, 5))
    so = float(np.float32(1 / 3))
    fn = {"ADD": (R.add_params, R.add_eval), "SUB": (R.sub_params, R.sub_eval)}[op]
    got = fn[1](q1, q2, fn[0](0.5, 0, 0.5, 0, so, 0))
    np.testing.assert_array_equal(got, _binary_judge(op, q1, q2, (0.5, 0), (0.5, 0), (so, 0)))


def test_add_relu_clamp_matches_tflm():
    rng = np.random.default_rng(1)
    q1, q2 = _edge_tensor(rng, (1, 4, 5, 5)), _edge_tensor(rng, (1, 4, 5, 5))
    p = R.add_params(0.05, 3, 0.07, -9, 0.1, -20)
    lo = -20  # RELU: real 0 -> zp_out
    got = R.add_eval(q1, q2, p, act_min=lo, act_max=127)
    np.testing.assert_array_equal(got, _binary_judge("ADD", q1, q2, (0.05, 3), (0.07, -9),
                                                     (0.1, -20), act=1))


def test_add_close_to_exact_rational_sum():
    """Independent check: the int8 ADD is within 1 LSB of the exact rational result,
    and exact where the rational result is far from a rounding boundary."""
    s1, s2, so = Fraction(1, 32), Fraction(3, 64), Fraction(1, 16)  # exact in float32
    p = R.add_params(float(s1), 0, float(s2), 5, float(so), -3)
    q1 = np.arange(-128, 128, dtype=np.int8)
    q2 = q1[::-1].copy()
    got = R.add_eval(q1, q2, p)
    for a, b, g in zip(q1.tolist(), q2.tolist(), got.tolist()):
        exact = (s1 * a + s2 * (b - 5)) / so - 3
        assert abs(Fraction(g) - max(-128, min(127, exact))) <= Fraction(1, 2) + Fraction(1, 1000)


def test_add_rejects_output_scale_too_small():
    with pytest.raises(ValueError, match="below 1"):
        R.add_params(1.0, 0, 1.0, 0, 1e-7, 0)


# -- QUANTIZE -----------------------------------------------------------------------------

@FAST
@given(scales, zps, st.integers(0, 2**31))
def test_quantize_float_matches_tflm(s, zp, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((1, 4, 4, 16)) * 100 * s).astype(np.float32)
    k = np.arange(-200, 200)[:x.size]
    x.reshape(-1)[:k.size] = ((k + 0.5) * np.float32(s)).astype(np.float32)  # ties
    got = R.quantize_input(x, s, zp)
    np.testing.assert_array_equal(got, run_oneop("QUANTIZE", [Tensor(x)], Out(x.shape, s, zp)))


def test_quantize_ties_round_away_from_zero():
    got = R.quantize_input(np.array([0.5, -0.5, 1.5, -1.5, 2.5, 1000, -1000], np.float32), 1.0, 0)
    np.testing.assert_array_equal(got, [1, -1, 2, -2, 3, 127, -128])


@FAST
@given(scales, zps, st.floats(0.2, 5.0), zps)
def test_requantize_matches_tflm(s, zp, ratio, zp_out):
    s_out = float(np.float32(s * ratio))
    x = ALL.reshape(1, 16, 16, 1)
    got = R.requantize_eval(ALL, R.requantize_params(s, zp, s_out, zp_out))
    want = run_oneop("QUANTIZE", [Tensor(x, s, zp)], Out(x.shape, s_out, zp_out)).ravel()
    np.testing.assert_array_equal(got, want)


# -- AVERAGE_POOL_2D / MEAN ---------------------------------------------------------------

def test_avg_pool_rounding_half_away_from_zero():
    acc = np.array([5, -5, 3, -3, 7, -7, 0, 4])
    cnt = np.array([2, 2, 2, 2, 4, 4, 3, 8])
    # 2.5 -> 3, -2.5 -> -3, 1.5 -> 2, -1.5 -> -2, 1.75 -> 2, -1.75 -> -2, 0, 0.5 -> 1
    np.testing.assert_array_equal(R.avg_pool_eval(acc, cnt), [3, -3, 2, -2, 2, -2, 0, 1])


def _avg_pool_loops(q, k, s, pads):
    """Independent: explicit windows over the valid elements."""
    n, c, h, w = q.shape
    oh, ow = (h + pads[0] + pads[2] - k[0]) // s[0] + 1, (w + pads[1] + pads[3] - k[1]) // s[1] + 1
    out = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            ys = [y for y in range(i * s[0] - pads[0], i * s[0] - pads[0] + k[0]) if 0 <= y < h]
            xs = [x for x in range(j * s[1] - pads[1], j * s[1] - pads[1] + k[1]) if 0 <= x < w]
            tot = q[:, :, ys][:, :, :, xs].astype(np.int64).sum(axis=(2, 3))
            cnt = len(ys) * len(xs)
            out[:, :, i, j] = [[int(Fraction(int(t), cnt) + Fraction(1, 2)) if t >= 0 else
                                -int(Fraction(-int(t), cnt) + Fraction(1, 2)) for t in row]
                               for row in tot]
    return out


@pytest.mark.parametrize("hw,k,s,padding", [((7, 7), (3, 3), (2, 2), "same"),
                                            ((8, 6), (2, 3), (2, 1), "same"),
                                            ((7, 7), (7, 7), (1, 1), "valid"),
                                            ((9, 9), (3, 3), (3, 3), "valid")])
def test_avg_pool_matches_loops_and_tflm(hw, k, s, padding):
    rng = np.random.default_rng(2)
    q = _edge_tensor(rng, (1, 5, *hw))
    pads = [0, 0, 0, 0]
    if padding == "same":
        for ax in (0, 1):
            total = max((-(-hw[ax] // s[ax]) - 1) * s[ax] + k[ax] - hw[ax], 0)
            pads[ax], pads[ax + 2] = total // 2, total - total // 2
    got = R.avg_pool2d_eval(q, k, s, pads)
    np.testing.assert_array_equal(got, _avg_pool_loops(q, k, s, pads))
    opts = {"padding": {"same": 0, "valid": 1}[padding], "strideH": s[0], "strideW": s[1],
            "filterHeight": k[0], "filterWidth": k[1]}
    out = run_oneop("AVERAGE_POOL_2D", [Tensor(nhwc(q), 0.1, 4)],
                    Out((1, got.shape[2], got.shape[3], 5), 0.1, 4), opts)
    np.testing.assert_array_equal(got, nchw(out))


@FAST
@given(st.sampled_from([(3, 3), (7, 7), (1, 5), (13, 11)]), scales, zps, st.floats(0.05, 3.0),
       zps, st.integers(0, 2**31))
def test_mean_matches_tflm(hw, s, zp, ratio, zp_out, seed):
    rng = np.random.default_rng(seed)
    q = _edge_tensor(rng, (1, 6, *hw))
    s_out = float(np.float32(s * ratio))
    got = R.mean_eval(q, R.mean_params(s, zp, s_out, zp_out, hw[0] * hw[1]))
    axes = Const(np.array([1, 2], dtype=np.int32))
    out = run_oneop("MEAN", [Tensor(nhwc(q), s, zp), axes], Out((1, 1, 1, 6), s_out, zp_out),
                    {"keepDims": True})
    np.testing.assert_array_equal(got, nchw(out))


# -- SOFTMAX ------------------------------------------------------------------------------

@FAST
@given(st.floats(0.005, 1.0).map(lambda s: float(np.float32(s))), zps, st.integers(0, 2**31),
       st.sampled_from([1.0, 0.5, 2.0]))
def test_softmax_matches_tflm(s, zp, seed, beta):
    rng = np.random.default_rng(seed)
    q = _edge_tensor(rng, (6, 10))
    q[1] = q[1, 0]  # a row of ties
    got = R.softmax_eval(q, R.softmax_params(s, zp, beta=beta))
    out = run_oneop("SOFTMAX", [Tensor(q, s, zp)], Out(q.shape, 1 / 256, -128), {"beta": beta})
    np.testing.assert_array_equal(got, out)


def test_softmax_axis_1_on_nchw():
    rng = np.random.default_rng(3)
    q = _edge_tensor(rng, (2, 5, 3, 3))
    p = R.softmax_params(0.1)
    got = R.softmax_eval(q, p, axis=1)
    np.testing.assert_array_equal(got, nchw(R.softmax_eval(nhwc(q), p, axis=-1)))


# -- RESIZE -------------------------------------------------------------------------------

resize_cases = st.sampled_from([((4, 4), (8, 8)), ((3, 5), (7, 4)), ((5, 5), (2, 3)),
                                ((2, 2), (5, 5)), ((1, 3), (4, 9))])
flags = st.sampled_from([(False, False), (False, True), (True, False)])


@pytest.mark.parametrize("op, eval_fn", [("RESIZE_BILINEAR", R.resize_bilinear_eval),
                                         ("RESIZE_NEAREST_NEIGHBOR", R.resize_nearest_eval)])
@FAST
@given(case=resize_cases, fl=flags, seed=st.integers(0, 2**31))
def test_resize_matches_tflm(op, eval_fn, case, fl, seed):
    (h, w), out_hw = case
    q = _edge_tensor(np.random.default_rng(seed), (1, 3, h, w))
    got = eval_fn(q, out_hw, *fl)
    out = run_oneop(op, [Tensor(nhwc(q), 0.1, 2), Const(np.array(out_hw, dtype=np.int32))],
                    Out((1, *out_hw, 3), 0.1, 2), {"alignCorners": fl[0], "halfPixelCenters": fl[1]})
    np.testing.assert_array_equal(got, nchw(out))


@pytest.mark.parametrize("mode,nearest", [("asymmetric", "floor"),
                                          ("half_pixel", "round_prefer_ceil"),
                                          ("align_corners", "round_prefer_ceil")])
def test_resize_nearest_flags_match_onnx_reference(mode, nearest):
    """The documented ONNX -> TFLite flag mapping, checked on onnx.reference."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    x = np.arange(1 * 1 * 5 * 7, dtype=np.float32).reshape(1, 1, 5, 7)
    for out_hw in [(10, 14), (3, 4), (7, 9), (15, 21)]:
        node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest",
                                coordinate_transformation_mode=mode, nearest_mode=nearest)
        g = helper.make_graph([node], "r", [helper.make_tensor_value_info("x", 1, x.shape)],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [onnx.numpy_helper.from_array(np.array([1, 1, *out_hw]), "sizes")])
        want = ReferenceEvaluator(helper.make_model(g)).run(None, {"x": x})[0]
        got = R.resize_nearest_eval(x, out_hw, *R.tflite_resize_flags(mode, out_hw, nearest))
        np.testing.assert_array_equal(got, want, err_msg=f"{mode} {out_hw}")


def test_resize_unsupported_modes_are_refused():
    with pytest.raises(ValueError, match="tf_crop_and_resize"):
        R.resize_bilinear_params((1, 3, 4, 4), (1, 3, 8, 8), "tf_crop_and_resize")
    with pytest.raises(ValueError, match="nearest_mode"):
        R.tflite_resize_flags("asymmetric", (8, 8), "round_prefer_floor")


# -- pow2 ---------------------------------------------------------------------------------

@given(st.floats(1e-6, 1e6))
def test_pow2_scale_is_smallest_covering_power_of_two(r):
    s = R.pow2_scale(r)
    k = int(np.log2(s))
    assert s == 2.0 ** k and 127 * s >= r and 127 * 2.0 ** (k - 1) < r


def test_quantize_input_in_chunks_equals_one_pass(monkeypatch):
    """quantize_input works through long inputs a chunk at a time (bounded float64
    temporaries); the integers are those of one pass, across the chunk boundaries,
    on ties, the clip ends, NaN and infinities, int8 and uint8."""
    from qdeploy.quant.recipes import quantize as qmod
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 5, 301, 257)) * 80).astype(np.float32)
    flat = x.reshape(-1)
    flat[::7] = np.round(flat[::7]) + 0.5            # ties at scale 1
    flat[[0, 1, 2, 3]] = [np.nan, np.inf, -np.inf, 1e30]
    flat[qmod._CHUNK - 1:qmod._CHUNK + 2] = [-0.5, 0.5, 127.5]
    assert flat.size > 2 * qmod._CHUNK
    for args in [(1.0, 3, -128, 127), (0.75, 128, 0, 255)]:
        chunked = qmod.quantize_input(x, *args)
        monkeypatch.setattr(qmod, "_CHUNK", flat.size)
        whole = qmod.quantize_input(x, *args)
        monkeypatch.undo()
        assert chunked.dtype == whole.dtype and chunked.shape == x.shape
        np.testing.assert_array_equal(chunked, whole)
