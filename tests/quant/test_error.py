"""Error metrics against numpy formulas written independently here, and the
per-layer table on a real quantized graph."""
import math

import numpy as np
import pytest

from qdeploy.quant.error import cosine, max_abs, sqnr_db


def test_sqnr_matches_the_power_ratio():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 8, 5, 5)).astype(np.float32)
    noise = rng.standard_normal(ref.shape).astype(np.float32) * 0.01
    p_sig = np.mean(ref.astype(np.float64) ** 2)
    p_noise = np.mean(noise.astype(np.float64) ** 2)
    want = 10 * math.log10(p_sig / p_noise)
    assert sqnr_db(ref, ref + noise) == pytest.approx(want, abs=1e-3)
    # a noise 10x larger in amplitude costs exactly 20 dB
    assert sqnr_db(ref, ref + 10 * noise) == pytest.approx(want - 20, abs=1e-3)
    # uniform quantization noise of an 8-bit full-scale sine: about 6.02*8 + 1.76 dB
    t = np.linspace(0, 2 * np.pi, 100_000, endpoint=False)
    sine = np.sin(t)
    step = 2 / 256
    q = np.round(sine / step) * step
    assert sqnr_db(sine, q) == pytest.approx(6.02 * 8 + 1.76, abs=0.3)


def test_sqnr_edge_cases():
    z = np.zeros(5)
    assert sqnr_db(z, z) == math.inf
    assert sqnr_db(np.ones(3), np.ones(3)) == math.inf
    assert sqnr_db(z, np.ones(5)) == -math.inf


def test_cosine_and_max_abs():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(50), rng.standard_normal(50)
    want = float(a @ b / math.sqrt((a @ a) * (b @ b)))
    assert cosine(a, b) == pytest.approx(want, rel=1e-12)
    assert cosine(a, 3 * a) == pytest.approx(1.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine(np.zeros(3), np.ones(3)) == 0.0
    assert max_abs(a, b) == pytest.approx(float(np.max(np.abs(a - b))))
    assert max_abs(a.reshape(5, 10), a.reshape(5, 10)) == 0.0


def _small_model():
    from tests.quant.test_bias_correction import _biased_model
    return _biased_model(seed=5)


def test_layer_errors_accumulated_and_local():
    """Deliberately broken int8 weights in the middle conv: its local error is
    the worst, the next layer's local error stays good while its accumulated
    error inherits the damage; the last row matches an independent computation."""
    import warnings
    from qdeploy.calibration.calibrate import calibrate
    from qdeploy.float_run import run_float
    from qdeploy.quant.error import layer_errors
    from qdeploy.quant.quantizer import quantize_graph
    g = _small_model()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 3, 10, 10)) + 0.3).astype(np.float32)
    r = calibrate(g, x, progress=False)
    ranges = r.bounds()
    convs = [n for n in g.nodes if n.op == "Conv"]
    mid = convs[1].output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qg = quantize_graph(g, ranges, "arm")
    wq = next(n for n in qg.nodes if n.outputs[0] == mid).inputs[1]
    broken = qg.tensors[wq].data.copy()
    broken[::2] = -broken[::2]                                 # every other channel negated
    qg.tensors[wq].data = broken
    rows = layer_errors(g, qg, x)
    by = {row["tensor"]: row for row in rows}
    first, last = convs[0].output, qg.outputs[0] + "_q"
    assert set(by) >= {qg.inputs[0] + "_q", first, mid, last}
    # the first conv reads the quantized graph input: accumulated == local
    assert by[first]["sqnr_db"] == pytest.approx(by[first]["local_sqnr_db"])
    assert by[mid]["local_sqnr_db"] < by[first]["local_sqnr_db"] - 10
    assert by[last]["local_sqnr_db"] > by[mid]["local_sqnr_db"] + 10
    assert by[last]["sqnr_db"] < by[last]["local_sqnr_db"] - 10
    # independent: the dequantized output vs onnxruntime, numpy formulas
    from qdeploy.quant.interpreter import run
    ref = np.concatenate([run_float(g, x[i:i + 1])[g.outputs[0]] for i in range(len(x))]).astype(np.float64)
    got = run(qg, x)[g.outputs[0]].astype(np.float64)
    want = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2))
    assert by[last]["sqnr_db"] == pytest.approx(want, abs=1e-6)
    assert by[last]["max_abs"] == pytest.approx(np.max(np.abs(ref - got)), rel=1e-6)


def test_layer_errors_one_sample_at_a_time_equal_all_at_once(monkeypatch):
    """The streamed table (metrics from sums over samples, one sample's tensors in
    memory) equals the one computed on every sample at once, and the outputs it
    collects are the interpreter's; the report's reference pass (report/measure.py
    reference_outputs: the table's samples, then batches) gives the outputs of one
    run over all samples, in order."""
    import warnings
    from qdeploy.calibration.calibrate import calibrate
    from qdeploy.quant.error import layer_errors
    from qdeploy.quant.interpreter import run
    from qdeploy.quant.quantizer import quantize_graph
    from qdeploy.report import measure
    g = _small_model()
    x = (np.random.default_rng(4).standard_normal((11, 3, 10, 10)) + 0.3).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qg = quantize_graph(g, calibrate(g, x, progress=False).bounds(), "arm")
    whole = run(qg, x, keep=True)
    outs: dict = {}
    streamed, at_once = layer_errors(g, qg, x, outputs=outs), layer_errors(g, qg, x, got=whole)
    assert [r["tensor"] for r in streamed] == [r["tensor"] for r in at_once] and len(streamed) >= 4
    for a, b in zip(streamed, at_once):
        for k in ("sqnr_db", "cosine", "max_abs", "local_sqnr_db", "local_cosine", "local_max_abs"):
            assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), (a["tensor"], k)
    np.testing.assert_array_equal(outs[qg.outputs[0]], whole[qg.outputs[0]])
    monkeypatch.setattr(measure, "LAYER_SAMPLES", 3)    # the table on 3 samples, the rest in batches of 3
    assert measure.layer_samples(qg) == 3 and measure.layer_samples(qg, measure.RUN_BYTES) == 3
    for layers in (True, False):
        ref, rows = measure.reference_outputs(g, qg, x, layers=layers)
        np.testing.assert_array_equal(ref[qg.outputs[0]], whole[qg.outputs[0]])
        assert (rows is not None) == layers and (not layers or len(rows) == len(streamed))
