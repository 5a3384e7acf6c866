"""Every op mapping of the QDQ emitter, one op at a time: the model passes
onnx.checker (full check, inside ``qdq.build``), runs on onnxruntime with its
default optimisations within 1 LSB of the reference interpreter, and on the
``ort`` target onnxruntime runs it as the int8 kernel named in the case."""
import numpy as np
import pytest

from qdeploy.emit import qdq
from qdeploy.errors import QDeployError
from tests.emit.qdq_oneop import CASES, build_case, check
from tests.quant.oneop import pipeline


# ort cases whose onnxruntime kernels the reference follows bit for bit (requant = "float32"):
# QLinearConv, QGemm, QLinearMul, QLinearGlobalAveragePool, DequantizeLinear -> QuantizeLinear,
# and every op that only moves integers
ORT_EXACT = {"conv", "conv_relu", "conv_clip_narrow", "conv_dilated", "depthwise", "grouped", "gemm", "mul",
             "div_const", "global_avgpool", "reduce_mean", "relu", "maxpool", "global_maxpool", "concat",
             "reshape", "transpose", "pad", "slice", "split", "depth_to_space", "space_to_depth",
             "resize_nearest", "resize_linear"}
# every arm case is an integer-exact subgraph (qdeploy/emit/qdq_exact.py), a table, or only moves
# integers: bit-exact


@pytest.mark.parametrize("target", ["ort", "arm"])
@pytest.mark.parametrize("case", list(CASES))
def test_one_op_within_one_lsb(case, target, tmp_path):
    diffs, ops, qg = check(case, target, tmp_path)
    for d in diffs:
        print(f"{case} {target}: {d.line()}")
        assert d.max <= 1, d.line()
    if target == "ort" and case in ORT_EXACT:   # requant = "float32": the reference computes what onnxruntime does
        assert all(d.exact == d.count for d in diffs), [d.line() for d in diffs]
    if target == "arm":
        assert all(d.exact == d.count for d in diffs), [d.line() for d in diffs]
    kernel = CASES[case][1]
    if target == "ort" and case == "grouped":   # ort's float_grouped: a float Conv (test_grouped_int8_without_the_rule)
        assert qg.op_counts().get("Float") == 1 and "QLinearConv" not in ops, ops
        kernel = None
    if target == "ort" and kernel is not None:
        assert kernel in ops, f"{case}: onnxruntime ran {ops}, no {kernel}"
        if kernel in ("QLinearConv", "QGemm"):
            assert "Conv" not in ops and "Gemm" not in ops, ops


def test_grouped_int8_without_the_rule(tmp_path):
    """The ort target with ``float_grouped = false``: the grouped conv is QLinearConv,
    bit-exact with the reference."""
    import dataclasses
    from qdeploy.quant.targets import load_target
    base = load_target("ort")
    t = dataclasses.replace(base, numerics=dataclasses.replace(base.numerics, float_grouped=False))
    diffs, ops, qg = check("grouped", t, tmp_path)
    assert "Float" not in qg.op_counts() and "QLinearConv" in ops and "Conv" not in ops, ops
    assert all(d.exact == d.count for d in diffs), [d.line() for d in diffs]


LUTS = ["sigmoid", "tanh", "hardswish", "hardsigmoid", "silu", "leaky_relu"]


@pytest.mark.parametrize("target", ["ort", "arm"])
@pytest.mark.parametrize("case", LUTS)
def test_lut_modes(case, target, tmp_path):
    """Both ways of emitting a table activation: Gather on the QGraph's table is
    bit-exact; the float activation between DQ and Q is within 1 LSB (onnxruntime
    runs no Gather then). The default is float on ort, gather on arm."""
    diffs, ops, qg = check(case, target, tmp_path, lut="gather")
    assert "Gather" in ops
    if set(qg.op_counts()) == {"Quantize", "Lut", "Dequantize"}:   # arm SiLU is Lut(sigmoid) + Mul
        assert all(d.exact == d.count for d in diffs), [d.line() for d in diffs]
    diffs, ops, _ = check(case, target, tmp_path, lut="float")
    assert "Gather" not in ops
    for d in diffs:
        print(f"{case} {target} lut=float: {d.line()}")
        assert d.max <= 1, d.line()
    kinds = {n.op_type for n in qdq.build(qg).graph.node}
    assert ("Gather" in kinds) == (target == "arm")


def test_float_lut_needs_the_recorded_alpha():
    m, x, _ = build_case("leaky_relu")
    _, qg = pipeline(m, x, "ort")
    lut = next(n for n in qg.nodes if n.op == "Lut")
    assert lut.attrs["alpha"] == pytest.approx(0.1)
    del lut.attrs["alpha"]
    with pytest.raises(QDeployError, match="quantize again"):
        qdq.build(qg, lut="float")
    qdq.build(qg, lut="gather")


def test_clamp_narrower_than_dtype_is_an_integer_clip(tmp_path):
    """Calibration puts a fused clamp at the dtype range; a QGraph whose clamp is
    narrower (set here by hand) gets an integer Clip after the Q, and onnxruntime
    still runs the conv as QLinearConv."""
    from qdeploy.emit.qdq_compare import end_to_end, optimized_ops
    from qdeploy.quant.interpreter import run
    m, x, _ = build_case("conv_relu")
    _, qg = pipeline(m, x, "ort")
    conv = next(n for n in qg.nodes if n.op == "Conv2D")
    conv.params["act_min"], conv.params["act_max"] = 10, 200
    data = qdq.build(qg).SerializeToString()
    assert "Clip" in [n.op_type for n in qdq.build(qg).graph.node]
    got = qdq.run_session(qdq.session(data), x)
    ref = run(qg, x)
    d = end_to_end(qg, got, ref)[0]
    print(d.line())
    assert d.max <= 1 and ref["y"].min() > 0
    assert "QLinearConv" in optimized_ops(data, tmp_path / "opt.onnx")


def test_same_qgraph_same_bytes():
    m, x, _ = build_case("conv_relu")
    _, qg = pipeline(m, x, "ort")
    assert qdq.build(qg).SerializeToString() == qdq.build(qg).SerializeToString()


@pytest.mark.parametrize("weight_dtype", ["uint8", "int8"])
def test_weights_and_bias_are_the_qgraphs_integers(weight_dtype):
    """The weights as the QGraph has them (``weight_dtype = "int8"``) or the same
    integers + 128 with zero point 128 (``"uint8"``, the ort default: the same
    float values, onnxruntime's uint8 x uint8 kernels)."""
    import dataclasses
    from onnx import numpy_helper
    from qdeploy.quant.targets import load_target
    base = load_target("ort")
    assert base.numerics.weight_dtype == "uint8"
    target = dataclasses.replace(base, numerics=dataclasses.replace(base.numerics, weight_dtype=weight_dtype))
    m, x, _ = build_case("conv")
    _, qg = pipeline(m, x, target)
    conv = next(n for n in qg.nodes if n.op == "Conv2D")
    model = qdq.build(qg)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    w, b = (qg.tensors[i] for i in conv.inputs[1:])
    offset = 128 if weight_dtype == "uint8" else 0
    np.testing.assert_array_equal(inits[w.name].astype(np.int16) - offset, w.data)
    assert inits[w.name].dtype == np.dtype(weight_dtype) and inits[b.name].dtype == np.int32
    zp = inits[w.name + "_zero_point"]
    assert zp.dtype == np.dtype(weight_dtype) and zp.shape == w.scale.shape and (zp == offset).all()
    np.testing.assert_array_equal(inits[b.name], b.data)
    np.testing.assert_array_equal(inits[w.name + "_scale"], w.scale.astype(np.float32))
    np.testing.assert_array_equal(inits[b.name + "_scale"], b.scale.astype(np.float32))
    assert not inits[b.name + "_zero_point"].any()
    assert set(inits) <= {i for nd in model.graph.node for i in nd.input}   # nothing left unread
    # the same float weights either way
    dq = next(nd for nd in model.graph.node if nd.op_type == "DequantizeLinear" and nd.input[0] == w.name)
    import onnxruntime as ort
    from onnx import helper
    g = helper.make_graph([dq], "w", [], [helper.make_tensor_value_info(dq.output[0], 1, None)],
                          [numpy_helper.from_array(inits[i], i) for i in dq.input])
    wf = ort.InferenceSession(helper.make_model(g, opset_imports=model.opset_import).SerializeToString(),
                              providers=["CPUExecutionProvider"]).run(None, {})[0]
    np.testing.assert_array_equal(wf, w.data * w.scale.reshape(-1, 1, 1, 1).astype(np.float32))


def test_saturating_cpu_reads_the_vnni_flags():
    assert qdq.saturating_cpu("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n")
    assert not qdq.saturating_cpu("flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n")
    assert not qdq.saturating_cpu("flags\t\t: fpu avx2 avx_vnni\n")
    assert not qdq.saturating_cpu("Features\t: fp asimd asimddp\n")   # no flags line (ARM): unknown


def test_int8_weights_on_a_saturating_cpu_name_the_cpu(tmp_path, monkeypatch):
    """A verification failure of an ort QDQ model with int8 weights on a CPU without VNNI
    says so and names weight_dtype, instead of calling it a qdeploy bug."""
    import dataclasses
    from qdeploy.quant.targets import load_target
    from qdeploy.report import verify as V
    base = load_target("ort")
    m, x, _ = build_case("conv")
    monkeypatch.setattr(qdq, "saturating_cpu", lambda cpuinfo=None: True)
    for dtype, says in (("int8", "weight_dtype = \"uint8\""), ("uint8", "a qdeploy bug")):
        t = dataclasses.replace(base, numerics=dataclasses.replace(base.numerics, weight_dtype=dtype))
        _, qg = pipeline(m, x, t)
        assert says in V._cause("qdq", qg)
    monkeypatch.setattr(qdq, "saturating_cpu", lambda cpuinfo=None: False)
    assert "a qdeploy bug" in V._cause("qdq", qg)


def test_fpga_profile_is_refused():
    m, x, _ = build_case("conv")
    _, qg = pipeline(m, x, "fpga")
    with pytest.raises(QDeployError, match="cannot express the 'fpga' profile"):
        qdq.build(qg)


def test_unknown_lut_mode_is_refused():
    m, x, _ = build_case("conv")
    _, qg = pipeline(m, x, "ort")
    with pytest.raises(QDeployError, match="lut="):
        qdq.build(qg, lut="table")


def test_reduce_range_is_the_quantizers_decision(tmp_path):
    """7-bit weights (onnxruntime's reduce_range) come from the target
    (weight_bits = 7), are recorded in the QGraph, and the emitter writes them as
    they are."""
    import dataclasses
    from qdeploy.emit.qdq_compare import end_to_end, optimized_ops
    from qdeploy.quant.interpreter import run
    from qdeploy.quant.targets import load_target
    base = load_target("ort")
    t7 = dataclasses.replace(base, numerics=dataclasses.replace(base.numerics, weight_bits=7))
    m, x, _ = build_case("conv")
    _, qg = pipeline(m, x, t7)
    conv = next(n for n in qg.nodes if n.op == "Conv2D")
    w = qg.tensors[conv.inputs[1]].data
    assert np.abs(w).max() == 63 and qg.metadata["weight_bits"] == 7
    data = qdq.build(qg).SerializeToString()
    d = end_to_end(qg, qdq.run_session(qdq.session(data), x), run(qg, x))[0]
    assert d.max <= 1, d.line()
    assert "QLinearConv" in optimized_ops(data, tmp_path / "opt.onnx")


def test_weight_dtype_uint8_only_for_ort(tmp_path):
    from qdeploy.quant.targets import load_target
    from tests.helpers import ROOT
    text = (ROOT / "targets" / "arm.toml").read_text().replace("[numerics]", "[numerics]\nweight_dtype = \"uint8\"")
    p = tmp_path / "arm_u8.toml"
    p.write_text(text)
    with pytest.raises(QDeployError, match="weight_dtype"):
        load_target(str(p))
    p.write_text(text.replace("\"uint8\"", "\"int4\""))
    with pytest.raises(QDeployError, match="weight_dtype"):
        load_target(str(p))
    p.write_text((ROOT / "targets" / "ort.toml").read_text().replace("weight_dtype = \"uint8\"", "weight_dtype = \"int8\""))
    assert load_target(str(p)).numerics.weight_dtype == "int8"


def test_weight_bits_7_only_for_ort(tmp_path):
    from qdeploy.quant.targets import load_target
    from tests.helpers import ROOT
    for profile, ok in (("ort", True), ("arm", False)):
        text = (ROOT / "targets" / f"{profile}.toml").read_text()
        text = text.replace("[numerics]", "[numerics]\nweight_bits = 7") if "weight_bits" not in text \
            else text.replace("weight_bits = 8", "weight_bits = 7")
        p = tmp_path / f"{profile}7.toml"
        p.write_text(text)
        if ok:
            assert load_target(str(p)).numerics.weight_bits == 7
        else:
            with pytest.raises(QDeployError, match="weight_bits = 7"):
                load_target(str(p))
    p.write_text(text.replace("weight_bits = 7", "weight_bits = 6"))
    with pytest.raises(QDeployError, match="weight_bits"):
        load_target(str(p))


def test_concat_branch_requantize_is_qlinearconcats_own(tmp_path):
    """A Concat input that another node reads too gets a Requantize to the
    Concat's parameters. On the ort profile it is not emitted: the Concat reads
    the branch's own DequantizeLinear, onnxruntime's QLinearConcat requantises it
    with its per-input table (no DQ -> Max -> Q left), bit-exact with the
    reference's float32 Requantize; on arm the Requantize stays."""
    from onnx import helper as h
    from qdeploy.emit.qdq_compare import end_to_end, optimized_ops, per_op
    from qdeploy.quant.interpreter import run
    from tests.helpers import model
    rng = np.random.default_rng(0)
    nodes = [h.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             h.make_node("Concat", ["c", "b"], ["y"], axis=1),
             h.make_node("MaxPool", ["c"], ["z"], kernel_shape=[2, 2], strides=[2, 2])]
    inits = {"W": (rng.standard_normal((3, 4, 3, 3)) * 0.3).astype(np.float32), "B": np.zeros(3, np.float32)}
    m = model(nodes, {"x": (1, 4, 8, 8), "b": (1, 3, 8, 8)}, ["y", "z"], inits, opset=13)
    x = {"x": rng.standard_normal((6, 4, 8, 8)).astype(np.float32),
         "b": (3 * rng.standard_normal((6, 3, 8, 8))).astype(np.float32)}
    for target in ("ort", "arm"):
        _, qg = pipeline(m, x, target)
        concat = next(n for n in qg.nodes if n.op == "Concat")
        req = [n for n in qg.nodes if n.op == "Requantize" and n.outputs[0] in concat.inputs]
        assert req, qg.op_counts()
        folded = qdq.concat_requantizes(qg)
        assert set(folded) == ({n.outputs[0] for n in req} if target == "ort" else set())
        if target == "arm":
            continue
        built = qdq.build(qg)
        assert "Max" not in [n.op_type for n in built.graph.node]
        data = built.SerializeToString()
        d = end_to_end(qg, qdq.run_session(qdq.session(data), x), run(qg, x))
        assert all(e.exact == e.count for e in d), [e.line() for e in d]
        assert all(e.exact == e.count for e in per_op(qg, built, x)), "per op"
        ops = optimized_ops(data, tmp_path / "opt.onnx")
        assert ops.get("QLinearConcat") == 1 and "Max" not in ops and "Concat" not in ops, ops


def test_float32_requantize_is_qlinearconcats_table():
    """The ort reference's Requantize (requant = "float32") against onnxruntime's
    QLinearConcat kernel itself, on all 256 uint8 inputs for 200 random
    (scale, zero point) pairs: QLinearConcat requantises an input whose
    parameters differ from the output's by a table QuantizeLinear(float32(s_in *
    (q - zp_in))), the reference's DequantizeLinear -> QuantizeLinear: equal."""
    import onnx
    from onnx import TensorProto, helper as h
    from qdeploy.quant.interpreter import run_node
    from qdeploy.quant.qgraph import QGraph, QNode, QTensor
    rng = np.random.default_rng(7)
    q = np.arange(256, dtype=np.uint8).reshape(1, 1, 1, 256)
    for _ in range(200):
        s_in, s_out = (np.float32(np.exp(rng.uniform(-6, 1))) for _ in range(2))
        zp_in, zp_out = (int(v) for v in rng.integers(0, 256, 2))
        ins = ["y_s", "y_z", "x", "x_s", "x_z", "c", "y_s", "y_z"]
        inits = [h.make_tensor(k, TensorProto.FLOAT, [], [v]) for k, v in (("y_s", s_out), ("x_s", s_in))] + \
                [h.make_tensor(k, TensorProto.UINT8, [], [v]) for k, v in (("y_z", zp_out), ("x_z", zp_in))]
        g = h.make_graph([h.make_node("QLinearConcat", ins, ["y"], domain="com.microsoft", axis=1)], "t",
                         [h.make_tensor_value_info(k, TensorProto.UINT8, [1, 1, 1, 256]) for k in ("x", "c")],
                         [h.make_tensor_value_info("y", TensorProto.UINT8, [1, 2, 1, 256])], initializer=inits)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
        got = qdq.session(m.SerializeToString()).run(None, {"x": q, "c": q})[0][:, :1]
        t = {"x": QTensor("x", q.shape, "uint8", np.float32([s_in]), np.int32([zp_in])),
             "y": QTensor("y", q.shape, "uint8", np.float32([s_out]), np.int32([zp_out]))}
        n = QNode("Requantize", "r", ["x"], ["y"], {}, {"requant": "float32", "in_scale": s_in, "out_scale": s_out,
                                                        "act_min": 0, "act_max": 255})
        want = run_node(QGraph("t", "ort", "ort", ["x"], ["y"], t, [n]), n, [q])[0]
        np.testing.assert_array_equal(got, want, err_msg=f"s_in {s_in} zp_in {zp_in} s_out {s_out} zp_out {zp_out}")
