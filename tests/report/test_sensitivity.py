"""The report's float-sensitivity probe (qdeploy/report/sensitivity.py): the original model's
outputs under seeded input noise of one int8 step's rounding power, checked against numpy on
a linear model; the note only for a model that amplifies small errors; in report.json and
the summary of a real quantize run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qdeploy.quant.error import sqnr_db
from qdeploy.report.sensitivity import SEED, SENSITIVE_DB, first_below, input_noise, note
from tests.cli_helpers import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, cli


def _conv_model(path, w: np.ndarray, b: np.ndarray, hw=(8, 8)):
    co, ci, kh, kw = w.shape
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[0, 0, 0, 0])], "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ci, *hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, co, hw[0] - kh + 1, hw[1] - kw + 1])],
        [numpy_helper.from_array(w.astype(np.float32), "w"), numpy_helper.from_array(b.astype(np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_linear_model_matches_numpy(tmp_path):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(4, 3, 1, 1)), rng.normal(size=4)
    model = _conv_model(tmp_path / "m.onnx", w, b)
    x = rng.uniform(-1, 1, (5, 3, 8, 8)).astype(np.float32)
    step = 2.0 / 255
    got = input_noise(model, x, ["y"], step)
    # the same seeded noise, the conv in numpy
    n = np.random.default_rng(SEED).standard_normal(x.shape) * step / np.sqrt(12)
    conv = lambda v: np.einsum("oc,nchw->nohw", w[:, :, 0, 0], v) + b.reshape(1, -1, 1, 1)   # noqa: E731
    assert got["noise_std"] == pytest.approx(step / np.sqrt(12))
    assert got["input_sqnr_db"] == pytest.approx(sqnr_db(x, x + n), abs=1e-6)
    assert got["output_sqnr_db"] == pytest.approx(sqnr_db(conv(x), conv(x + n)), abs=0.01)
    assert note(got) is None and got["output_sqnr_db"] > SENSITIVE_DB


def test_difference_filter_on_a_smooth_input_is_flagged(tmp_path):
    """A near-cancelling filter (as in PP-OCRv5's recognizer stem: +10.7 / -10.8) on an input
    dominated by its mean: the output is a small difference, the noise difference is not."""
    w = np.zeros((1, 1, 2, 1))
    w[0, 0, :, 0] = [1000.0, -1000.0]
    model = _conv_model(tmp_path / "m.onnx", w, np.zeros(1))
    ramp = (0.9 + 0.002 * np.arange(8)).astype(np.float32)
    x = np.broadcast_to(ramp.reshape(1, 1, 8, 1), (4, 1, 8, 8)).copy()
    sens = input_noise(model, x, ["y"], 2.0 / 255)
    assert sens["output_sqnr_db"] < SENSITIVE_DB
    sens["first_below"] = first_below([{"node": "a", "sqnr_db": 30.0}, {"node": "conv", "sqnr_db": 12.0},
                                       {"node": "b", "sqnr_db": 5.0}])
    text = note(sens)
    assert text and "amplifies small errors" in text and "'conv'" in text


def test_report_json_and_summary(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(DIGITS_MODEL, d / "digits_cnn.onnx")
    res = cli("quantize", d / "digits_cnn.onnx", "--calib", DIGITS_CALIB, "--eval", DIGITS_EVAL, "--limit", "40",
              "-o", tmp_path / "o")
    assert res.exit_code == 0, res.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    s = rep["sensitivity"]
    assert s["output_sqnr_db"] > SENSITIVE_DB and s["note"] is None     # the digits CNN is not sensitive
    assert s["input_sqnr_db"] > 30 and "note:" not in res.stdout
    # a sensitive model's note reaches the summary and the HTML report
    from qdeploy.report.html import render
    from qdeploy.report.summary import lines
    s["note"] = note({**s, "output_sqnr_db": 2.0, "first_below": "Conv.4"})
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert any(line.startswith("  note: the float model amplifies") and "'Conv.4'" in line
               for line in lines(rep, manifest, tmp_path / "o"))
    html = render(rep)
    assert 'id="sensitivity"' in html and html.index('id="sensitivity"') < html.index('id="backends"')
