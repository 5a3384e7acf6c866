"""bench/sqnr.py helpers: the ops-left-in-float detector and the per-draw mean."""
import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.helpers import bench_module

sq = bench_module("sqnr")


def _qdq_model(quantize_relu_input: bool) -> bytes:
    """x -> Q -> DQ -> Conv -> (Q -> DQ)? -> Relu -> y."""
    init = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("z", TensorProto.UINT8, [], [128]),
            helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("Conv", ["xd", "w"], ["c"])]
    r_in = "c"
    if quantize_relu_input:
        nodes += [helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
                  helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"])]
        r_in = "cd"
    nodes.append(helper.make_node("Relu", [r_in], ["y"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])], init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_ops_left_in_float():
    assert sq.ops_left_in_float(_qdq_model(True)) == []
    assert sq.ops_left_in_float(_qdq_model(False)) == ["Relu"]


def test_measure_averages_draws_and_keeps_errors(monkeypatch):
    draws = iter([{"float_top1": None, "arm": 10.0, "fpga": "QDeployError: x", "ort_float_ops": []},
                  {"float_top1": None, "arm": 12.0, "fpga": 3.0, "ort_float_ops": []}])
    monkeypatch.setattr(sq, "measure_draw", lambda name, model, d, log: next(draws))
    row = sq.measure("m", onnx.ModelProto(), print, draws=2)
    assert np.isclose(row["arm"], 11.0) and row["arm:draws"] == [10.0, 12.0]
    assert row["fpga"] == "QDeployError: x"
    assert sq._spread(row, "arm") == "10.0..12.0"


def test_bench_quantizes_like_the_cli(tmp_path):
    """The bench's qdeploy columns are what `qdeploy quantize` writes, byte for byte
    (both go through pipeline.quantize_samples): the default, --fold-gap, and the fpga
    profile (whose power-of-two scales read calibration histograms)."""
    from qdeploy.pipeline import QGRAPH, QuantizeOptions, quantize_model
    from qdeploy.quant.qgraph import qgraph_bytes
    from tests.cli_helpers import DIGITS_CALIB, DIGITS_MODEL
    x = np.load(DIGITS_CALIB)["x"][:16]
    np.save(tmp_path / "calib.npy", x)
    model = onnx.load(str(DIGITS_MODEL))
    for k, (target, fold) in enumerate([("arm", False), ("arm", True), ("fpga", False)]):
        out = tmp_path / f"o{k}"
        quantize_model(DIGITS_MODEL, out, QuantizeOptions(target=target, calib=str(tmp_path / "calib.npy"),
                                                          fold_gap=fold, progress=False))
        _, qg = sq.qdeploy_quantize(model, x, target, False, "auto", False, fold=fold)
        qg.name = DIGITS_MODEL.stem    # a file's graph is named after the file, a ModelProto's is not
        assert qgraph_bytes(qg) == (out / QGRAPH).read_bytes(), (target, fold)
