"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization").

Two layers ``y = W2 * act(W1 * x + b1) + b2`` with a positively homogeneous
``act`` (``act(x / s) = act(x) / s`` for ``s > 0``: identity, ReLU, leaky ReLU)
compute the same function after the per-channel rescaling

    W1[c] /= s[c],  b1[c] /= s[c],  W2[:, c] *= s[c]

(``c`` = output channel of layer 1 = input channel of layer 2). Choosing
``s = sqrt(r1 * r2) / r2`` with ``r1[c] = max|W1[c]|`` and ``r2[c]`` the
largest weight of layer 2 that reads channel ``c`` makes both ranges equal to
``sqrt(r1 * r2)``: the per-channel weight ranges of both layers become as
uniform as the pair allows, which is what a per-tensor weight scale needs
(MobileNet-style depthwise layers otherwise waste most of their int8 levels).

**Where it applies.** ``Conv -> Conv`` (any groups on either side, including
conv -> depthwise -> pointwise chains, which form two overlapping pairs) and
``Gemm -> Gemm``, on the pass-processed float graph (BN already folded, the
fused activation in the producer's ``q_clamp``), when the first layer's output
is read by the second layer only (not a graph output, no other consumer), at
most one unfused ``Relu`` / ``LeakyRelu`` node sits between them, and both
layers' weights are constant. Pairs are swept repeatedly (``iterations``)
until every scale is within ``tol`` of 1, so overlapping pairs converge.

**ReLU6 (a fused clamp with a finite upper bound ``hi``)** is not positively
homogeneous: after the rescale, channel ``c`` would need the clip point
``hi / s[c]``, and a fused clamp is one value shared by the tensor (so are the
int8 kernels' activation bounds). Policy, argument ``relu6``:

* ``"data"`` (default, exact on the calibration data): equalize across the
  bounded clamp only when ``ranges`` (min/max calibration ranges of the
  *clamped* tensors: a ``{name: (lo, hi)}`` dict or the calibrator's
  ``Ranges``, whose observers' exact maxima are used whatever the method)
  show that the clamp never engaged (``range hi < hi``);
  then no calibration sample reaches the clip point, the clamp is loosened to
  ``hi / min(s)`` (no channel is clipped where it was not before) and the pair
  is equalized like a ReLU. Without ``ranges``, or when the clamp engaged,
  the pair is skipped and a message says so: the float model is unchanged.
* ``"relax"`` (what the paper and AIMET do: treat ReLU6 as ReLU): equalize
  every pair; the clamp becomes ``hi / min(s)``. Channel ``argmin(s)`` keeps
  its exact clip point, the others clip later than before, so the float
  model changes where those channels' pre-activations exceeded ``hi``.
  Each relaxed layer is named in the messages.
* ``"skip"``: never equalize across a bounded clamp.

A clamp with a lower bound other than 0 or -inf, any other fused annotation
(LUT activations, ...) or a non-homogeneous activation node between the
layers stops the pair. After equalization the tensors' ranges are different:
calibrate again before quantizing.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node

_HOMOGENEOUS_NODES = ("Relu", "LeakyRelu")
_LAYERS = ("Conv", "Gemm")


def equalize(g: Graph, ranges: dict | None = None, relu6: str = "data",
             iterations: int = 20, tol: float = 1e-3, only: set[str] | None = None) -> list[str]:
    """Equalize every eligible layer pair of ``g`` in place (``only``: just the
    pairs whose first layer is named there); one message per equalized pair
    (and per pair skipped because of a bounded clamp)."""
    if relu6 not in ("data", "relax", "skip"):
        raise ValueError(f"relu6 policy must be data, relax or skip, not {relu6!r}")
    msgs: list[str] = []
    pairs = []
    for first, second in find_pairs(g):
        if only is not None and first.name not in only:
            continue
        why = _clamp_blocker(g, first, ranges, relu6)
        if why:
            msgs.append(f"CLE skipped {first.op} '{first.name}' -> {second.op} '{second.name}': {why}")
        else:
            pairs.append((first, second))
    total = {first.name: np.ones(_channels(g, first)) for first, _ in pairs}
    for _ in range(iterations):
        worst = 0.0
        for first, second in pairs:
            s = _scales(g, first, second)
            _apply(g, first, second, s)
            total[first.name] *= s
            worst = max(worst, float(np.max(np.abs(np.log(s)))))
        if worst < tol:
            break
    for first, second in pairs:
        before = _spread(_out_ranges(g, first) * total[first.name])
        msg = (f"CLE equalized {first.op} '{first.name}' -> {second.op} '{second.name}': "
               f"{first.name} channel range ratio {before:.3g} -> {_spread(_out_ranges(g, first)):.3g}")
        clamp = first.attrs.get("q_clamp")
        if clamp is not None and math.isfinite(clamp[1]):
            hi = float(clamp[1]) / float(np.min(total[first.name]))
            first.attrs["q_clamp"] = (clamp[0], hi)
            msg += f"; clamp upper bound {clamp[1]:g} -> {hi:.4g} ({relu6})"
        msgs.append(msg)
    return msgs


def select_for_activations(g: Graph, samples: np.ndarray, ranges: dict | None = None,
                           relu6: str = "data") -> tuple[set[str], list[str]]:
    """The pairs worth equalizing when the weights are per-channel: (names of
    their first layers, one message per pair).

    Per-channel weight scales absorb any rescaling of a layer's output
    channels, so there CLE changes the int8 error only through the tensor
    *between* the two layers, quantized with one scale for all its channels:
    rescaling channel ``c`` by ``1 / s[c]`` moves its values, and the tensor's
    int8 SQNR is ``sum_c E[x_c^2] / s_c^2`` over ``C * step^2 / 12`` with
    ``step = (max_c hi_c / s_c - min(0, min_c lo_c / s_c)) / 255``. A pair is
    kept when CLE's scales (computed on a copy, all pairs together) raise that
    SQNR on the calibration ``samples``: equalizing weight ranges usually
    evens out the activation channels too (the corpus' random-weight models:
    +0.3..+1.8 dB at the model output), but not always (the trained digits
    CNN: a pair whose channels were already even lost 2.8 dB on that tensor;
    equalizing every pair cost 0.7 dB at its output). Overlapping pairs are
    judged by the scales of the joint solution and then re-equalized jointly.
    """
    from ..float_run import channel_stats
    pairs = [(f, s) for f, s in find_pairs(g) if _clamp_blocker(g, f, ranges, relu6) is None]
    if not pairs:
        return set(), []
    between = {f.name: _between(g, f) for f, _ in pairs}
    stats = channel_stats(g, samples, sorted(set(between.values())))
    trial = g.copy()
    before = {f.name: _out_ranges(trial, trial.node(f.name)) for f, _ in pairs}
    equalize(trial, ranges, relu6)
    keep, msgs = set(), []
    for f, second in pairs:
        after = _out_ranges(trial, trial.node(f.name))
        s = np.where(after > 0, before[f.name] / np.where(after > 0, after, 1.0), 1.0)
        hi, lo, m2 = stats[between[f.name]]
        a, b = _int8_sqnr(hi, lo, m2, np.ones_like(s)), _int8_sqnr(hi, lo, m2, s)
        verdict = "equalize" if b > a else "keep as is"
        if b > a:
            keep.add(f.name)
        msgs.append(f"CLE {verdict} {f.op} '{f.name}' -> {second.op} '{second.name}': int8 SQNR of "
                    f"'{between[f.name]}' {a:.1f} -> {b:.1f} dB with equalization")
    return keep, msgs


def fit_clamped_depthwise(g: Graph, samples: np.ndarray, ranges: dict | None = None,
                          headroom: float = 1.25) -> list[str]:
    """Per-channel weights: even out the channels of a ReLU6 output that feeds
    a depthwise layer, where the clamp engages (so CLE skips the pair); in
    place, one message per pair.

    A depthwise layer reads one channel per output channel, so with
    per-channel weight scales rescaling its input channels costs nothing in
    the weights: only the tensor between the layers changes. Channel ``c``
    whose clamp engaged on the calibration data (its maximum is the clip point
    ``hi``) keeps ``s = 1`` and its exact clip point; any other channel is
    scaled up by ``hi / min(hi, headroom * max_c)`` (``s < 1``), so its
    calibration range fills the tensor's ``[0, hi]``. The shared clamp stays
    ``hi``, which for that channel is the clip point ``min(hi, headroom *
    max_c)`` of the original model: never reached on the calibration data,
    like the loosened clamp of the ``data`` policy; ``headroom`` leaves room
    for inputs a little beyond what calibration saw (1.0 / 1.25 / 1.5 gave
    20.0 / 19.7 / 19.5 dB on mobilenet_v1, 15.5 without).
    """
    from ..float_run import channel_stats
    pairs = []
    for first, second in find_pairs(g):
        clamp = first.attrs.get("q_clamp")
        if clamp is None or float(clamp[0]) != 0.0 or not math.isfinite(clamp[1]):
            continue
        if _clamp_blocker(g, first, ranges, "data") is None:
            continue                    # clamp not engaged: a CLE pair (select_for_activations)
        c = _channels(g, first)
        if second.op == "Conv" and int(second.attrs.get("group", 1)) == c \
                and g.const(second.inputs[1]).shape[1] == 1:
            pairs.append((first, second))
    if not pairs:
        return []
    stats = channel_stats(g, samples, [_between(g, f) for f, _ in pairs])
    msgs = []
    for first, second in pairs:
        hi = float(first.attrs["q_clamp"][1])
        mx = stats[_between(g, first)][0]
        free = (mx > 0) & (mx < hi * (1 - 1e-6))
        s = np.ones_like(mx)
        s[free] = np.minimum(hi, headroom * mx[free]) / hi
        _apply(g, first, second, s)
        msgs.append(f"CLE fitted the channels of '{_between(g, first)}' ({first.op} '{first.name}' -> "
                    f"depthwise {second.op} '{second.name}') to its clamp [0, {hi:g}]: {int((s < 1).sum())} of "
                    f"{mx.size} unsaturated channels scaled up (x{float(1 / s.min()):.3g} at most)")
    return msgs


def _between(g: Graph, first: Node) -> str:
    """The tensor the pair's second layer reads (after an unfused activation)."""
    t = first.output
    users = g.consumers(t)
    if len(users) == 1 and users[0].op in _HOMOGENEOUS_NODES:
        t = users[0].output
    return t


def _int8_sqnr(hi: np.ndarray, lo: np.ndarray, m2: np.ndarray, s: np.ndarray) -> float:
    step = (float(np.max(hi / s)) - min(0.0, float(np.min(lo / s)))) / 255
    signal = float(np.sum(m2 / s ** 2))
    if step <= 0 or signal <= 0:
        return math.inf
    return 10 * math.log10(signal / (hi.size * step ** 2 / 12))


def find_pairs(g: Graph) -> list[tuple[Node, Node]]:
    """(first, second) layer pairs whose shared channels can be rescaled
    (structure only; the clamp policy is applied by :func:`equalize`)."""
    pairs = []
    for first in g.nodes:
        if first.op not in _LAYERS or not _const_weights(g, first):
            continue
        if any(k.startswith("q_") and k not in ("q_clamp", "q_act") for k in first.attrs):
            continue
        t = first.output
        if len(first.outputs) != 1 or g.is_graph_output(t):
            continue
        users = g.consumers(t)
        if len(users) == 1 and users[0].op in _HOMOGENEOUS_NODES and len(users[0].inputs) == 1 \
                and not any(k.startswith("q_") and k != "q_leaky" for k in users[0].attrs) \
                and not g.is_graph_output(users[0].output):
            t = users[0].output
            users = g.consumers(t)
        if len(users) != 1:
            continue
        second = users[0]
        if second.op == first.op and second.inputs[0] == t and t not in second.inputs[1:] \
                and _const_weights(g, second):
            pairs.append((first, second))
    return pairs


# ---------------------------------------------------------------- helpers
def _const_weights(g: Graph, n: Node) -> bool:
    """Constant weights (and bias), read by this node only (so rescaling them
    changes no other layer)."""
    params = [i for i in n.inputs[1:3] if i]
    return len(n.inputs) >= 2 and all(
        g.const(i) is not None and len(g.consumers(i)) == 1 for i in params)


def _clamp_blocker(g: Graph, first: Node, ranges, relu6: str) -> str | None:
    clamp = first.attrs.get("q_clamp")
    if clamp is None:
        return None
    lo, hi = float(clamp[0]), float(clamp[1])
    if not (lo == 0.0 or lo == -math.inf):
        return f"fused clamp ({lo:g}, {hi:g}) has a lower bound other than 0"
    if math.isinf(hi):
        return None
    if relu6 == "relax":
        return None
    if relu6 == "skip":
        return f"fused clamp upper bound {hi:g} (ReLU6) is not scale-invariant (relu6='skip')"
    seen = None if ranges is None else _observed_max(ranges, first.output)
    if seen is None:
        return (f"fused clamp upper bound {hi:g} (ReLU6) is not scale-invariant and no calibration "
                "range shows it inactive")
    if seen >= hi:
        return f"the ReLU6 clamp at {hi:g} is reached on the calibration data (max {seen:g})"
    return None


def _observed_max(ranges, name: str) -> float | None:
    """The largest value seen on the calibration data: the observer's exact
    maximum when ``ranges`` is a calibration ``Ranges`` (whatever its method),
    else the upper end of a plain ``{name: (lo, hi)}`` min/max range."""
    observer = getattr(ranges, "observers", {}).get(name)
    if observer is not None and getattr(observer, "count", 0):
        return float(observer.max)
    if name in ranges:
        return float(ranges[name][1])
    return None


def _channels(g: Graph, first: Node) -> int:
    return g.const(first.inputs[1]).shape[0]


def _out_ranges(g: Graph, first: Node) -> np.ndarray:
    w = g.const(first.inputs[1]).astype(np.float64)
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)


def _in_ranges(g: Graph, second: Node, channels: int) -> np.ndarray:
    """Largest |weight| of ``second`` that reads each of its input channels."""
    w = np.abs(g.const(second.inputs[1]).astype(np.float64))
    if second.op == "Gemm":
        return w.max(axis=0)
    groups = int(second.attrs.get("group", 1))
    cpg, opg = w.shape[1], w.shape[0] // groups
    assert cpg * groups == channels
    per = w.reshape(groups, opg, cpg, -1).max(axis=(1, 3))   # [group, local in-channel]
    return per.reshape(channels)


def _scales(g: Graph, first: Node, second: Node) -> np.ndarray:
    c = _channels(g, first)
    r1, r2 = _out_ranges(g, first), _in_ranges(g, second, c)
    s = np.ones(c)
    ok = (r1 > 0) & (r2 > 0)
    s[ok] = np.sqrt(r1[ok] * r2[ok]) / r2[ok]
    return s


def _apply(g: Graph, first: Node, second: Node, s: np.ndarray) -> None:
    c = s.size
    w1 = g.const(first.inputs[1])
    shape1 = (c,) + (1,) * (w1.ndim - 1)
    _replace(g, first.inputs[1], w1 / s.reshape(shape1))
    if len(first.inputs) > 2 and first.inputs[2]:
        _replace(g, first.inputs[2], g.const(first.inputs[2]) / s)
    w2 = g.const(second.inputs[1])
    if second.op == "Gemm":
        _replace(g, second.inputs[1], w2 * s[None, :])
        return
    groups = int(second.attrs.get("group", 1))
    cpg, opg = w2.shape[1], w2.shape[0] // groups
    per = s.reshape(groups, 1, cpg)                              # [group, 1, local in-channel]
    grid = np.broadcast_to(per, (groups, opg, cpg)).reshape(w2.shape[0], cpg)
    _replace(g, second.inputs[1], w2 * grid.reshape(grid.shape + (1,) * (w2.ndim - 2)))


def _replace(g: Graph, name: str, value: np.ndarray) -> None:
    """Constants may be shared with graph copies: replace, never mutate."""
    t = g.tensors[name]
    value = value.astype(t.data.dtype)
    g.tensors[name] = type(t)(name, tuple(value.shape), str(value.dtype), np.ascontiguousarray(value))


def _spread(r: np.ndarray) -> float:
    """max/min of the nonzero per-channel ranges (1 = perfectly uniform)."""
    nz = r[r > 0]
    return float(nz.max() / nz.min()) if nz.size else 1.0
