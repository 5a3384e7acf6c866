"""Streaming observers against brute-force numpy on the raw data."""
import json
import math
import pickle

import numpy as np
import pytest

from qdeploy.calibration import observers as O
from qdeploy.calibration.observers import B


def _data(kind: str, n: int = 200_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.standard_normal(n)
    elif kind == "student":          # heavy tails
        x = rng.standard_t(2.0, n)
    elif kind == "laplace_outliers":
        x = rng.laplace(0.0, 0.5, n)
        x[rng.choice(n, 20, replace=False)] = rng.uniform(-60, 60, 20)
    elif kind == "relu":             # one-sided, many exact zeros (post-ReLU)
        x = np.maximum(rng.standard_normal(n) * 3 + 0.5, 0)
    elif kind == "offset":           # strictly positive, far from 0
        x = rng.uniform(100, 127, n)
    else:
        raise AssertionError(kind)
    return x.astype(np.float32).reshape(8, -1)


KINDS = ["normal", "student", "laplace_outliers", "relu", "offset"]


def _observe(method, x, chunks=1):
    o = O.make(method)
    for part in np.array_split(x, chunks):
        o.update(part)
    return o


def _qdq_mse(x, lo, hi):
    """Actual int8 asymmetric quantize-dequantize error (TFLite-style zero point)."""
    x = x.astype(np.float64)
    s = (hi - lo) / 255.0
    zp = int(np.clip(round(-128 - lo / s), -128, 127))
    q = np.clip(np.round(x / s) + zp, -128, 127)
    return float(np.mean(((q - zp) * s - x) ** 2))


@pytest.mark.parametrize("kind", KINDS)
def test_minmax_exact(kind):
    x = _data(kind)
    lo, hi = _observe("minmax", x, chunks=5).range()
    assert (lo, hi) == (min(float(x.min()), 0.0), max(float(x.max()), 0.0))


@pytest.mark.parametrize("kind", KINDS)
def test_histogram_is_exact_brute_force(kind):
    x = _data(kind)
    o = _observe("entropy", x, chunks=7)   # streaming: the range grows while observing
    r = 2.0 ** o.exp
    assert np.abs(x).max() < r <= max(2 * np.abs(x).max(), 2.0 ** O.MIN_EXP)
    ref = np.bincount((np.floor(x.astype(np.float64).ravel() / r * B) + B).astype(int), minlength=2 * B)
    np.testing.assert_array_equal(o.counts, ref)


@pytest.mark.parametrize("kind", KINDS)
def test_percentile_within_one_bin(kind):
    x = _data(kind)
    for p in (99.99, 99.0):
        o = O.Percentile(p)
        for part in np.array_split(x, 3):
            o.update(part)
        w = o.width
        xs = np.sort(x.ravel().astype(np.float64))
        for got, q in zip(o.range(), (100 - p, p)):
            r = q / 100 * (xs.size - 1)   # np.percentile's linear rule lies between these two
            lo_ref, hi_ref = xs[math.floor(r)], xs[math.ceil(r)]
            ref = float(np.percentile(xs, q))
            assert lo_ref <= ref <= hi_ref
            if (got == 0.0) and (ref > 0 if q < 50 else ref < 0):
                continue       # widened to include 0
            assert lo_ref - w <= got <= hi_ref + w, (q, got, ref, w)


def _slow_kl(counts, zeros, kmin, kmax, i, levels=255):
    """TensorRT's recipe, written out: P = window with outliers folded into the
    edge bins, Q = window (without outliers) merged into `levels` levels and
    spread over P's non-zero bins; the exact zeros are one more atom of both."""
    h = counts.astype(np.float64).copy()
    h[B] -= zeros
    a, b = max(B - i, kmin), min(B + i, kmax + 1)
    if b - a < levels or 2 * (h[:a].sum() + h[b:].sum()) >= h.sum():
        return math.inf      # too few bins, or it clips the bulk (half the non-zero values)
    sliced = h[a:b].astype(np.float64)
    p = sliced.copy()
    p[0] += h[:a].sum()
    p[-1] += h[b:].sum()
    q = _merge_and_spread(p, sliced, levels)
    if q.sum() == 0:
        return math.inf
    return _kl(np.append(p, zeros), np.append(q, zeros))


def _merge_and_spread(p, window, levels):
    """Q: ``window`` merged into ``levels`` levels, each level's mass spread
    evenly over the bins where P is non-zero."""
    q = np.zeros_like(p)
    level = np.arange(len(p)) * levels // len(p)
    for lv in np.unique(level):
        m = level == lv
        nzm = m & (p > 0)
        if nzm.any():
            q[nzm] = window[m].sum() / nzm.sum()
    return q


def _kl(p, q):
    """KL(P||Q) of the normalised counts; inf where P has mass Q lacks."""
    P, Q = p / p.sum(), q / q.sum()
    if np.any((P > 0) & (Q == 0)):
        return math.inf
    m = P > 0
    return float(np.sum(P[m] * np.log(P[m] / Q[m])))


@pytest.mark.parametrize("kind", KINDS)
def test_entropy_search_matches_direct_kl(kind):
    o = _observe("entropy", _data(kind), chunks=2)
    kmin, kmax = o.occupied()
    kmin, kmax = min(kmin, B), max(kmax, B - 1)
    fast = O.entropy_divergences(o.counts, kmin, kmax, o.zeros)
    cands = sorted(set(range(O.ENTROPY_START, B + 1, 61)) | {B, int(np.argmin(fast)) + O.ENTROPY_START})
    for i in cands:
        slow = _slow_kl(o.counts, o.zeros, kmin, kmax, i)
        f = fast[i - O.ENTROPY_START]
        if math.isinf(slow):
            assert math.isinf(f), i
        else:
            assert f == pytest.approx(slow, rel=1e-6, abs=1e-9), i
    # the chosen range is the one of the best candidate
    t = (int(np.argmin(fast)) + O.ENTROPY_START) * o.width
    assert o.range() == (min(max(o.min, -t), 0.0), max(min(o.max, t), 0.0))


def test_entropy_clips_outliers_not_bulk():
    x = _data("laplace_outliers")
    lo, hi = _observe("entropy", x).range()
    assert 2.0 < hi < 0.5 * x.max() and 0.5 * x.min() < lo < -2.0
    assert _observe("entropy", x).clipped() < 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_mse_close_to_brute_force_grid(kind):
    x = _data(kind, n=100_000)
    lo, hi = _observe("mse", x, chunks=3).range()
    mn, mx = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    los = np.linspace(mn, 0, 41)[:-1] if mn < 0 else [0.0]
    his = np.linspace(0, mx, 41)[1:] if mx > 0 else [0.0]
    best = min(_qdq_mse(x, a, b) for a in los for b in his)
    got = _qdq_mse(x, lo, hi)
    assert got <= best * 1.05 + 1e-12, (got, best, lo, hi)
    # and never (beyond the noise model) worse than plain min/max
    assert got <= _qdq_mse(x, mn, mx) * 1.02


@pytest.mark.parametrize("method", list(O.METHODS))
@pytest.mark.parametrize("kind", KINDS)
def test_merge_equals_observing_all(method, kind):
    x = _data(kind, n=60_000)
    big = x * 9.0                       # forces the range to grow in one shard only
    whole = _observe(method, np.concatenate([x, big]), chunks=3)
    for a, b in ((x, big), (big, x)):
        m = O.merge(_observe(method, a, chunks=2), _observe(method, b))
        assert m.to_dict() == whole.to_dict()
        assert m.range() == whole.range()


@pytest.mark.parametrize("method", list(O.METHODS))
def test_dict_round_trip_is_json(method):
    o = _observe(method, _data("student"))
    d = json.loads(json.dumps(o.to_dict()))
    back = O.from_dict(d)
    assert back.to_dict() == o.to_dict() and back.range() == o.range()
    assert back.summary() == o.summary()


def test_merge_refuses_different_methods():
    with pytest.raises(ValueError):
        O.merge(O.make("minmax"), O.make("mse"))
    with pytest.raises(ValueError):
        O.merge(O.Percentile(99.9), O.Percentile(99.99))


@pytest.mark.parametrize("method", list(O.METHODS))
def test_state_does_not_grow_with_data(method):
    rng = np.random.default_rng(1)
    o = O.make(method)
    o.update(rng.standard_normal(10_000).astype(np.float32))
    size1 = len(pickle.dumps(o))
    for _ in range(10):
        o.update(rng.standard_normal(10_000).astype(np.float32))
    assert len(pickle.dumps(o)) <= size1 + 16      # a few bytes for larger int counts
    assert sorted(vars(o)) == sorted(vars(O.make(method)))
    assert o.count == 110_000


def test_summary_and_zero():
    o = _observe("percentile", _data("offset"))
    s = o.summary()
    assert s["lo"] == 0.0 and s["hi"] <= 127 and s["min"] >= 100
    assert sum(s["hist"]["counts"]) == o.count and len(s["hist"]["counts"]) <= 32
    assert len(s["hist"]["edges"]) == len(s["hist"]["counts"]) + 1
    with pytest.raises(ValueError):
        O.make("minmax").update(np.array([1.0, np.nan], np.float32))


# ---- entropy: atoms and degenerate windows ---------------------------------
def _spiky(n: int = 200_000, seed: int = 0) -> np.ndarray:
    """A ReLU output with 20 % of its values on five exact non-zero values (a
    depthwise conv gives exactly its bias on an all-zero input patch)."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(n), 0) * 1.5
    k = rng.random(n) < 0.2
    x[k] = rng.choice([0.21, 0.55, 0.9, 1.3, 1.75], int(k.sum()))
    return x.astype(np.float32)


def _slow_kl_atoms(counts, zeros, atoms, kmin, kmax, i, levels=255):
    """KL(P||Q) with every atom (the exact zeros and atoms[k] of each bin k in
    the window) an entry of its own, the same in P and Q; outliers (atoms
    included) folded into the window's edge bins of P; Q = the window's smooth
    part merged into levels and spread over P's non-zero bins."""
    h = counts.astype(np.float64).copy()
    h[B] -= zeros
    a, b = max(B - i, kmin), min(B + i, kmax + 1)
    if b - a < levels or 2 * (h[:a].sum() + h[b:].sum()) >= h.sum():
        return math.inf
    smooth = h[a:b] - atoms[a:b]
    p = smooth.copy()
    p[0] += h[:a].sum()
    p[-1] += h[b:].sum()
    q = _merge_and_spread(p, smooth, levels)
    exact = np.append(atoms[a:b][atoms[a:b] > 0], zeros)
    return _kl(np.append(p, exact), np.append(q, exact))


def test_atoms_are_the_spikes_only():
    o = _observe("entropy", _spiky())
    at = O.atoms(o.counts, o.zeros)
    values = np.array([0.21, 0.55, 0.9, 1.3, 1.75])
    expect = np.floor(values / o.width).astype(int) + B
    assert sorted(np.flatnonzero(at)) == sorted(expect)
    x = _spiky()
    for v, k in zip(values, expect):      # the spike's excess over its smooth neighbours
        exact = np.count_nonzero(x == np.float32(v))
        assert abs(at[k] - exact) < 0.03 * exact
    for kind in KINDS:                    # smooth data has no atoms
        o = _observe("entropy", _data(kind))
        assert not O.atoms(o.counts, o.zeros).any(), kind


def test_entropy_with_atoms_matches_direct_kl():
    o = _observe("entropy", _spiky(), chunks=3)
    at = O.atoms(o.counts, o.zeros)
    kmin, kmax = o.occupied()
    kmin, kmax = min(kmin, B), max(kmax, B - 1)
    fast = O.entropy_divergences(o.counts, kmin, kmax, o.zeros, at)
    best = int(np.argmin(fast)) + O.ENTROPY_START
    for i in sorted(set(range(O.ENTROPY_START, B + 1, 97)) | {best, best - 1, best + 1}):
        slow = _slow_kl_atoms(o.counts, o.zeros, at, kmin, kmax, i)
        f = fast[i - O.ENTROPY_START]
        if math.isinf(slow):
            assert math.isinf(f), i
        else:
            assert f == pytest.approx(slow, rel=1e-6, abs=1e-9), i
    t = best * o.width
    assert o.range() == (0.0, min(o.max, t))


def test_entropy_atoms_do_not_make_it_clip():
    # without the atoms' own entries, spreading them over their levels made
    # the search clip ~10 % of this tensor (at 1.75, the largest atom)
    x = _spiky()
    o = _observe("entropy", x)
    lo, hi = o.range()
    assert lo == 0.0 and hi > 3.0
    assert np.mean(x > hi) < 1e-3 and o.clipped() < 1e-3


def test_entropy_keeps_the_bulk():
    # a sigmoid gate: every value far from 0, the smallest one alone; the
    # windows [0, T < 0.3] hold that one value and had divergence 0
    # (everything else folded onto their edge): it clipped 99.95 %
    rng = np.random.default_rng(3)
    x = np.clip(rng.normal(0.6, 0.08, 2048), 0.3, 1.0).astype(np.float32)
    x[0] = 0.15
    lo, hi = _observe("entropy", x).range()
    assert lo == 0.0 and np.mean(x > hi) < 0.01


def test_entropy_of_pure_atoms_is_the_full_range():
    # 8-bit pixels normalised: a comb of isolated bins, every one an atom
    rng = np.random.default_rng(4)
    x = ((rng.integers(0, 256, 100_000) / 255 - 0.45) / 0.225).astype(np.float32)
    o = _observe("entropy", x)
    assert O.atoms(o.counts, o.zeros).sum() == o.count
    assert o.range() == (float(x.min()), float(x.max()))
