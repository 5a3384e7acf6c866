"""Per-op tests for ConvTranspose, Div by a constant, constant operands of
Add/Sub/Mul, Max/Min, GlobalMaxPool / ceil-mode MaxPool and PRelu: one-op ONNX
graphs through the whole pipeline, the interpreter's integers checked against
integer arithmetic written here (Python ints, loops) and the dequantized output
against onnxruntime's float result (within ~1-2 output LSB). ConvTranspose is
also run on TFLite Micro's TRANSPOSE_CONV from the QGraph's own integers."""
import numpy as np
import pytest
from onnx import helper

from qdeploy.errors import QDeployError
from qdeploy.onnx_import import import_onnx
from qdeploy.quant.interpreter import quantize_inputs, run_int
from qdeploy.quant.quantizer import quantize_graph
from tests.helpers import model
from tests.quant.oneop import lsb_check, pipeline
from tests.quant.test_quantizer_ops import ref_mbqm

RNG = np.random.default_rng(11)


def _clamp(v, lo, hi):
    return min(max(v, lo), hi)


def _pow2_exp(s) -> int:
    e = int(np.log2(float(s)))
    assert 2.0 ** e == float(s)
    return e


def _shift_round(x: int, sh: int) -> int:
    """fpga rounding shift on Python ints: (x + 2**(sh-1)) >> sh; sh <= 0 shifts left."""
    return (x + (1 << (sh - 1))) >> sh if sh > 0 else x << -sh


# ------------------------------------------------------------------ ConvTranspose
def ref_transpose_conv(xq, zp_in, w_onnx_q, b, mult, shift, zp_out, lo, hi, strides, pads, dil, group, out_hw):
    """Scatter loops on Python ints over one sample, ONNX weight layout
    [C_in, C_out/g, kh, kw]: every input pixel adds (x - zp) * w to the output
    pixel ``in * s + k * d - pad_begin`` when that lies inside the output."""
    c_in, og, kh, kw = w_onnx_q.shape
    cg = c_in // group
    o = og * group
    oh, ow = out_hw
    acc = [[[0] * ow for _ in range(oh)] for _ in range(o)]
    _, _, h, wd = xq.shape
    for c in range(c_in):
        gi = c // cg
        for i in range(h):
            for j in range(wd):
                v = int(xq[0, c, i, j]) - zp_in
                for jo in range(og):
                    for a in range(kh):
                        for bb in range(kw):
                            y, x = i * strides[0] + a * dil[0] - pads[0], j * strides[1] + bb * dil[1] - pads[1]
                            if 0 <= y < oh and 0 <= x < ow:
                                acc[gi * og + jo][y][x] += v * int(w_onnx_q[c, jo, a, bb])
    out = np.zeros((1, o, oh, ow), np.int64)
    for oc in range(o):
        m, s = (int(mult[oc]), int(shift[oc])) if len(mult) > 1 else (int(mult[0]), int(shift[0]))
        for y in range(oh):
            for x in range(ow):
                out[0, oc, y, x] = _clamp(ref_mbqm(acc[oc][y][x] + int(b[oc]), m, s) + zp_out, lo, hi)
    return out


CT_CASES = {   # cin, cout, k, strides, pads, dilations, group, output_padding, auto_pad
    "seg_head_k4s2p1": dict(cin=4, cout=5, k=4, st=[2, 2], pads=[1, 1, 1, 1], dil=[1, 1], group=1, op=[0, 0]),
    "det_k2s2": dict(cin=3, cout=4, k=2, st=[2, 2], pads=[0, 0, 0, 0], dil=[1, 1], group=1, op=[0, 0]),
    "asym_pads_output_padding": dict(cin=3, cout=4, k=3, st=[2, 2], pads=[1, 0, 0, 2], dil=[1, 1], group=1,
                                     op=[1, 1]),
    "dilated_stride1": dict(cin=3, cout=2, k=3, st=[1, 1], pads=[2, 1, 0, 1], dil=[2, 1], group=1, op=[0, 0]),
    "grouped": dict(cin=4, cout=6, k=3, st=[2, 1], pads=[1, 1, 1, 1], dil=[1, 1], group=2, op=[0, 0]),
    "depthwise": dict(cin=4, cout=4, k=4, st=[2, 2], pads=[1, 1, 1, 1], dil=[1, 1], group=4, op=[0, 0]),
    "same_upper_odd": dict(cin=3, cout=3, k=3, st=[2, 2], auto="SAME_UPPER", dil=[1, 1], group=1, op=[0, 0]),
    "same_lower_odd": dict(cin=3, cout=3, k=3, st=[2, 2], auto="SAME_LOWER", dil=[1, 1], group=1, op=[0, 0]),
    "output_shape": dict(cin=2, cout=3, k=3, st=[2, 2], out=[10, 9], dil=[1, 1], group=1, op=[1, 0]),
}


def _ct_model(p, relu=True, h=5, w=4):
    wt = (RNG.standard_normal((p["cin"], p["cout"] // p["group"], p["k"], p["k"])) *
          np.linspace(0.1, 1.0, p["cout"] // p["group"])[None, :, None, None]).astype(np.float32)
    b = (RNG.standard_normal(p["cout"]) * 0.3).astype(np.float32)
    attrs = dict(strides=p["st"], dilations=p["dil"], group=p["group"], output_padding=p["op"])
    if "auto" in p:
        attrs["auto_pad"] = p["auto"]
    elif "out" in p:
        attrs["output_shape"] = p["out"]
    else:
        attrs["pads"] = p["pads"]
    nodes = [helper.make_node("ConvTranspose", ["x", "W", "B"], ["y0" if relu else "y"], **attrs)]
    if relu:
        nodes.append(helper.make_node("Relu", ["y0"], ["y"]))
    return model(nodes, {"x": (1, p["cin"], h, w)}, ["y"], {"W": wt, "B": b}), wt, b


@pytest.mark.parametrize("per_tensor", [False, True])
@pytest.mark.parametrize("case", list(CT_CASES))
def test_conv_transpose_matches_scatter_loops(case, per_tensor):
    p = CT_CASES[case]
    m, wt, b = _ct_model(p)
    x = {"x": RNG.standard_normal((2, p["cin"], 5, 4)).astype(np.float32)}
    g, qg = pipeline(m, x, "arm", per_tensor=per_tensor)
    node = next(n for n in qg.nodes if n.op == "TransposeConv2D")
    wq, bq = (qg.tensors[i] for i in node.inputs[1:])
    tin, tout = qg.tensors[node.inputs[0]], qg.tensors[node.outputs[0]]
    # weights: per output channel (ONNX axis 1 within each group), stored output-channel first
    cg, og = p["cin"] // p["group"], p["cout"] // p["group"]
    w_oc = np.concatenate([np.abs(wt[gi * cg:(gi + 1) * cg]).max(axis=(0, 2, 3)) for gi in range(p["group"])])
    np.testing.assert_allclose(wq.scale, w_oc.max() / 127 if per_tensor else w_oc / 127, rtol=1e-6)
    sw = np.broadcast_to(wq.scale, (p["cout"],)).astype(np.float64)
    w_onnx_q = np.zeros(wt.shape, np.int64)
    for c in range(p["cin"]):
        for jo in range(og):
            oc = (c // cg) * og + jo
            np.testing.assert_array_equal(wq.data[oc, c % cg], np.round(wt[c, jo] / sw[oc]))
            w_onnx_q[c, jo] = wq.data[oc, c % cg]
    np.testing.assert_array_equal(bq.data, np.round(b / (tin.s * sw)))
    assert node.params["act_min"] == tout.zp   # the fused ReLU
    xq = quantize_inputs(qg, x)["x"]
    got = run_int(qg, {"x": xq}, keep=True)[node.outputs[0]]
    pads = node.attrs["pads"]
    if "pads" in p:
        assert pads == p["pads"] and node.attrs["output_padding"] == p["op"]
    for k in range(len(xq)):
        ref = ref_transpose_conv(xq[k:k + 1], tin.zp, w_onnx_q, bq.data, node.params["multiplier"],
                                 node.params["shift"], tout.zp, node.params["act_min"], node.params["act_max"],
                                 p["st"], pads, p["dil"], p["group"], tout.shape[2:])
        np.testing.assert_array_equal(got[k:k + 1], ref)
    lsb_check(qg, g, x, tol_lsb=2.0 if not per_tensor else 3.0, frac=0.98)


@pytest.mark.parametrize("target", ["fpga", "ort"])
def test_conv_transpose_other_targets(target):
    m, _, _ = _ct_model(CT_CASES["seg_head_k4s2p1"], h=6, w=6)
    x = {"x": RNG.standard_normal((3, 4, 6, 6)).astype(np.float32)}
    g, qg = pipeline(m, x, target)
    assert [n.op for n in qg.nodes] == ["Quantize", "TransposeConv2D", "Dequantize"]
    lsb_check(qg, g, x, tol_lsb=2.0, frac=0.97)


@pytest.mark.parametrize("case", ["seg_head_k4s2p1", "det_k2s2"])
def test_conv_transpose_matches_tflm_transpose_conv(case):
    """The QGraph's integers run as a one-op TRANSPOSE_CONV on TFLite Micro (OHWI
    weights per channel, int32 bias, output_shape input) give the same int8."""
    pytest.importorskip("tflite_micro")
    from tests.quant.tflite_oneop import Const, Out, Tensor, fb, run_oneop
    p = CT_CASES[case]
    m, _, _ = _ct_model(p, relu=False, h=6, w=5)
    x = {"x": RNG.standard_normal((2, p["cin"], 6, 5)).astype(np.float32)}
    g, qg = pipeline(m, x, "arm")
    node = next(n for n in qg.nodes if n.op == "TransposeConv2D")
    wq, bq = (qg.tensors[i] for i in node.inputs[1:])
    tin, tout = qg.tensors[node.inputs[0]], qg.tensors[node.outputs[0]]
    xq = quantize_inputs(qg, x)["x"]
    ours = run_int(qg, {"x": xq})["y"]
    _, c, oh, ow = tout.shape
    # TFLite pads = floor(total/2) at the start: SAME gives this case's ONNX pads
    padding = fb.Padding.SAME if any(p["pads"]) else fb.Padding.VALID
    for k in range(len(xq)):
        inputs = [Const(np.array([1, oh, ow, c], np.int32)),
                  Const(np.ascontiguousarray(wq.data.transpose(0, 2, 3, 1)), wq.scale, 0, 0),
                  Tensor(np.ascontiguousarray(xq[k:k + 1].transpose(0, 2, 3, 1)), tin.s, tin.zp),
                  Const(bq.data, bq.scale, 0, 0)]
        tf = run_oneop("TRANSPOSE_CONV", inputs, Out((1, oh, ow, c), tout.s, tout.zp),
                       {"padding": padding, "strideH": p["st"][0], "strideW": p["st"][1]})
        np.testing.assert_array_equal(ours[k:k + 1], tf.transpose(0, 3, 1, 2))


# ------------------------------------------------------------------ constant operands, Div
def _mul_ref(qa, qb, p, zp_a, zp_b, zp_y, lo, hi):
    if p.get("requant") == "float32":   # ort: onnxruntime's QLinearMul (float32 scale, half to even)
        v = np.float32(np.float32((int(qa) - zp_a) * (int(qb) - zp_b)) * np.float32(p["scale"])) + np.float32(zp_y)
        return _clamp(int(np.rint(v)), lo, hi)
    return _clamp(ref_mbqm((int(qa) - zp_a) * (int(qb) - zp_b), p["multiplier"], p["shift"]) + zp_y, lo, hi)


def _add_ref(qa, qb, p, sign, lo, hi):
    """TFLite int8 ADD/SUB on Python ints (inputs << 20, rescaled, summed, rescaled)."""
    a = ref_mbqm((int(qa) - p["zp1"]) << p["left_shift"], p["multiplier1"], p["shift1"])
    b = ref_mbqm((int(qb) - p["zp2"]) << p["left_shift"], p["multiplier2"], p["shift2"])
    return _clamp(ref_mbqm(a + sign * b, p["multiplier_out"], p["shift_out"]) + p["zp_out"], lo, hi)


def _int_check_binary(qg, x, node):
    ints = run_int(qg, quantize_inputs(qg, x), keep=True)
    ta, tb, ty = (qg.tensors[i] for i in (*node.inputs, node.outputs[0]))
    qa = ints[node.inputs[0]] if not ta.is_const else ta.data
    qb = ints[node.inputs[1]] if not tb.is_const else tb.data
    qa, qb = np.broadcast_arrays(qa, qb)
    got = ints[node.outputs[0]]
    p, lo, hi = node.params, node.params["act_min"], node.params["act_max"]
    want = np.empty(got.shape, np.int64)
    for idx in np.ndindex(got.shape):
        if node.op == "Mul":
            want[idx] = _mul_ref(qa[idx], qb[idx], p, ta.zp, tb.zp, ty.zp, lo, hi)
        else:
            want[idx] = _add_ref(qa[idx], qb[idx], p, 1 if node.op == "Add" else -1, lo, hi)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("const", ["scalar", "per_channel"])
def test_div_by_constant_is_mul_by_reciprocal(const):
    c = np.float32(3.0) if const == "scalar" else np.array([0.5, -4.0, 8.0], np.float32).reshape(3, 1, 1)
    m = model([helper.make_node("Div", ["x", "c"], ["y"])], {"x": (1, 3, 4, 4)}, ["y"], {"c": c})
    x = {"x": (RNG.standard_normal((4, 3, 4, 4)) * 2).astype(np.float32)}
    g, qg = pipeline(m, x, "arm")
    assert [n.op for n in qg.nodes] == ["Quantize", "Mul", "Dequantize"]
    mul = qg.nodes[1]
    r = qg.tensors[mul.inputs[1]]
    recip = r.s * (r.data.astype(np.float64) - r.zp)
    assert np.abs(recip - 1.0 / np.asarray(c, np.float64)).max() <= r.s / 2 + 1e-9
    _int_check_binary(qg, x, mul)
    lsb_check(qg, g, x)


@pytest.mark.parametrize("target", ["arm", "fpga", "ort"])
@pytest.mark.parametrize("op, order, const", [("Sub", "xc", "scalar"), ("Sub", "cx", "scalar"),
                                              ("Add", "xc", "per_channel"), ("Mul", "cx", "per_channel"),
                                              ("Sub", "xc", "per_channel"), ("Mul", "xc", "scalar")])
def test_constant_operands(op, order, const, target):
    c = (np.float32(0.75) if const == "scalar" else
         np.array([-1.0, 0.25, 2.0], np.float32).reshape(1, 3, 1, 1))
    ins = ["x", "c"] if order == "xc" else ["c", "x"]
    m = model([helper.make_node(op, ins, ["y"])], {"x": (1, 3, 4, 4)}, ["y"], {"c": c})
    x = {"x": (RNG.standard_normal((4, 3, 4, 4)) * 2).astype(np.float32)}
    g, qg = pipeline(m, x, target)
    node = next(n for n in qg.nodes if n.op == op)
    k = ins.index("c")
    ct = qg.tensors[node.inputs[k]]
    assert ct.is_const and ct.scale.size == 1    # its own per-tensor scale
    deq = ct.s * (ct.data.astype(np.float64) - ct.zp)
    assert np.abs(deq - c).max() <= ct.s / 2 + 1e-9
    if target != "fpga":
        _int_check_binary(qg, x, node)
    lsb_check(qg, g, x, tol_lsb=2.0, frac=0.97)


# ------------------------------------------------------------------ Max / Min
@pytest.mark.parametrize("target", ["arm", "fpga", "ort"])
@pytest.mark.parametrize("op, c", [("Max", 0.0), ("Max", -0.5), ("Min", 1.0)])
def test_max_min_with_scalar_is_integer_clamp(op, c, target):
    # on a graph input nothing can take the clamp as a fused activation
    m = model([helper.make_node(op, ["x", "c"], ["y"])], {"x": (1, 3, 4, 4)}, ["y"], {"c": np.float32(c)})
    x = {"x": (RNG.standard_normal((4, 3, 4, 4)) * 2).astype(np.float32)}
    g, qg = pipeline(m, x, target)
    assert [n.op for n in qg.nodes] == ["Quantize", "Requantize", "Dequantize"]
    rq = qg.nodes[1]
    tx, ty = qg.tensors["x_q"], qg.tensors["y_q"]
    qmin, qmax = qg.metadata["qmin"], qg.metadata["qmax"]
    bound = _clamp(ty.zp + int(np.sign(c / ty.s) * np.floor(abs(c / ty.s) + 0.5)), qmin, qmax)
    assert (rq.params["act_min"], rq.params["act_max"]) == ((bound, qmax) if op == "Max" else (qmin, bound))
    xq = quantize_inputs(qg, x)["x"]
    got = run_int(qg, {"x": xq})["y"]
    p = rq.params
    for idx in np.ndindex(xq.shape):
        v = int(xq[idx]) - tx.zp
        if p["requant"] == "float32":   # ort: DequantizeLinear then QuantizeLinear in float32
            r = int(np.rint(np.float32(np.float32(v) * np.float32(p["in_scale"])) / np.float32(p["out_scale"])))
        else:
            r = (_shift_round(v, int(p["shift"][0])) if p["requant"] == "shift"
                 else ref_mbqm(v, int(p["multiplier"][0]), int(p["shift"][0])))
        assert got[idx] == _clamp(r + ty.zp, p["act_min"], p["act_max"])
    lsb_check(qg, g, x)   # the input's rounding (its LSB is up to ~2 output LSB) + the output's


@pytest.mark.parametrize("target", ["arm", "fpga"])
@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_of_two_activations_requantizes_to_the_output(op, target):
    m = model([helper.make_node(op, ["a", "b"], ["y"])], {"a": (1, 3, 4, 4), "b": (1, 3, 1, 1)}, ["y"])
    x = {"a": (RNG.standard_normal((4, 3, 4, 4)) * 3).astype(np.float32),
         "b": RNG.uniform(-0.5, 1.0, (4, 3, 1, 1)).astype(np.float32)}
    g, qg = pipeline(m, x, target)
    node = next(n for n in qg.nodes if n.op in ("Maximum", "Minimum"))
    ty = qg.tensors[node.outputs[0]]
    for i in node.inputs:    # every operand carries the output's parameters
        assert (qg.tensors[i].s, qg.tensors[i].zp) == (ty.s, ty.zp)
    ints = run_int(qg, quantize_inputs(qg, x), keep=True)
    fn = np.maximum if op == "Max" else np.minimum
    want = np.clip(fn(ints[node.inputs[0]], ints[node.inputs[1]]), node.params["act_min"], node.params["act_max"])
    np.testing.assert_array_equal(ints[node.outputs[0]], want)
    for src, rq_in in zip(("a", "b"), node.inputs):    # each Requantize by Python ints
        rq = qg.producer(rq_in)
        if rq is None or rq.op != "Requantize":
            continue
        tsrc, p = qg.tensors[src + "_q"], rq.params
        src_q = ints[src + "_q"]
        for idx in list(np.ndindex(src_q.shape))[:64]:
            v = int(src_q[idx]) - tsrc.zp
            r = (_shift_round(v, int(p["shift"][0])) if p["requant"] == "shift"
                 else ref_mbqm(v, int(p["multiplier"][0]), int(p["shift"][0])))
            assert ints[rq_in][idx] == _clamp(r + ty.zp, p["act_min"], p["act_max"])
    lsb_check(qg, g, x, tol_lsb=1.5)


def test_max_with_broadcast_constant_quantizes_it_at_the_output_scale():
    c = np.array([-0.5, 0.0, 0.7], np.float32).reshape(1, 3, 1, 1)
    m = model([helper.make_node("Max", ["x", "c"], ["y"])], {"x": (1, 3, 4, 4)}, ["y"], {"c": c})
    x = {"x": RNG.standard_normal((4, 3, 4, 4)).astype(np.float32)}
    g, qg = pipeline(m, x, "arm")
    node = next(n for n in qg.nodes if n.op == "Maximum")
    ct, ty = qg.tensors[node.inputs[1]], qg.tensors[node.outputs[0]]
    assert (ct.s, ct.zp) == (ty.s, ty.zp)
    np.testing.assert_array_equal(ct.data, np.round(c / ty.s) + ty.zp)
    lsb_check(qg, g, x)


# ------------------------------------------------------------------ GlobalMaxPool, MaxPool ceil_mode
@pytest.mark.parametrize("target", ["arm", "fpga"])
def test_global_max_pool_and_ceil_mode_max_pool(target):
    m = model([helper.make_node("GlobalMaxPool", ["x"], ["gm"]),
               helper.make_node("MaxPool", ["x"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
              {"x": (1, 3, 8, 7)}, ["gm", "mp"])
    x = {"x": RNG.standard_normal((3, 3, 8, 7)).astype(np.float32)}
    g, qg = pipeline(m, x, target)
    tx = qg.tensors["x_q"]
    for o in ("gm_q", "mp_q"):   # the spec ties the scale
        assert (qg.tensors[o].s, qg.tensors[o].zp) == (tx.s, tx.zp)
    assert qg.tensors["mp_q"].shape[2:] == (4, 3)   # ceil((8-3)/2)+1, ceil((7-3)/2)+1
    xq = quantize_inputs(qg, x)["x"]
    out = run_int(qg, {"x": xq})
    np.testing.assert_array_equal(out["gm"][:, :, 0, 0], xq.max(axis=(2, 3)))
    for i in range(4):
        for j in range(3):   # windows clipped to the input
            window = xq[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            np.testing.assert_array_equal(out["mp"][:, :, i, j], window.max(axis=(2, 3)))
    lsb_check(qg, g, x, tol_lsb=0.51)


# ------------------------------------------------------------------ PRelu
@pytest.mark.parametrize("target", ["arm", "fpga", "ort"])
def test_prelu_per_channel_slope(target):
    slope = np.array([0.25, -0.1, 0.02, 1.5], np.float32).reshape(4, 1, 1)
    m = model([helper.make_node("PRelu", ["x", "slope"], ["y"])], {"x": (1, 4, 3, 5)}, ["y"], {"slope": slope})
    x = {"x": (RNG.standard_normal((4, 4, 3, 5)) * 2).astype(np.float32)}
    g, qg = pipeline(m, x, target)
    assert [n.op for n in qg.nodes] == ["Quantize", "PRelu", "Dequantize"]
    node = qg.nodes[1]
    tx, ta, ty = (qg.tensors[i] for i in (*node.inputs, node.outputs[0]))
    assert ta.is_const and ta.scale.size == 1 and ta.data.shape == (4, 1, 1)
    xq = quantize_inputs(qg, x)["x"]
    got = run_int(qg, {"x": xq})["y"]
    p, lo, hi = node.params, node.params["act_min"], node.params["act_max"]
    if target == "fpga":
        ex, ea, ey = _pow2_exp(tx.s), _pow2_exp(ta.s), _pow2_exp(ty.s)
        assert (p["pos_shift"], p["neg_shift"]) == (ey - ex, ey - ex - ea)
    else:
        for mult, sh, real in ((p["multiplier_1"], p["shift_1"], tx.s / ty.s),
                               (p["multiplier_2"], p["shift_2"], tx.s * ta.s / ty.s)):
            assert abs(mult * 2.0 ** (sh - 31) / real - 1) < 2 ** -30
    for idx in np.ndindex(xq.shape):
        v = int(xq[idx]) - tx.zp
        a = int(ta.data[idx[1], 0, 0]) - ta.zp
        if target == "fpga":
            r = _shift_round(v, p["pos_shift"]) if v >= 0 else _shift_round(v * a, p["neg_shift"])
        else:
            r = (ref_mbqm(v, p["multiplier_1"], p["shift_1"]) if v >= 0
                 else ref_mbqm(v * a, p["multiplier_2"], p["shift_2"]))
        assert got[idx] == _clamp(r + ty.zp, lo, hi)
    lsb_check(qg, g, x, tol_lsb=2.0, frac=0.97)


# ------------------------------------------------------------------ refusals
def test_unquantizable_forms_are_listed_at_once():
    m = model([helper.make_node("Div", ["x", "d"], ["q"]), helper.make_node("Div", ["q", "z"], ["r"]),
               helper.make_node("PRelu", ["r", "d"], ["y"])],
              {"x": (1, 3, 4, 4), "d": (1, 3, 4, 4)}, ["y"],
              {"z": np.array([1.0, 0.0, 2.0], np.float32).reshape(3, 1, 1)})
    g = import_onnx(m)
    with pytest.raises(QDeployError) as e:
        quantize_graph(g, {}, "arm")
    msg = str(e.value)
    assert "3 node(s)" in msg and "\n" not in msg
    assert "divides by a computed tensor" in msg and "contains 0" in msg and "computed slope" in msg
