"""``quantize --per-tensor`` on the arm target: model.int8.tflite gives each Conv,
depthwise Conv, Gemm and ConvTranspose one weight scale and one bias scale, so that
LiteRT's XNNPACK delegate (the default ``--backend tflite``) prepares it (it refuses a
per-channel bias beside per-tensor weights), and every backend is checked as usual."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from qdeploy.emit.tflite import schema_py_generated as fb
from tests.cli_helpers import cli
from tests.helpers import model

pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_litert")


def _net(path):
    """Conv + ReLU -> depthwise Conv -> ConvTranspose (stride 2) -> GlobalAveragePool -> Gemm."""
    rng = np.random.default_rng(3)
    f = lambda *s, sd=0.3: rng.normal(0, sd, s).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=4, name="dw"),
             helper.make_node("ConvTranspose", ["c2", "w3", "b3"], ["c3"], strides=[2, 2], name="up"),
             helper.make_node("GlobalAveragePool", ["c3"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["v"], name="flat"),
             helper.make_node("Gemm", ["v", "w4", "b4"], ["y"], transB=1, name="fc")]
    inits = {"w1": f(4, 3, 3, 3), "b1": f(4, sd=0.1), "w2": f(4, 1, 3, 3), "b2": f(4, sd=0.1),
             "w3": f(4, 2, 2, 2), "b3": f(2, sd=0.1), "w4": f(5, 2), "b4": f(5, sd=0.1)}
    onnx.save(model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 5]}, inits, name="per_tensor"), str(path))
    np.save(path.with_suffix(".npy"), rng.normal(0, 1, (24, 3, 8, 8)).astype(np.float32))
    return path


def test_per_tensor_tflite_runs_on_every_backend(tmp_path):
    m = _net(tmp_path / "net.onnx")
    res = cli("quantize", m, "--target", "arm", "--per-tensor", "--calib", m.with_suffix(".npy"),
              "-o", tmp_path / "out", "--json")
    assert res.exit_code == 0, res.stderr
    verification = json.loads(res.stdout)["verification"]
    assert {"tflm", "tflite"} <= set(verification), verification
    assert verification["tflm"] == "bit-exact", verification
    model_t = fb.Model.GetRootAsModel((tmp_path / "out" / "model.int8.tflite").read_bytes(), 0)
    g = model_t.Subgraphs(0)
    layers = 0
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        code = model_t.OperatorCodes(op.OpcodeIndex())
        kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if kind not in (fb.BuiltinOperator.CONV_2D, fb.BuiltinOperator.DEPTHWISE_CONV_2D,
                        fb.BuiltinOperator.TRANSPOSE_CONV, fb.BuiltinOperator.FULLY_CONNECTED):
            continue
        layers += 1
        w_at, b_at = (1, 3) if kind == fb.BuiltinOperator.TRANSPOSE_CONV else (1, 2)
        scales = [g.Tensors(op.Inputs(i)).Quantization().ScaleLength() for i in (w_at, b_at)]
        assert scales == [1, 1], (k, kind, scales)
    assert layers == 4
