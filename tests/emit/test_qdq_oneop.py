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


@pytest.mark.parametrize("target", ["ort", "arm"])
@pytest.mark.parametrize("case", list(CASES))
def test_one_op_within_one_lsb(case, target, tmp_path):
    diffs, ops, qg = check(case, target, tmp_path)
    for d in diffs:
        print(f"{case} {target}: {d.line()}")
        assert d.max <= 1, d.line()
    kernel = CASES[case][1]
    if target == "ort" and kernel is not None:
        assert kernel in ops, f"{case}: onnxruntime ran {ops}, no {kernel}"
        if kernel in ("QLinearConv", "QGemm"):
            assert "Conv" not in ops and "Gemm" not in ops, ops


@pytest.mark.parametrize("case", ["sigmoid", "tanh", "hardswish", "hardsigmoid", "silu", "leaky_relu"])
def test_float_lut_mode_within_one_lsb(case, tmp_path):
    """The measured alternative to Gather: the float activation between DQ and Q."""
    diffs, ops, _ = check(case, "ort", tmp_path, lut="float")
    assert "Gather" not in ops
    for d in diffs:
        print(f"{case} lut=float: {d.line()}")
        assert d.max <= 1, d.line()


def test_lut_gather_is_bit_exact(tmp_path):
    for case in ("hardswish", "leaky_relu"):
        for target in ("ort", "arm"):
            diffs, _, _ = check(case, target, tmp_path)
            assert all(d.exact == d.count for d in diffs), [d.line() for d in diffs]


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


def test_weights_and_bias_are_the_qgraphs_integers():
    from onnx import numpy_helper
    m, x, _ = build_case("conv")
    _, qg = pipeline(m, x, "ort")
    conv = next(n for n in qg.nodes if n.op == "Conv2D")
    inits = {t.name: numpy_helper.to_array(t) for t in qdq.build(qg).graph.initializer}
    w, b = (qg.tensors[i] for i in conv.inputs[1:])
    np.testing.assert_array_equal(inits[w.name], w.data)
    assert inits[w.name].dtype == np.int8 and inits[b.name].dtype == np.int32
    np.testing.assert_array_equal(inits[b.name], b.data)
    np.testing.assert_array_equal(inits[w.name + "_scale"], w.scale.astype(np.float32))
    np.testing.assert_array_equal(inits[b.name + "_scale"], b.scale.astype(np.float32))
    assert not inits[b.name + "_zero_point"].any()


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
