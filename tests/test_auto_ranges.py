"""Calibration method ``auto`` (qdeploy/calibration/auto.py): ranges chosen by the model output.

Two tiny models where the right answer is known: an outlier in front of a
saturating Tanh wastes the int8 levels (clipping it costs nothing downstream),
and rare large values that carry the whole output (clipping them removes the
signal). Each choice is checked against the integer interpreter on FRESH
samples of the same distribution, and against the opposite choice, so the
test fails if ``auto`` picks wrongly.
"""
import inspect
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper

from qdeploy.calibration.auto import CANDIDATES, activation_qparams, auto_ranges
from qdeploy.calibration.calibrate import calibrate
from qdeploy.calibration.ranges import load_ranges, merge_ranges, save_ranges
from qdeploy.errors import QDeployError
from qdeploy.float_run import run_samples
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.interpreter import run
from qdeploy.quant.quantizer import quantize_graph
from qdeploy.quant.targets import load_target
from tests.helpers import model


def _tanh_model():
    """x -> 1x1 conv (gain 1) -> Tanh: values beyond |4| all map to +-1."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             helper.make_node("Tanh", ["c"], ["y"], name="tanh")]
    m = model(nodes, {"x": [1, 1, 32, 32]}, ["y"],
              {"w": np.ones((1, 1, 1, 1), np.float32), "b": np.zeros(1, np.float32)})
    return run_passes(import_onnx(m))


def _outlier_x(n, seed, outliers=(5, 21)):
    x = np.random.default_rng(seed).standard_normal((n, 1, 32, 32)).astype(np.float32)
    for i in outliers:
        if i < n:
            x[i, 0, 7, 9] = 50.0
    return x


def _spike_model():
    """x (2 channels) -> 1x1 conv 2->1 with weights (0.01, 1): the rare large
    values of channel 1 are the output's whole signal."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")]
    m = model(nodes, {"x": [1, 2, 32, 32]}, ["y"],
              {"w": np.array([0.01, 1.0], np.float32).reshape(1, 2, 1, 1), "b": np.zeros(1, np.float32)})
    return run_passes(import_onnx(m))


def _spike_x(n, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 2, 32, 32), np.float32)
    x[:, 0] = rng.standard_normal((n, 32, 32))
    for i in range(0, n, 8):                      # one spike in every 8th sample
        x[i, 1, rng.integers(32), rng.integers(32)] = rng.choice([-30.0, 30.0])
    return x


def _interp_sqnr(g, bounds, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qg = quantize_graph(g, bounds, "arm")
    ref = run_samples(g, x)[g.outputs[0]]
    return sqnr_db(ref, run(qg, {g.inputs[0]: x})[g.outputs[0]])


def test_api_takes_only_calibration_samples():
    params = list(inspect.signature(auto_ranges).parameters)
    assert params[:2] == ["graph", "calib_x"]
    assert not any(p for p in params if "eval" in p or "test" in p or p in ("x", "y", "labels"))


def test_clips_an_outlier_that_wastes_int8_levels():
    g = _tanh_model()
    r = auto_ranges(g, _outlier_x(32, 0), progress=False)
    assert r.method == "auto"
    x_in = g.inputs[0]
    assert r.options["choices"][x_in] != "minmax"
    lo, hi = r.bounds()[x_in]
    assert hi < 10.0 and lo < -2.0                        # the outlier (50) is clipped, the bulk kept
    fresh = _outlier_x(32, 1, outliers=(3, 30))
    mm = calibrate(g, _outlier_x(32, 0), method="minmax", progress=False).bounds()
    assert _interp_sqnr(g, r.bounds(), fresh) > _interp_sqnr(g, mm, fresh) + 6.0


def test_keeps_the_values_that_carry_the_output():
    g = _spike_model()
    cal = _spike_x(32, 0)
    r = auto_ranges(g, cal, progress=False)
    mm = calibrate(g, cal, method="minmax", progress=False)
    for t, (lo, hi) in r.bounds().items():
        mlo, mhi = mm.bounds()[t]
        assert hi >= 0.9 * mhi and lo <= 0.9 * mlo, (t, r.options["choices"][t])
    # the clipping alternative is much worse on fresh data: the test can fail
    fresh = _spike_x(32, 7)
    pct = calibrate(g, cal, method="percentile", progress=False).bounds()
    assert _interp_sqnr(g, r.bounds(), fresh) > _interp_sqnr(g, pct, fresh) + 6.0


def test_deterministic_and_round_trips(tmp_path):
    g = _tanh_model()
    cal = _outlier_x(16, 3, outliers=(2, 11))
    a, b = auto_ranges(g, cal, progress=False), auto_ranges(g, cal, progress=False)
    assert a.to_dict() == b.to_dict()
    assert set(a.options["choices"].values()) <= set(CANDIDATES)
    save_ranges(a, tmp_path / "r.json")
    back = load_ranges(tmp_path / "r.json", g)
    assert back.method == "auto" and back.options == a.options and back.bounds() == a.bounds()
    save_ranges(back, tmp_path / "r2.json")
    assert (tmp_path / "r.json").read_bytes() == (tmp_path / "r2.json").read_bytes()
    with pytest.raises(QDeployError, match="auto"):
        merge_ranges([tmp_path / "r.json", tmp_path / "r2.json"])


def test_calibrate_dispatch_and_one_sample():
    g = _tanh_model()
    cal = _outlier_x(8, 4, outliers=(1,))
    assert calibrate(g, cal, method="auto", progress=False).to_dict() == \
        auto_ranges(g, cal, progress=False).to_dict()
    one = auto_ranges(g, cal[:1], progress=False)         # nothing to hold out: minmax
    assert set(one.options["choices"].values()) == {"minmax"}
    assert one.bounds() == calibrate(g, cal[:1], method="minmax", progress=False).bounds()


def test_qparams_are_the_quantizers():
    g = _spike_model()
    b = calibrate(g, _spike_x(8, 0), method="mse", progress=False).bounds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qg = quantize_graph(g, b, "arm")
    qp = activation_qparams(g, b, load_target("arm"))
    for t in g.activations():
        q = qg.tensors[t + "_q"] if t in g.inputs or t in g.outputs else qg.tensors[t]
        assert qp[t] == (float(q.s), int(q.zp))


def test_qparams_are_the_quantizers_for_a_widened_concat_branch():
    """A concat branch read elsewhere whose requantisation would round twice
    gets a wider scale (quantizer._widen_branch): the same here."""
    from tests.quant.test_quantizer_ops import _branch_model
    from tests.quant.oneop import minmax_ranges, pipeline
    m, x = _branch_model("conv")
    g, qg = pipeline(m, x, "arm")
    qp = activation_qparams(g, minmax_ranges(g, x), load_target("arm"))
    assert qp["a1"] != qp["y"] and qp["a1"][0] / qp["y"][0] == pytest.approx(0.6, rel=1e-6)
    for t in g.activations():
        q = qg.tensors[t + "_q"] if t in g.inputs or t in g.outputs else qg.tensors[t]
        assert qp[t] == (float(q.s), int(q.zp))


def test_quantize_cli_method_auto(tmp_path):
    from qdeploy.pipeline import QuantizeOptions, quantize_model
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
               helper.make_node("Tanh", ["c"], ["y"], name="tanh")], {"x": [1, 1, 32, 32]}, ["y"],
              {"w": np.ones((1, 1, 1, 1), np.float32), "b": np.zeros(1, np.float32)})
    onnx.save(m, str(tmp_path / "m.onnx"))
    np.save(tmp_path / "cal.npy", _outlier_x(16, 0, outliers=(2, 12)))
    res = quantize_model(tmp_path / "m.onnx", tmp_path / "out",
                         QuantizeOptions(calib=str(tmp_path / "cal.npy"), method="auto", progress=False))
    assert res.ranges.method == "auto"
    back = load_ranges(tmp_path / "out" / "ranges.json")
    assert back.bounds() == res.ranges.bounds()
