"""bench/hswish_tables.py: its ``gate`` table is what onnxruntime computes, and only h-swish tables change."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.helpers import bench_module

ht = bench_module("hswish_tables")


def _ort_hswish(s_in, zp_in, s_out, zp_out) -> np.ndarray:
    """onnxruntime (no graph optimization) on DQ -> Add 3 -> Clip 0..6 -> Q/DQ(6/255, uint8 0) -> Mul x -> Div 6 -> Q,
    for all 256 int8 inputs."""
    from qdeploy.ort_session import session
    init = [numpy_helper.from_array(np.float32(s_in), "si"), numpy_helper.from_array(np.int8(zp_in), "zi"),
            numpy_helper.from_array(np.float32(s_out), "so"), numpy_helper.from_array(np.int8(zp_out), "zo"),
            numpy_helper.from_array(np.float32(ht.GATE_STEP), "sg"), numpy_helper.from_array(np.uint8(0), "zg"),
            numpy_helper.from_array(np.float32(3), "three"), numpy_helper.from_array(np.float32(0), "zero"),
            numpy_helper.from_array(np.float32(6), "six")]
    nodes = [helper.make_node("DequantizeLinear", ["q", "si", "zi"], ["x"]),
             helper.make_node("Add", ["x", "three"], ["a"]),
             helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "sg", "zg"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "sg", "zg"], ["g"]),
             helper.make_node("Mul", ["x", "g"], ["m"]),
             helper.make_node("Div", ["m", "six"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["r"])]
    g = helper.make_graph(nodes, "hswish", [helper.make_tensor_value_info("q", TensorProto.INT8, [256])],
                          [helper.make_tensor_value_info("r", TensorProto.INT8, [256])], init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"q": np.arange(-128, 128).astype(np.int8)})[0]


@pytest.mark.parametrize("s_in,zp_in,s_out,zp_out", [
    (0.05, 0, 0.04, -119),        # h-swish output range [-0.375, 5.9]
    (0.031, -37, 0.0213, -110),   # a non-zero input zero point
    (0.11, 17, 0.097, -124),      # inputs past +-3 on both sides
])
def test_gate_table_is_onnxruntimes_qdq_hswish(s_in, zp_in, s_out, zp_out):
    want = _ort_hswish(s_in, zp_in, s_out, zp_out)
    got = ht.gate_table(s_in, zp_in, s_out, zp_out)
    np.testing.assert_array_equal(got, want)


def test_the_three_tables_differ():
    """Else the bench compares nothing: on these scales TFLite's recipe, the exact rounding and the gate
    each differ from the other two somewhere."""
    from qdeploy.quant.recipes.luts import hard_swish_lut
    args = (0.05, 0, 0.04, -119)
    tabs = [np.asarray(hard_swish_lut(*args)), ht.float_lut("hardswish", *args), ht.gate_table(*args)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.any(tabs[i] != tabs[j]), (i, j)


def test_only_hswish_tables_are_replaced():
    from qdeploy.quant.qgraph import QGraph, QNode, QTensor
    t = {n: QTensor(n, (1, 4), "int8", np.float32([0.05]), np.int32([0])) for n in ("x", "h", "s")}
    nodes = [QNode("Lut", "hs", ["x"], ["h"], {"func": "hardswish"}, {"table": np.zeros(256, np.int8)}),
             QNode("Lut", "sg", ["h"], ["s"], {"func": "sigmoid"}, {"table": np.zeros(256, np.int8)})]
    qg = QGraph("g", "arm", "arm", ["x"], ["s"], t, nodes)
    assert ht.with_tables(qg, "tflite") is qg
    for kind in ("exact", "gate"):
        q2 = ht.with_tables(qg, kind)
        assert np.any(q2.nodes[0].params["table"] != 0), kind
        assert not np.any(q2.nodes[1].params["table"]), kind
        assert not np.any(qg.nodes[0].params["table"]), kind   # the original is left as it was
