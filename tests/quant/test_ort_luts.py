"""ort profile tables are what onnxruntime computes (quant/ort_luts.py)."""
import numpy as np
import onnx
from onnx import TensorProto, helper

from qdeploy.pipeline import run_artifact
from qdeploy.quant.ort_luts import ort_table
from qdeploy.quant.recipes import float_lut
from tests.cli_helpers import cli


def test_sigmoid_deep_tail_follows_onnxruntime_not_the_exact_function():
    """ppocr_v5_det's final Sigmoid on photos without text: output scale 3.9e-8. onnxruntime's
    logistic is an approximation there, so the exact table misses it by LSBs."""
    args = (0.0739084929227829, 255, 3.921568492160077e-08, 0)
    exact = float_lut("sigmoid", *args, dtype=np.uint8).astype(int)
    ort = ort_table("sigmoid", {}, *args, dtype=np.uint8).astype(int)
    assert np.abs(exact - ort).max() >= 2           # what verification refused before
    # and in the ordinary range the two agree within a rounding tie
    a2 = (0.05, 128, 1 / 256, 0)
    assert np.abs(float_lut("sigmoid", *a2, dtype=np.uint8).astype(int)
                  - ort_table("sigmoid", {}, *a2, dtype=np.uint8).astype(int)).max() <= 1


def test_ort_target_qdq_model_of_a_saturating_sigmoid_is_exact(tmp_path):
    conv_w = np.full((4, 3, 1, 1), 0.5, np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Sigmoid", ["c"], ["y"])]
    g = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [onnx.numpy_helper.from_array(conv_w, "w"),
                           onnx.numpy_helper.from_array(np.full(4, -15.0, np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, tmp_path / "m.onnx")
    x = np.random.default_rng(0).uniform(-2.5, 2.5, (12, 3, 8, 8)).astype(np.float32)   # sigmoid(-18..-11)
    np.save(tmp_path / "x.npy", x)
    res = cli("quantize", tmp_path / "m.onnx", "--target", "ort", "--calib", tmp_path / "x.npy",
              "-o", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.stderr          # quantize's verification: qdq == ref
    ref = run_artifact(tmp_path / "out", "ref", x)["y"]
    np.testing.assert_array_equal(run_artifact(tmp_path / "out", "qdq", x)["y"], ref)
