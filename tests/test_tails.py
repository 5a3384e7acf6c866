"""Graph-output range widening (calibration/tails.py): the leave-one-out choice
against a brute-force re-implementation, and what it changes."""
import numpy as np
import pytest

from qdeploy.calibration import tails
from qdeploy.ir import Graph, Node, Tensor


def _identity(shape):
    """y = x * 1 (a graph whose output is its input's values)."""
    one = np.ones((1,), np.float32)
    return Graph([Node("Mul", "m", ["x", "one"], ["y"])],
                 {"x": Tensor("x", shape), "one": Tensor("one", (1,), "float32", one), "y": Tensor("y", shape)},
                 ["x"], ["y"])


def brute_force_k(v: np.ndarray, lo: float) -> float:
    """Every sample scored with the bound the rule gives from all *other*
    samples, clipping counted on every sample (not only the most extreme)."""
    best = None
    for k in tails.K:
        cost = 0.0
        for i in range(len(v)):
            m = np.sort(np.delete(v, i, axis=0).max(axis=1))[::-1]
            h = m[0] + k * (m[0] - m[1])
            cost += np.count_nonzero(v[i]) * ((h - lo) / 255) ** 2 / 12 + np.sum(np.maximum(v[i] - h, 0) ** 2)
        if best is None or cost < best[0] * (1 - 1e-12):
            best = (cost, k)
    return best[1]


@pytest.mark.parametrize("seed", range(6))
def test_leave_one_out_choice_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, e = 12, 3 if seed % 2 else 400          # few-logit outputs and a large map
    v = (rng.standard_normal((n, e)) * rng.uniform(0.5, 3.0, size=(n, 1))).astype(np.float32)
    lo, hi = float(min(v.min(), 0)), float(max(v.max(), 0))
    side = tails._Side()
    for row in v:
        side.update(row)
    bound, k = side.bound(hi, -lo)
    assert k == brute_force_k(v.astype(np.float64), lo)
    m = np.sort(v.max(axis=1))[::-1]
    assert bound == (hi if k == 0 else pytest.approx(m[0] + k * (m[0] - m[1])))


def test_small_heavy_tailed_output_is_widened_large_stable_one_is_not():
    rng = np.random.default_rng(1)
    # 4 logits per sample, the per-sample maximum varies a lot: widening pays
    x = (rng.standard_normal((32, 1, 4)) * rng.lognormal(0, 0.6, size=(32, 1, 1))).astype(np.float32)
    g = _identity((1, 1, 4))
    calibrated = {"x": (float(x.min()), float(x.max())), "y": (float(x.min()), float(x.max()))}
    new, msgs = tails.widen_outputs(g, x, calibrated)
    assert new["x"] == calibrated["x"]                      # inner tensors are never touched
    assert new["y"][0] < calibrated["y"][0] or new["y"][1] > calibrated["y"][1]
    assert len(msgs) == 1 and msgs[0].startswith("output 'y': range [")
    # 4096 values per sample: the maxima are stable, rounding noise dominates: unchanged
    x = rng.standard_normal((32, 1, 4096)).astype(np.float32)
    g = _identity((1, 1, 4096))
    calibrated = {"y": (float(x.min()), float(x.max()))}
    assert tails.widen_outputs(g, x, calibrated) == (calibrated, [])


def test_too_few_samples_or_one_sided_output_left_alone():
    x = np.abs(np.random.default_rng(2).standard_normal((2, 1, 4))).astype(np.float32)
    g = _identity((1, 1, 4))
    r = {"y": (0.0, float(x.max()))}
    assert tails.widen_outputs(g, x, r) == (r, [])
    x = -np.abs(np.random.default_rng(3).standard_normal((16, 1, 4))).astype(np.float32)
    r = {"y": (float(x.min()), 0.0)}
    new, _ = tails.widen_outputs(g, x, r)
    assert new["y"][1] == 0.0 and new["y"][0] <= r["y"][0]
