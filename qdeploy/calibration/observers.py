"""Streaming, mergeable range observers for calibration.

An observer sees one tensor's values batch after batch (``update``), keeps a
state whose size does not depend on how much it has seen, and answers
``range() -> (lo, hi)``, the float range the int8 quantizer will use (always
widened to contain 0, so that the int8 zero is exact). ``merge(a, b)`` combines
two observers of the same tensor and equals observing the concatenation of
their data, exactly: shards of a calibration set are calibrated separately and
reduced later. ``to_dict`` / ``from_dict`` give plain JSON-able state.

Methods
-------
``minmax``      the observed minimum and maximum (exact).
``percentile``  the ``100 - p`` and ``p`` percentiles of the *signed* values
                (``p = 99.99`` by default), from the histogram, linearly
                interpolated inside the bin: within one bin width of
                ``np.percentile(x, [100 - p, p])``.
``entropy``     TensorRT-style KL-divergence threshold search. The reference
                distribution is the signed histogram; candidate thresholds are
                ``T = i * w`` for ``i = 128 .. 2048`` bins of ``|x|``. For each
                candidate the window ``[-T, T]`` is intersected with the observed
                extent (a ReLU output gives ``[0, T]``), outliers are folded into
                the window's edge bins (P), the window without outliers is merged
                into 255 levels -- the steps of the asymmetric int8 quantizer over
                that window -- and spread back evenly over the bins where P is
                non-zero (Q); the candidate with the smallest KL(P||Q) wins (ties:
                the smallest). A window of fewer than 255 bins (a one-sided
                tensor below i = 255) is skipped: at histogram resolution it
                would quantize losslessly. A candidate whose clipped mass lands in a level
                that is otherwise empty has infinite divergence. Atoms -- values
                that occur many times exactly -- are entries of their own, equal
                in P and Q, when inside the window (outside it they are outliers
                like the rest of their bin): the exact zeros (counted apart: int8
                represents 0 exactly), and the spikes :func:`atoms` finds in the
                histogram (a depthwise conv over an all-zero patch gives exactly
                its bias, a ReLU6 saturates at 6, flat image regions repeat a
                pixel value). Spreading an atom evenly over its level, as Q does
                for the rest, costs ``atom * log(bins per level)``, which grows
                with ``T`` and has nothing to do with the atom's quantization
                error (at most half a step, like any value): on MobileNet's
                depthwise outputs it made the search clip up to 7 % of the values.
                A window that clips half or more of the non-zero values is no
                candidate either: KL compares the *shape* of what stays inside,
                so a window holding one value has divergence 0 (a sigmoid gate
                whose values all lie in [0.15, 0.92] was clipped at 0.15). See
                :class:`Entropy` for what the method still costs.
``tailclip``    (the default) ``minmax``, except for a tensor whose distribution
                has a heavy tail: when clipping lowers the tensor's own int8
                error by more than ``HEAVY_DB`` (2 dB, a factor 1.6: the expected
                quantize-dequantize error over the histogram, as ``mse`` computes it,
                of the ``mse`` range against the covering range), the range is the
                ``100 - p`` .. ``p`` percentiles with ``p = 99.999``
                (``TAIL_PERCENTILE``; onnxruntime's Percentile default is also 99.999
                but cuts half of the 0.001 % on each side, so it clips a little
                less: onnxruntime 1.32 calibrate.py ``compute_percentile``). A tensor
                the quantizer must not clip (graph outputs, and tensors whose scale
                does not come from their own range; the calibrator decides, see
                ``calibrate.py``) is made with ``may_clip=False`` and keeps its
                covering range. Why: trained networks have tensors whose few
                largest values stretch the min/max range (a heavy tail), random-weight
                ones do not (bench/RESULTS.md "SQNR" and "SQNR on trained models").
``mse``         the clip range ``[lo, hi]`` (lo <= 0 <= hi) minimising the expected
                squared error of int8 asymmetric quantize-dequantize over the
                histogram: in-range values cost ``step**2 / 12`` each
                (``step = (hi - lo) / 255``), clipped values cost their squared
                distance to the clip bound (bin centres), exact zeros cost
                nothing. Candidates are bin edges
                (at most 512 per side, evenly subsampled) plus the exact min/max.

Histogram scheme (exact re-binning)
-----------------------------------
One signed histogram of ``2 * 2048`` bins over ``[-R, R)`` where ``R = 2**e`` is
the smallest power of two strictly above every ``|x|`` seen (at least 2**-24).
Bin ``k`` holds ``x`` with ``floor(x * 2048 / R) + 2048 == k``: edges are exact
binary fractions, 0 is an edge, and scaling by a power of two is exact in
floating point. When a larger value arrives, ``R`` doubles (as often as needed)
and bin ``k`` moves to ``(k + 2048) // 2``: each new bin is exactly the union of
two old ones, so the counts equal those of observing everything at the final
``R`` -- streaming, merging and one-shot observation give identical histograms.
The ``|x|`` histogram used by the entropy search is this one folded at 0.
"""
from __future__ import annotations

import math

import numpy as np

B = 2048                 # bins per side of the signed histogram
MIN_EXP = -24            # R >= 2**-24
MSE_CANDIDATES = 512     # per side
ENTROPY_LEVELS = 255     # steps of the int8 quantizer over the chosen window
ENTROPY_START = 128      # smallest candidate threshold, in bins of |x|
COARSE_BINS = 32         # histogram summary for reports
ATOM_RADIUS = 8          # atoms: a bin's neighbourhood is the 2 * 8 + 1 bins around it
ATOM_FACTOR = 2.0        # atoms: a spike holds more than 2x the neighbourhood's median
ATOM_SIGMAS = 4.0        # ... plus 4 Poisson standard deviations
ATOM_MIN = 4.0           # ... plus 4 values
HEAVY_DB = 2.0           # tailclip: a tail is heavy when clipping lowers the int8 error by > 2 dB
TAIL_PERCENTILE = 99.999          # tailclip: where a heavy tail is clipped


def _finite_minmax(x: np.ndarray) -> tuple[float, float]:
    lo, hi = float(x.min()), float(x.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("tensor contains NaN or Inf")
    return lo, hi


def _with_zero(lo: float, hi: float) -> tuple[float, float]:
    return min(lo, 0.0), max(hi, 0.0)


class MinMax:
    """Exact minimum and maximum."""

    method = "minmax"

    def __init__(self):
        self.count, self.min, self.max = 0, math.inf, -math.inf

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.size == 0:
            return
        lo, hi = _finite_minmax(x)
        self.count += int(x.size)
        self.min, self.max = min(self.min, lo), max(self.max, hi)

    def _merge_from(self, other: "MinMax") -> None:
        self.count += other.count
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def range(self) -> tuple[float, float]:
        if self.count == 0:
            return 0.0, 0.0
        return _with_zero(self.min, self.max)

    def clipped(self, bounds: tuple[float, float] | None = None) -> float:
        return 0.0      # its own range clips nothing; other bounds: unknown without a histogram

    def state(self) -> dict:
        return {"count": self.count, "min": self.min if self.count else None,
                "max": self.max if self.count else None}

    def _load(self, d: dict) -> None:
        self.count = int(d["count"])
        if self.count:
            self.min, self.max = float(d["min"]), float(d["max"])

    def options(self) -> dict:
        return {}

    def summary(self) -> dict:
        lo, hi = self.range()
        return {"min": self.min if self.count else 0.0, "max": self.max if self.count else 0.0,
                "lo": lo, "hi": hi, "clipped": self.clipped(), "count": self.count,
                "hist": self.coarse_hist()}

    def coarse_hist(self) -> dict | None:
        return None

    def to_dict(self) -> dict:
        return {"method": self.method, **self.options(), **self.state()}


class Histogram(MinMax):
    """Min/max plus the exact power-of-two signed histogram (see module doc).
    Subclasses choose the range from it."""

    method = "histogram"

    def __init__(self):
        super().__init__()
        self.exp = MIN_EXP
        self.counts = np.zeros(2 * B, np.int64)
        self.zeros = 0       # exact zeros (inside bin B; int8 represents them exactly)
        self._range = None   # cache of the chosen range (cleared when the state changes)

    # ---- state ---------------------------------------------------------
    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exp) / B

    def _grow(self, exp: int) -> None:
        if not self.counts.any():
            self.exp = max(self.exp, exp)
        while self.exp < exp:
            new = np.zeros_like(self.counts)
            np.add.at(new, (np.arange(2 * B) + B) // 2, self.counts)
            self.counts, self.exp = new, self.exp + 1

    @staticmethod
    def _exp_for(lo: float, hi: float) -> int:
        m = max(abs(lo), abs(hi))
        return max(MIN_EXP, math.frexp(m)[1]) if m > 0 else MIN_EXP

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.size == 0:
            return
        lo, hi = _finite_minmax(x)
        self._range = None
        self.count += int(x.size)
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self._grow(self._exp_for(lo, hi))
        ft = np.float64 if x.dtype == np.float64 else np.float32
        scale = ft(math.ldexp(1.0, -self.exp) * B)   # a power of two: x * scale is exact
        v = x.astype(ft, copy=False).ravel() * scale
        np.floor(v, out=v)
        idx = v.astype(np.intp)
        idx += B
        self.counts += np.bincount(idx, minlength=2 * B)
        self.zeros += int(idx.size - np.count_nonzero(x))

    def _merge_from(self, other: "Histogram") -> None:
        self._grow(other.exp)
        other_counts = other.counts
        if other.exp < self.exp:
            o = Histogram.__new__(Histogram)
            o.exp, o.counts = other.exp, other.counts.copy()
            o._grow(self.exp)
            other_counts = o.counts
        super()._merge_from(other)
        self._range = None
        self.counts = self.counts + other_counts
        self.zeros += other.zeros

    def state(self) -> dict:
        nz = np.flatnonzero(self.counts)
        first = int(nz[0]) if nz.size else 0
        last = int(nz[-1]) + 1 if nz.size else 0
        return {**super().state(), "exp": self.exp, "zeros": self.zeros, "first_bin": first,
                "bins": self.counts[first:last].tolist()}

    def _load(self, d: dict) -> None:
        super()._load(d)
        self.exp = int(d["exp"])
        self._range = None
        self.zeros = int(d["zeros"])
        self.counts = np.zeros(2 * B, np.int64)
        bins = np.asarray(d["bins"], np.int64)
        self.counts[int(d["first_bin"]):int(d["first_bin"]) + bins.size] = bins

    # ---- helpers for the range choosers ---------------------------------
    def edges(self) -> np.ndarray:
        return (np.arange(2 * B + 1) - B) * self.width

    def occupied(self) -> tuple[int, int]:
        nz = np.flatnonzero(self.counts)
        return int(nz[0]), int(nz[-1])

    def clipped(self, bounds: tuple[float, float] | None = None) -> float:
        """Fraction of the observed values in bins entirely outside the range
        (or ``bounds``; bin resolution)."""
        if self.count == 0:
            return 0.0
        lo, hi = self.range() if bounds is None else bounds
        e = self.edges()
        below = self.counts[e[1:] <= lo].sum() if lo > self.min else 0
        above = self.counts[e[:-1] >= hi].sum() if hi < self.max else 0
        return float(below + above) / self.count

    def coarse_hist(self) -> dict | None:
        if self.count == 0:
            return None
        a, b = self.occupied()
        parts = np.array_split(np.arange(a, b + 1), min(COARSE_BINS, b + 1 - a))
        e = self.edges()
        return {"edges": [float(e[p[0]]) for p in parts] + [float(e[b + 1])],
                "counts": [int(self.counts[p].sum()) for p in parts]}

    def range(self) -> tuple[float, float]:
        if self._range is None:
            self._range = self._choose() if self.count else (0.0, 0.0)
        return self._range

    def _choose(self) -> tuple[float, float]:
        return MinMax.range(self)

class Percentile(Histogram):
    method = "percentile"

    def __init__(self, percentile: float = 99.99):
        super().__init__()
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = float(percentile)

    def options(self) -> dict:
        return {"percentile": self.percentile}

    def _choose(self) -> tuple[float, float]:
        cdf = np.cumsum(self.counts)
        e = self.edges()

        def at(q: float) -> float:
            # value at rank q * (n - 1) (np.percentile's linear rule), interpolated in its bin
            rank = q * (self.count - 1) + 0.5
            k = int(np.searchsorted(cdf, rank, side="left"))
            before = cdf[k - 1] if k else 0
            return float(e[k] + self.width * (rank - before) / self.counts[k])

        p = self.percentile / 100.0
        lo = max(self.min, min(self.max, at(1.0 - p)))
        hi = max(self.min, min(self.max, at(p)))
        return _with_zero(lo, hi)


class Entropy(Histogram):
    """KL-divergence threshold (module docstring).

    Why it can still trail ``minmax`` in output SQNR (measured on the
    random-weight corpus, bench/sqnr.py): KL weighs a clipped value by its
    probability only, not by how far it is clipped, so on heavy-tailed tensors
    -- signed conv outputs before a residual Add, HardSwish and
    squeeze-excite products, pooled features, logits -- it clips the sparse
    0.05-0.4 % tail to gain resolution in the bulk, even when the tail holds
    values 2-5x the threshold. Where those large values carry the signal
    (random-weight networks, and the logits of any network) that costs more
    than the resolution gains. On small tensors (a few thousand values:
    pooled features, logits of a 32-image set) the plug-in divergence is also
    biased upward by sampling noise, by about (non-empty bins - non-empty
    levels) / (2 n), which grows with the window and favours clipping. Use
    ``minmax`` or ``mse`` when the largest values matter; ``entropy`` is the
    TensorRT-compatible choice.
    """

    method = "entropy"

    def _choose(self) -> tuple[float, float]:
        kmin, kmax = self.occupied()
        kmin, kmax = min(kmin, B), max(kmax, B - 1)     # the window always holds 0
        if kmax - kmin < 1:
            return MinMax.range(self)
        i = entropy_threshold_bins(self.counts, kmin, kmax, self.zeros, atoms(self.counts, self.zeros))
        t = i * self.width
        return _with_zero(max(self.min, -t), min(self.max, t))


def _xlogx(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


def atoms(counts: np.ndarray, zeros: int = 0) -> np.ndarray:
    """The part of each bin's count that is a spike above its neighbourhood:
    ``counts[k] - m`` where ``m`` is the median of the bins ``k - ATOM_RADIUS
    .. k + ATOM_RADIUS``, for the bins with ``counts[k] > ATOM_FACTOR * m +
    ATOM_SIGMAS * sqrt(m) + ATOM_MIN`` (far beyond the Poisson noise of a
    smooth density, and beyond the curvature of a smooth peak or the cliff of a
    ReLU at 0); 0 elsewhere. The exact ``zeros`` are not part of bin B here
    (they are an atom of their own). A function of the histogram only, so
    streaming and merging stay exact. Data made only of atoms (8-bit pixels:
    a comb of isolated bins) has divergence 0 at any window that holds it
    (atoms are the same in P and Q), and gets its full range. That is not
    lossless rounding: where the comb falls on the int8 grid decides it. Pixels
    normalised as ``p / 127.5 - 1`` sit exactly halfway between two levels of
    the covering scale 2/255 (0.5 LSB each); on PP-OCRv5's recognizer and
    classifier, scales 0.2-1 % wider (off the tie) changed nothing systematic."""
    h = counts.astype(np.float64)
    h[B] -= zeros
    pad = np.pad(h, ATOM_RADIUS)
    m = np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * ATOM_RADIUS + 1), axis=1)
    spike = h > ATOM_FACTOR * m + ATOM_SIGMAS * np.sqrt(m) + ATOM_MIN
    return np.where(spike, h - m, 0.0)


def entropy_divergences(counts: np.ndarray, kmin: int, kmax: int, zeros: int = 0,
                        atoms: np.ndarray | None = None,
                        levels: int = ENTROPY_LEVELS, start: int = ENTROPY_START) -> np.ndarray:
    """KL(P||Q) of every candidate threshold ``i = start .. B`` (bins of |x|),
    vectorised over candidates with prefix sums (see the module docstring for
    P and Q; the ``zeros`` exact zeros are one more atom, the same in P and Q,
    and so is the ``atoms[k]`` part of each bin ``k`` inside the window; outside
    it, atoms are outliers like the rest of their bin).
    Returns an array indexed by ``i - start``."""
    h = counts.astype(np.float64)
    n = h.sum()                                      # every value (P's normaliser)
    h[B] -= zeros
    ct = np.concatenate([[0.0], np.cumsum(h)])       # every non-zero value, for the outliers
    at = np.zeros_like(h) if atoms is None else np.asarray(atoms, np.float64)
    ca = np.concatenate([[0.0], np.cumsum(at)])
    h = h - at                                       # the smooth part: merged into levels
    nh = n - zeros
    ch = np.concatenate([[0.0], np.cumsum(h)])
    cnz = np.concatenate([[0], np.cumsum(h > 0)])
    chl = np.concatenate([[0.0], np.cumsum(_xlogx(h))])
    # candidates beyond the occupied extent repeat the full window: compute it once
    top = max(start, min(B, max(B - kmin, kmax + 1 - B)))
    i = np.arange(start, top + 1)
    a = np.maximum(B - i, kmin)
    b = np.minimum(B + i, kmax + 1)                  # window is bins a .. b-1
    nw = b - a
    below, above = ct[a], nh - ct[b]
    ain = ca[b] - ca[a]                              # atoms inside the window
    nq = ch[b] - ch[a]                               # window without outliers, zeros and atoms
    # level starts: a + ceil(l * nw / levels), l = 0..levels
    l = np.arange(levels + 1)
    starts = a[:, None] + (l[None, :] * nw[:, None] + levels - 1) // levels
    s = ch[starts[:, 1:]] - ch[starts[:, :-1]]       # S'_l (no outliers)
    nz = (cnz[starts[:, 1:]] - cnz[starts[:, :-1]]).astype(np.float64)
    last = ((nw - 1) * levels) // nw                 # level of bin b-1
    rows = np.arange(i.size)
    pl = s.copy()
    pl[:, 0] += below
    pl[rows, last] += above
    ha, hb = h[a], h[b - 1]
    nz[:, 0] += (ha == 0) & (below > 0)
    nz[rows, last] += (hb == 0) & (above > 0)
    # sum_j p log p: interior xlogx + corrected edge bins
    plogp = chl[b] - chl[a] - _xlogx(ha) - _xlogx(hb) + _xlogx(ha + below) + _xlogx(hb + above)
    ratio = np.divide(s, nz, out=np.zeros_like(s), where=nz > 0)
    logr = np.log(ratio, out=np.zeros_like(s), where=ratio > 0)
    bad = ((pl > 0) & (ratio <= 0)).any(axis=1)
    kl = (plogp - (pl * logr).sum(axis=1)) / n - np.log(n) + np.log(np.maximum(nq + zeros + ain, 1.0))
    kl[bad | (nq + ain <= 0) | (nw < levels) | (2 * (below + above) >= nh)] = np.inf
    full = np.arange(start, B + 1)
    return kl[np.minimum(full, top) - start]


def entropy_threshold_bins(counts: np.ndarray, kmin: int, kmax: int, zeros: int = 0,
                           atoms: np.ndarray | None = None) -> int:
    """The candidate ``i`` (bins of |x|) with the smallest divergence."""
    kl = entropy_divergences(counts, kmin, kmax, zeros, atoms)
    return int(np.argmin(kl)) + ENTROPY_START if np.isfinite(kl).any() else B


class MSE(Histogram):
    method = "mse"

    def _choose(self) -> tuple[float, float]:
        e = self.edges()
        kmin, kmax = self.occupied()
        lo_c = _candidates(e[kmin:B + 1], self.min, 0.0) if self.min < 0 else np.array([0.0])
        hi_c = _candidates(e[B:kmax + 2], 0.0, self.max) if self.max > 0 else np.array([0.0])
        lo, hi = mse_search(self.counts, e, lo_c, hi_c, self.zeros)
        return _with_zero(lo, hi)


def _candidates(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    c = edges[(edges >= lo) & (edges <= hi)]
    if c.size > MSE_CANDIDATES:
        c = c[np.linspace(0, c.size - 1, MSE_CANDIDATES).round().astype(int)]
    return np.unique(np.concatenate([c, [lo, hi]]))


def mse_search(counts: np.ndarray, edges: np.ndarray, lo_c: np.ndarray,
               hi_c: np.ndarray, zeros: int = 0) -> tuple[float, float]:
    """argmin over (lo, hi) in lo_c x hi_c of the expected int8 asymmetric
    quantization error (see module docstring), with prefix sums: O(1) per pair."""
    total = _pair_errors(counts, edges, lo_c, hi_c, zeros)
    a, b = np.unravel_index(int(np.argmin(total)), total.shape)
    return float(lo_c[a]), float(hi_c[b])


def _pair_errors(counts: np.ndarray, edges: np.ndarray, lo_c: np.ndarray, hi_c: np.ndarray,
                 zeros: int = 0) -> np.ndarray:
    """The error of every pair (lo_c[i], hi_c[j]) (see :func:`mse_search`)."""
    h = counts.astype(np.float64)
    c = (edges[:-1] + edges[1:]) / 2
    s0 = np.concatenate([[0.0], np.cumsum(h)])
    s1 = np.concatenate([[0.0], np.cumsum(h * c)])
    s2 = np.concatenate([[0.0], np.cumsum(h * c * c)])
    # bins whose centre is below lo / above hi are clipped
    jl = np.searchsorted(c, lo_c, side="left")       # bins [0, jl) have c < lo
    jh = np.searchsorted(c, hi_c, side="right")      # bins [jh, end) have c > hi
    err_lo = s2[jl] - 2 * lo_c * s1[jl] + lo_c ** 2 * s0[jl]
    n = s0[-1]
    err_hi = (s2[-1] - s2[jh]) - 2 * hi_c * (s1[-1] - s1[jh]) + hi_c ** 2 * (n - s0[jh])
    inside = n - s0[jl][:, None] - (n - s0[jh])[None, :] - zeros    # exact zeros cost nothing
    step = (hi_c[None, :] - lo_c[:, None]) / 255.0
    return err_lo[:, None] + err_hi[None, :] + inside * step ** 2 / 12.0


class TailClip(Histogram):
    """``minmax`` unless the tail is heavy (module docstring, ``tailclip``)."""

    method = "tailclip"

    def __init__(self, may_clip: bool = True):
        super().__init__()
        self.may_clip = bool(may_clip)

    def options(self) -> dict:
        return {} if self.may_clip else {"may_clip": False}

    def _load(self, d: dict) -> None:
        super()._load(d)
        self.may_clip = bool(d.get("may_clip", True))

    def keep_cover(self) -> None:
        """Never clip this tensor (it became a graph output after calibration)."""
        self.may_clip, self._range = False, None

    def clip_gain_db(self) -> float:
        """How much clipping lowers this tensor's int8 error: 10 log10 of the expected
        quantize-dequantize error of the covering range over that of the ``mse``
        range (0 when nothing was seen, or the data fit any range exactly)."""
        if self.count == 0 or self.max == self.min:
            return 0.0
        e = self.edges()
        kmin, kmax = self.occupied()
        cover = MinMax.range(self)
        lo_c = _candidates(e[kmin:B + 1], self.min, 0.0) if self.min < 0 else np.array([0.0])
        hi_c = _candidates(e[B:kmax + 2], 0.0, self.max) if self.max > 0 else np.array([0.0])
        best = mse_search(self.counts, e, lo_c, hi_c, self.zeros)
        full = quantization_error(self.counts, e, *cover, self.zeros)
        clipped = quantization_error(self.counts, e, *best, self.zeros)
        if full <= 0.0 or clipped <= 0.0:
            return 0.0
        return 10.0 * math.log10(full / clipped)

    def heavy(self) -> bool:
        """Whether this tensor's tail is clipped (``may_clip`` and the gain above ``HEAVY_DB``)."""
        return self.may_clip and self.clip_gain_db() > HEAVY_DB

    def _choose(self) -> tuple[float, float]:
        if not self.heavy():
            return MinMax.range(self)
        d = {**self.to_dict(), "method": "percentile", "percentile": TAIL_PERCENTILE}
        return from_dict(d).range()


def quantization_error(counts: np.ndarray, edges: np.ndarray, lo: float, hi: float,
                       zeros: int = 0) -> float:
    """The expected squared int8 quantize-dequantize error (summed over the values)
    of the histogram with range ``[lo, hi]``, as :func:`mse_search` scores a pair."""
    return float(_pair_errors(counts, edges, np.array([lo]), np.array([hi]), zeros)[0, 0])


METHODS = {"minmax": MinMax, "percentile": Percentile, "entropy": Entropy, "mse": MSE, "tailclip": TailClip}


def make(method: str, percentile: float = 99.99) -> MinMax:
    """A fresh observer for ``method`` (one of :data:`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method '{method}' (choose {', '.join(METHODS)})")
    return Percentile(percentile) if method == "percentile" else METHODS[method]()


def from_dict(d: dict) -> MinMax:
    obs = make(d["method"], d.get("percentile", 99.99))
    obs._load(d)
    return obs


def merge(a: MinMax, b: MinMax) -> MinMax:
    """A new observer equal to one that saw a's data and then b's."""
    if a.method != b.method or a.options() != b.options():
        raise ValueError(f"cannot merge a {a.method} observer {a.options()} with a "
                         f"{b.method} observer {b.options()}")
    out = from_dict(a.to_dict())
    out._merge_from(b)
    return out
