"""A model whose output is 0 on every calibration sample (a ReLU after all-negative
weights): its degenerate range gets the unit width (quant/scales.py), so LiteRT's
XNNPACK delegate prepares model.int8.tflite (with the width 1e-5, scale 3.9e-8, it
refused the conv and ``quantize`` ended in 'a qdeploy bug'), and every backend agrees."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from qdeploy.quant.scales import MIN_SPAN, activation_params
from tests.cli_helpers import cli
from tests.helpers import model

pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_litert")


def _dead(path):
    rng = np.random.default_rng(0)
    w = -np.abs(rng.normal(0, 0.3, (4, 3, 3, 3))).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c"], ["y"], name="relu1")]
    onnx.save(model(nodes, {"x": [1, 3, 8, 8]}, ["y"], {"w": w, "b": np.full(4, -0.1, np.float32)},
                    name="dead"), str(path))
    np.save(path.with_suffix(".npy"), np.abs(rng.normal(0, 1, (16, 3, 8, 8))).astype(np.float32))
    return path


def test_dead_relu_output_runs_on_every_backend(tmp_path):
    m = _dead(tmp_path / "dead.onnx")
    res = cli("quantize", m, "--target", "arm", "--calib", m.with_suffix(".npy"), "-o", tmp_path / "out",
              "--json")
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["verification"] == {"qdq": "bit-exact", "tflm": "bit-exact", "tflite": "bit-exact",
                                       "c": "bit-exact"}, summary["verification"]
    assert summary["verdict"]["pass"] is True, summary["verdict"]


@pytest.mark.parametrize("lo,hi", [(0.0, 0.0), (0.0, 3e-6), (-2e-6, 1e-6)])
def test_degenerate_range_gets_unit_width(lo, hi):
    s, zp = activation_params(lo, hi, -128, 127, False, False)
    assert s == np.float32(1 / 255) and zp == -128 + round(-min(lo, 0) * 255)
    s, zp = activation_params(lo, hi, -128, 127, True, False)
    assert s == np.float32(0.5 / 127) and zp == 0


def test_ranges_of_min_span_or_more_are_untouched():
    s, zp = activation_params(0.0, MIN_SPAN, -128, 127, False, False)
    assert s == np.float32(MIN_SPAN / 255) and zp == -128
    s, zp = activation_params(-1.0, 3.0, -128, 127, False, False)
    assert s == np.float32(4 / 255) and zp == -128 + 64
