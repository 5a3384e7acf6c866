"""The report's activation histograms (report/build.histograms) stream the float model
one sample at a time: counts, edges and the share outside the int grid as numpy gives
them on all values at once, the 99.9th percentile of |v| within one of its bins."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from qdeploy.report.build import HIST_BINS, P999_BINS, _quantile, histograms


@pytest.mark.parametrize("seed", range(4))
def test_quantile_from_bins_is_numpys_within_a_bin(seed):
    rng = np.random.default_rng(seed)
    v = np.abs(rng.standard_normal(50_000 + seed)) * (1 + 7 * seed)
    v[rng.random(v.size) < 0.3] = 0.0                 # ReLU-like zeros
    v[:3] = v.max() * 4                               # a far tail
    top = float(v.max())
    counts = np.histogram(v, bins=P999_BINS, range=(0.0, top))[0]
    for q in (0.5, 0.999, 1.0):
        assert abs(_quantile(counts, top, q) - np.percentile(v, 100 * q)) <= top / P999_BINS


def test_histograms_equal_one_pass_over_all_samples():
    from qdeploy.calibration.calibrate import calibrate
    from qdeploy.float_run import run_samples
    from qdeploy.quant.quantizer import quantize_graph
    from tests.quant.test_error import _small_model
    g = _small_model()
    x = (np.random.default_rng(5).standard_normal((9, 3, 10, 10)) * 2).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qg = quantize_graph(g, calibrate(g, x[:2], progress=False).bounds(), "arm")   # narrow: values clip
    fname = {t: qg.metadata.get("float_names", {}).get(t, t) for t in qg.tensors}
    tensors = [n.outputs[0] for n in qg.nodes if n.op in ("Conv2D", "Add") and fname[n.outputs[0]] in g.tensors]
    assert len(tensors) >= 2
    got = histograms(g, qg, tensors, x, "test")
    assert set(got) == set(tensors)
    allv = run_samples(g, x, expose=[fname[t] for t in tensors if fname[t] not in g.inputs])
    for t in tensors:
        v, qt, h = np.asarray(allv[fname[t]], np.float64).ravel(), qg.tensors[t], got[t]
        lo, hi = (-128 - qt.zp) * qt.s, (127 - qt.zp) * qt.s
        counts, edges = np.histogram(v, bins=HIST_BINS, range=(min(lo, v.min()), max(hi, v.max())))
        assert h["counts"] == counts.tolist() and h["edges"] == edges.tolist()
        assert h["clipped_pct"] == pytest.approx(np.mean((v < lo - qt.s / 2) | (v > hi + qt.s / 2)) * 100)
        reach = max(abs(lo), abs(hi))
        assert abs(h["p999_of_range"] * reach - np.percentile(np.abs(v), 99.9)) <= np.abs(v).max() / P999_BINS
    assert any(h["clipped_pct"] > 0 for h in got.values())
