"""The integer-exact subgraphs of the arm QDQ model (qdeploy/emit/qdq_exact.py),
judged by onnxruntime against qdeploy/quant/fixedpoint.py and the reference
interpreter.

* ``requant`` alone (hypothesis): random Q31 multipliers, shifts from -31 to
  +8, per-channel constants, zero points, clamps, and accumulators that include
  the awkward cases: both ties of the double rounding (``srdhm`` landing on
  ``k * 2**r + 2**(r-1)`` and its neighbours), negative values, 0, the bound;
* every exact node of the one-op models fed awkward int8 inputs (every int8
  value, the dtype's extremes, runs of equal values that make pooling and
  interpolation sums land on ties) against ``interpreter.run_node``.
"""
from __future__ import annotations

import types

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

from qdeploy.emit import qdq, qdq_exact
from qdeploy.emit.qdq_compare import forced_model
from qdeploy.quant import fixedpoint as fp
from qdeploy.quant.interpreter import run, run_node
from tests.emit.qdq_oneop import build_case
from tests.quant.oneop import pipeline


def _requant_model(bound, m, s, add, zp, lo, hi, shape):
    b = qdq._Builder(types.SimpleNamespace(tensors={}, inputs=[], outputs=[]), "gather")
    qdq_exact.requant(b, "acc", bound, m, s, "y", "int8", zp, lo, hi, shape, add, "rq")
    g = helper.make_graph(b.nodes, "rq", [helper.make_tensor_value_info("acc", onnx.TensorProto.INT64, ["n", "c"])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.INT8, ["n", "c"])],
                          initializer=[numpy_helper.from_array(v, k) for k, v in b.inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", qdq.OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    sess = qdq.session(model.SerializeToString())
    outs = {o for nd in b.nodes for o in nd.output}
    sess.form = "single" if "rq_product" in outs else "split" if "rq_high" in outs else "int64"
    return sess


def _ties(m: int, s: int, count: int) -> np.ndarray:
    """Accumulators whose srdhm lands on (and around) a tie of RoundingDivideByPOT,
    and whose product is a tie of srdhm itself."""
    right = max(-s, 0)
    mp = m << max(s, 0)
    ks = np.arange(-count, count)
    targets = ks * (1 << right) + ((1 << (right - 1)) if right else 0)
    x = np.round(targets.astype(np.float64) * 2.0 ** 31 / max(mp, 1)).astype(np.int64)
    return np.concatenate([x + d for d in (-2, -1, 0, 1, 2)])


FORMS = {"single": (True, True), "split": (True, False), "int64": (False, False)}


def _set_form(form: str) -> None:
    qdq_exact.DOUBLE_REQUANT, qdq_exact.SINGLE_PRODUCT = FORMS[form]


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1 << 30, (1 << 31) - 1), s=st.integers(-31, 8), zp=st.integers(-128, 127),
       channels=st.integers(1, 3), seed=st.integers(0, 2 ** 16), form=st.sampled_from(list(FORMS)),
       bound_bits=st.integers(4, 24))
def test_requant_subgraph_is_mbqm(m, s, zp, channels, seed, form, bound_bits):
    """Every form: one float64 product, the split multiplier in float64, int64
    (each where its exactness condition holds, else the next)."""
    _set_form(form)
    try:
        _check_requant(m, s, zp, channels, seed, bound_bits)
    finally:
        _set_form("single")


def _check_requant(m, s, zp, channels, seed, bound_bits=24):
    rng = np.random.default_rng(seed)
    if seed % 7 == 0:
        m = 1 << 30           # an exact power of two: srdhm's tie at -1 * 2**30

    ms = np.array([m] + list(rng.integers(1 << 30, 1 << 31, channels - 1)), np.int64)
    ss = np.array([s] + list(rng.integers(max(s - 3, -31), min(s + 3, 8) + 1, channels - 1)), np.int64)
    add = rng.integers(-5000, 5000, channels)
    bound = 1 << min(bound_bits, 28 - max(int(ss.max()), 0))   # |acc| * m * 2**left below 2**60
    lo, hi = sorted(rng.integers(-128, 128, 2)) if seed % 4 == 0 else (-128, 127)
    acc = np.concatenate([rng.integers(-bound // 2, bound // 2, 500), [0, 1, -1, bound // 2, -(bound // 2)],
                          _ties(int(ms[0]), int(ss[0]), 40)])
    acc = acc[np.abs(acc) <= bound // 2]
    acc = np.repeat(acc[:, None], channels, axis=1)      # [N, C]: each channel its own constants
    sess = _requant_model(bound + int(np.abs(add).max()), ms, ss, add, zp, int(lo), int(hi), (1, -1))
    got = sess.run(None, {"acc": acc})[0]
    want = np.clip(fp.mbqm(acc + add, ms, ss) + zp, lo, hi)
    np.testing.assert_array_equal(got.astype(np.int64), want)


@pytest.mark.parametrize("form", list(FORMS))
def test_requant_every_shift(form, monkeypatch):
    """Every shift from -31 to +4, an exact power-of-two multiplier and a random
    one, zero points folded or not: every form equals fixedpoint.mbqm."""
    monkeypatch.setattr(qdq_exact, "DOUBLE_REQUANT", FORMS[form][0])
    monkeypatch.setattr(qdq_exact, "SINGLE_PRODUCT", FORMS[form][1])
    rng = np.random.default_rng(5)
    seen = set()
    for s in range(-31, 5):
        ms = np.array([1 << 30, int(rng.integers(1 << 30, 1 << 31))], np.int64)
        ss = np.array([s, s], np.int64)
        bound = 1 << min(24 if form != "single" else 16, 27 - max(s, 0))
        acc = np.concatenate([rng.integers(-bound, bound + 1, 300), [0, 1, -1, -2, bound, -bound],
                              _ties(int(ms[0]), s, 20), _ties(int(ms[1]), s, 20)])
        acc = np.repeat(acc[np.abs(acc) <= bound][:, None], 2, axis=1)
        for zp in (-128, 5):
            sess = _requant_model(bound, ms, ss, 0, zp, -128, 127, (1, -1))
            seen.add(sess.form)
            got = sess.run(None, {"acc": acc})[0]
            np.testing.assert_array_equal(got.astype(np.int64), np.clip(fp.mbqm(acc, ms, ss) + zp, -128, 127),
                                          err_msg=f"shift {s}, zp {zp}")
    assert form in seen, seen


def test_requant_refuses_more_than_63_bits():
    from qdeploy.errors import QDeployError
    b = qdq._Builder(types.SimpleNamespace(tensors={}, inputs=[], outputs=[]), "gather")
    with pytest.raises(QDeployError, match="63 bits"):
        qdq_exact.requant(b, "acc", 1 << 40, 1 << 30, 8, "y", "int8", 0, -128, 127, name="big")


def _awkward(shape, dtype, rng) -> np.ndarray:
    """int8/uint8 values of ``shape``: every value of the dtype, extremes, and
    constant runs (window sums of equal values make rounding ties)."""
    info = np.iinfo(dtype)
    flat = np.concatenate([np.arange(info.min, info.max + 1), np.full(64, info.min), np.full(64, info.max),
                           np.repeat(rng.integers(info.min, info.max + 1, 64), 8),
                           rng.integers(info.min, info.max + 1, int(np.prod(shape)))])
    return rng.permutation(np.resize(flat, int(np.prod(shape)))).reshape(shape).astype(dtype)


EXACT_CASES = ["conv", "conv_relu", "depthwise", "grouped", "conv_transpose", "gemm", "add", "add_broadcast",
               "sub", "mul", "div_const", "prelu", "avgpool", "global_avgpool", "reduce_mean", "concat", "resize_linear"]


@pytest.mark.parametrize("float_sums", [True, False])
def test_exact_nodes_on_awkward_inputs(float_sums, monkeypatch):
    """Each arm one-op model's exact nodes, fed awkward integers directly (the
    forced model of qdq_compare), equal the reference kernel on every element;
    convolutions summed by float32 Conv (bounded below 2**24) and by ConvInteger."""
    if not float_sums:
        monkeypatch.setattr(qdq_exact, "FLOAT_CONV", False)
    rng = np.random.default_rng(7)
    seen = set()
    for case in EXACT_CASES:
        m, x, _ = build_case(case)
        _, qg = pipeline(m, x, "arm")
        model = qdq.build(qg)
        forced, fed = forced_model(qg, model)
        sess = qdq.session(forced.SerializeToString())
        names = [o.name for o in sess.get_outputs()]
        ref = run(qg, {k: v[:1] for k, v in x.items()}, keep=True)
        for trial in range(3):
            feed = {k: v[:1] for k, v in x.items()}
            ints = {i: _awkward(ref[i].shape, ref[i].dtype, rng) for i in fed}
            feed.update({i + "__ref": v for i, v in ints.items()})
            got = dict(zip(names, sess.run(names, feed)))
            for n in qg.nodes:
                if qdq.handler_of(n, qdq.exact_ops("arm")) not in set(qdq_exact.HANDLERS.values()) | {
                        qdq_exact.resize_bilinear}:
                    continue
                if not all(i in ints or qg.tensors[i].is_const for i in n.inputs):
                    continue
                want = run_node(qg, n, [ints.get(i) for i in n.inputs])[0]
                np.testing.assert_array_equal(got[n.outputs[0]], want, err_msg=f"{case}: {n.name} ({n.op})")
                seen.add(n.op)
    assert seen >= {"Conv2D", "FullyConnected", "TransposeConv2D", "Add", "Sub", "Mul", "PRelu", "Mean", "AvgPool",
                    "Requantize", "Resize"}, seen


def test_ort_bilinear_resize_uint8_on_awkward_inputs():
    """The ort profile's bilinear Resize (uint8) is the same exact subgraph."""
    rng = np.random.default_rng(3)
    m, x, _ = build_case("resize_linear")
    _, qg = pipeline(m, x, "ort")
    forced, fed = forced_model(qg, qdq.build(qg))
    n = next(n for n in qg.nodes if n.op == "Resize")
    sess = qdq.session(forced.SerializeToString())
    for _ in range(3):
        ints = {i: _awkward(qg.tensors[i].shape, np.uint8, rng) for i in fed}
        feed = {k: v[:1] for k, v in x.items()}
        feed.update({i + "__ref": v for i, v in ints.items()})
        got = sess.run([n.outputs[0]], feed)[0]
        np.testing.assert_array_equal(got, run_node(qg, n, [ints[n.inputs[0]]])[0])


def test_exact_false_gives_the_fused_form(tmp_path):
    """``exact=False`` (emit option ``exact = "0"``) is the fused QDQ form
    (QLinearConv, onnxruntime's own Resize); the default on arm is the exact one."""
    from qdeploy.emit.qdq_compare import optimized_ops
    for case, exact_op, fused_op in (("conv", "Conv", "QLinearConv"), ("resize_linear", "Gather", "Resize")):
        m, x, _ = build_case(case)
        _, qg = pipeline(m, x, "arm")
        default = optimized_ops(qdq.build(qg).SerializeToString(), tmp_path / "d.onnx")
        fused = optimized_ops(qdq.build(qg, exact=False).SerializeToString(), tmp_path / "f.onnx")
        assert exact_op in default and fused_op not in default, default
        assert fused_op in fused and exact_op not in fused, fused


def test_input_quantize_rounds_ties_away_from_zero():
    """The arm input Quantize is TFLite's: ties (x / scale exactly k + 1/2, which
    onnxruntime's QuantizeLinear rounds to even) go away from zero."""
    m, x, _ = build_case("relu")
    _, qg = pipeline(m, x, "arm")
    q = next(n for n in qg.nodes if n.op == "Quantize")
    s = np.float32(qg.tensors[q.outputs[0]].s)
    halves = (np.arange(-300, 300) + 0.5).astype(np.float32)
    ties = halves * s
    ties = ties[(ties / s) == halves]                      # exactly k + 1/2 after float32 division
    assert len(ties) > 100
    shape = qg.tensors[q.inputs[0]].shape
    xs = np.resize(np.concatenate([ties, -ties, [0.0, 1e9, -1e9]]), (1,) + tuple(shape[1:])).astype(np.float32)
    got = {}
    for exact in (None, False):
        forced, fed = forced_model(qg, qdq.build(qg, exact=exact))
        feed = {q.inputs[0]: xs, **{i + "__ref": np.zeros(qg.tensors[i].shape, qg.tensors[i].dtype) for i in fed}}
        got[exact] = qdq.session(forced.SerializeToString()).run([q.outputs[0]], feed)[0]
    np.testing.assert_array_equal(got[None], run_node(qg, q, [xs])[0])
    assert np.any(got[False] != got[None])     # onnxruntime's QuantizeLinear: ties to even


@pytest.mark.parametrize("shape,axis", [((1, 10), -1), ((1, 511), -1), ((1, 6, 5, 5), 1)])
def test_softmax_on_awkward_inputs(shape, axis):
    """TFLite's int8 SOFTMAX as the exact subgraph: random rows, constant rows,
    rows whose maximum repeats, rows reaching below diff_min, long rows (511 values, the
    widest arm takes: a constant row then needs the largest final shift, 31)."""
    from tests.helpers import model
    rng = np.random.default_rng(11)
    m = model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], {"x": shape}, ["y"])
    x = {"x": (rng.standard_normal((6,) + shape[1:]) * 4).astype(np.float32)}
    _, qg = pipeline(m, x, "arm")
    n = next(n for n in qg.nodes if n.op == "Softmax")
    assert qdq.handler_of(n, qdq.exact_ops("arm")) is qdq_exact.softmax
    forced, fed = forced_model(qg, qdq.build(qg))
    sess = qdq.session(forced.SerializeToString())
    q_shape = qg.tensors[n.inputs[0]].shape
    for trial in range(6):
        q = _awkward(q_shape, np.int8, rng)
        if trial == 1:
            q[:] = 7                                            # every row constant
        if trial == 2:
            q = np.minimum(q, np.int8(100))                     # the maximum repeats
        if trial == 3:
            q = np.where(rng.random(q.shape) < 0.9, np.int8(-128), np.int8(127)).astype(np.int8)
        feed = {k: v[:1] for k, v in x.items()}
        feed.update({i + "__ref": (q if i == n.inputs[0] else np.zeros(qg.tensors[i].shape, qg.tensors[i].dtype))
                     for i in fed})
        got = sess.run([n.outputs[0]], feed)[0]
        np.testing.assert_array_equal(got, run_node(qg, n, [q])[0], err_msg=f"trial {trial}")
