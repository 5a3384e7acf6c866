"""bench/jitter_real.py: what its jitter moves (activation scales, tied ones together) and what it leaves."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.helpers import bench_module

jr = bench_module("jitter_real")

EPS = 0.002


def _qdq() -> onnx.ModelProto:
    """x -Q/DQ(sa)-> Conv(DQ(w, sw)) -Q/DQ(sb)-> MaxPool -Q/DQ(sc, the same value as sb)-> y."""
    init = [numpy_helper.from_array(np.float32(0.05), "sa"), numpy_helper.from_array(np.float32(0.1), "sb"),
            numpy_helper.from_array(np.float32(0.1), "sc"), numpy_helper.from_array(np.float32(0.02), "sw"),
            numpy_helper.from_array(np.uint8(128), "z"), numpy_helper.from_array(np.int8(0), "zw"),
            numpy_helper.from_array(np.ones((1, 1, 1, 1), np.int8), "wq")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sa", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sa", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"]),
             helper.make_node("Conv", ["xd", "w"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "sb", "z"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "sb", "z"], ["cd"]),
             helper.make_node("MaxPool", ["cd"], ["p"], kernel_shape=[1, 1]),
             helper.make_node("QuantizeLinear", ["p", "sc", "z"], ["pq"]),
             helper.make_node("DequantizeLinear", ["pq", "sc", "z"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])], init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _scales(mp: onnx.ModelProto) -> dict[str, float]:
    return {i.name: float(numpy_helper.to_array(i)) for i in mp.graph.initializer if i.name.startswith("s")}


def test_qdq_jitter_moves_activation_scales_only_and_keeps_ties():
    before = _scales(_qdq())
    after = _scales(onnx.load_from_string(jr.jitter_qdq(_qdq(), np.random.default_rng(0), EPS)))
    assert after["sw"] == before["sw"]                       # a weight scale: not an activation's
    assert after["sa"] == before["sa"]                       # the model input's: its grid is the data's
    for k in ("sb", "sc"):
        assert after[k] != before[k] and abs(after[k] / before[k] - 1) <= EPS + 1e-7, k
    assert after["sb"] == after["sc"]                        # tied (same value) before, tied after
    again = _scales(onnx.load_from_string(jr.jitter_qdq(_qdq(), np.random.default_rng(0), EPS)))
    assert again == after                                    # seeded


def test_qgraph_jitter_leaves_constants_and_keeps_ties():
    from qdeploy.onnx_import import import_onnx
    from qdeploy.passes import run_passes
    from qdeploy.pipeline import QuantizeOptions, quantize_samples
    from tests.cli_helpers import DIGITS_CALIB, DIGITS_MODEL
    x = np.load(DIGITS_CALIB)["x"][:8]
    g = run_passes(import_onnx(onnx.load(str(DIGITS_MODEL)), (1, *x.shape[1:])))
    qg, *_ = quantize_samples(g, x, "arm", QuantizeOptions(target="arm", progress=False))
    j = jr.jitter_qgraph(qg, np.random.default_rng(0), EPS)
    acts = [k for k, t in qg.tensors.items() if not t.is_const and t.scale is not None and t.dtype in ("int8", "uint8")]
    assert len(acts) > 3
    for k, t in qg.tensors.items():
        if t.is_const and t.scale is not None:
            assert np.array_equal(j.tensors[k].scale, t.scale), k
    ratio = {k: j.tensors[k].s / qg.tensors[k].s for k in acts}
    fixed = {k for k in acts if qg.tensors[k].s == qg.tensors[qg.inputs[0] + "_q"].s}
    assert qg.inputs[0] + "_q" in fixed and all(ratio[k] == 1.0 for k in fixed)   # the input's scale stays
    assert all(r != 1.0 and abs(r - 1) <= EPS + 1e-6 for k, r in ratio.items() if k not in fixed)
    by_value: dict[float, set] = {}
    for k in acts:
        by_value.setdefault(qg.tensors[k].s, set()).add(j.tensors[k].s)
    assert all(len(v) == 1 for v in by_value.values())      # one factor per shared scale
    assert len({round(r, 9) for r in ratio.values()}) > 1  # but not one factor for all
    moved = next(k for k in acts if k not in fixed)
    assert qg.tensors[moved].s != j.tensors[moved].s       # the original is left as it was (a copy)
