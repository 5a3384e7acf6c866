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
fused activation in the producer's ``q_clamp``), when every reader of the first
layer's output is a layer of the same kind reading it as its data input, or
an op that commutes with a positive per-channel scale and whose readers obey
the same rule: ``Relu`` / ``LeakyRelu`` and, after a Conv, ``MaxPool``,
``AveragePool``, ``GlobalAveragePool`` and a ``Mul`` by a tensor that is not
itself rescaled (an input, a constant, or a tensor computed behind one of the
second layers). So one first layer can have several second layers: a
squeeze-excite block ``y = x * gate(Conv1(GAP(x)))`` followed by ``Conv2(y)``
is one pair ``producer(x) -> {Conv1, Conv2}`` (``s`` then uses ``r2[c]`` over
both), and the gate is unchanged because ``Conv1`` absorbs the scale. No
rescaled tensor may be a graph output, and every layer's weights must be
constant. A tensor reached from two producers (a Concat) stops the pair.
A ``GlobalAveragePool`` is crossed only inside such a block (with the
``Mul``), not in a pooled head (``Conv -> GAP -> Conv``): equalizing puts
every pooled channel near its calibration maximum, and on the corpus GhostNet
the evaluation images exceeded those maxima (pooled values up to 2.8x;
0.12 % clipped against 0.04 % without CLE), which cost 0.9 dB at the output
on one calibration draw where the SQNR models below predicted a gain.
Pairs are swept repeatedly (``iterations``) until every scale is within
``tol`` of 1, so overlapping pairs converge.

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
from typing import NamedTuple

import numpy as np

from ..ir import Graph, Node

_HOMOGENEOUS_NODES = ("Relu", "LeakyRelu")
_CHANNELWISE = ("MaxPool", "AveragePool", "GlobalAveragePool", "Mul")   # after a Conv (NCHW)
_LAYERS = ("Conv", "Gemm")


class Pair(NamedTuple):
    """A first layer whose output channels can be rescaled, the layers that
    absorb the scales, and the tensors that carry the rescaled channels
    (``between[0]``: the first layer's output; then the outputs of the
    channel-wise ops on the way, in graph order)."""
    first: Node
    seconds: tuple[Node, ...]
    between: tuple[str, ...]

    def label(self) -> str:
        return f"{self.first.op} '{self.first.name}' -> " + ", ".join(f"{n.op} '{n.name}'" for n in self.seconds)


def equalize(g: Graph, ranges: dict | None = None, relu6: str = "data",
             iterations: int = 20, tol: float = 1e-3, only: set[str] | None = None,
             several: bool = True) -> list[str]:
    """Equalize every eligible layer pair of ``g`` in place (``only``: just the
    pairs whose first layer is named there; ``several=False``: not the pairs
    with several second layers); one message per equalized pair (and per pair
    skipped because of a bounded clamp or ``several``).

    ``several=False`` is for equalizing without a data check (per-tensor
    weights): on the corpus SqueezeNet with the fpga profile, equalizing each
    fire module's squeeze conv against both expand convs gained 1.8 dB on the
    bench's images but cost 4.5 dB on tests/test_e2e_corpus.py's (8 or 32
    calibration photos); per-channel selection checks each such pair on the
    calibration data instead."""
    if relu6 not in ("data", "relax", "skip"):
        raise ValueError(f"relu6 policy must be data, relax or skip, not {relu6!r}")
    msgs: list[str] = []
    pairs = []
    for p in find_pairs(g):
        if only is not None and p.first.name not in only:
            continue
        if not several and len(p.seconds) > 1:
            msgs.append(f"CLE skipped {p.label()}: several second layers (equalized only after the "
                        "per-channel data check)")
            continue
        why = _clamp_blocker(g, p.first, ranges, relu6)
        if why:
            msgs.append(f"CLE skipped {p.label()}: {why}")
        else:
            pairs.append(p)
    total = {p.first.name: np.ones(_channels(g, p.first)) for p in pairs}
    for _ in range(iterations):
        worst = 0.0
        for p in pairs:
            s = _scales(g, p)
            _apply(g, p, s)
            total[p.first.name] *= s
            worst = max(worst, float(np.max(np.abs(np.log(s)))))
        if worst < tol:
            break
    for p in pairs:
        first = p.first
        before = _spread(_out_ranges(g, first) * total[first.name])
        msg = (f"CLE equalized {p.label()}: "
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
    SQNR on the calibration ``samples`` (averaged in dB over the tensors when
    several carry the rescaled channels, as in a squeeze-excite block; a
    pair with several second layers must also lower the int8 noise at their
    outputs, :func:`_second_noise`, because there the readers' weights pay for
    the rescaling too): equalizing weight ranges usually
    evens out the activation channels too (the corpus' random-weight models:
    +0.3..+1.8 dB at the model output), but not always (the trained digits
    CNN: a pair whose channels were already even lost 2.8 dB on that tensor;
    equalizing every pair cost 0.7 dB at its output). Overlapping pairs are
    judged by the scales of the joint solution and then re-equalized jointly.
    """
    from ..float_run import channel_stats
    pairs = [p for p in find_pairs(g) if _clamp_blocker(g, p.first, ranges, relu6) is None]
    if not pairs:
        return set(), []
    stats = channel_stats(g, samples, sorted({t for p in pairs for t in p.between}))
    trial = g.copy()
    before = {p.first.name: _out_ranges(trial, trial.node(p.first.name)) for p in pairs}
    equalize(trial, ranges, relu6)
    keep, msgs = set(), []
    for p in pairs:
        name = p.first.name
        after = _out_ranges(trial, trial.node(name))
        s = np.where(after > 0, before[name] / np.where(after > 0, after, 1.0), 1.0)
        dbs = [(t, _int8_sqnr(*stats[t], np.ones_like(s)), _int8_sqnr(*stats[t], s)) for t in p.between]
        ok = float(np.mean([b - a for _, a, b in dbs])) > 0
        why = ", ".join(f"'{t}' {a:.1f} -> {b:.1f} dB" for t, a, b in dbs)
        if len(p.seconds) > 1:
            n1, ns = _second_noise(g, p, stats, np.ones_like(s)), _second_noise(g, p, stats, s)
            ok = ok and ns < n1
            why += f"; int8 noise at the readers' outputs {10 * math.log10(n1 / ns) if ns > 0 else math.inf:+.1f} dB"
        if ok:
            keep.add(name)
        msgs.append(f"CLE {'equalize' if ok else 'keep as is'} {p.label()}: int8 SQNR of {why} with equalization")
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
    for p in find_pairs(g):
        if len(p.seconds) != 1 or len(p.between) != 1:
            continue
        first, second = p.first, p.seconds[0]
        clamp = first.attrs.get("q_clamp")
        if clamp is None or float(clamp[0]) != 0.0 or not math.isfinite(clamp[1]):
            continue
        if _clamp_blocker(g, first, ranges, "data") is None:
            continue                    # clamp not engaged: a CLE pair (select_for_activations)
        c = _channels(g, first)
        if second.op == "Conv" and int(second.attrs.get("group", 1)) == c \
                and g.const(second.inputs[1]).shape[1] == 1:
            pairs.append(p)
    if not pairs:
        return []
    stats = channel_stats(g, samples, [p.between[0] for p in pairs])
    msgs = []
    for p in pairs:
        first, second = p.first, p.seconds[0]
        hi = float(first.attrs["q_clamp"][1])
        mx = stats[p.between[0]][0]
        free = (mx > 0) & (mx < hi * (1 - 1e-6))
        s = np.ones_like(mx)
        s[free] = np.minimum(hi, headroom * mx[free]) / hi
        _apply(g, p, s)
        msgs.append(f"CLE fitted the channels of '{p.between[0]}' ({first.op} '{first.name}' -> "
                    f"depthwise {second.op} '{second.name}') to its clamp [0, {hi:g}]: {int((s < 1).sum())} of "
                    f"{mx.size} unsaturated channels scaled up (x{float(1 / s.min()):.3g} at most)")
    return msgs


def _second_noise(g: Graph, p: Pair, stats: dict, s: np.ndarray) -> float:
    """The int8 noise power (activation + weight rounding) summed over the
    second layers' outputs when the first layer's channel ``c`` is divided by
    ``s[c]`` (and the second layers' input column ``c`` multiplied by it):
    each second layer reads its input quantized per tensor (step from the
    scaled channel ranges) through its weights scaled by ``s``, which are
    quantized per output row (step = the row's largest |weight| / 127)."""
    total = 0.0
    for second in p.seconds:
        hi, lo, m2 = stats[second.inputs[0]]
        step = (float(np.max(hi / s)) - min(0.0, float(np.min(lo / s)))) / 255
        w = np.abs(g.const(second.inputs[1]).astype(np.float64))
        if second.op == "Gemm":
            w = w.reshape(w.shape[0], w.shape[1], 1)
        groups = int(second.attrs.get("group", 1))
        o, cpg = w.shape[0], w.shape[1]
        w = w.reshape(groups, o // groups, cpg, -1)                # [group, row, local in-channel, tap]
        sc = s.reshape(groups, 1, cpg, 1)
        ws = w * sc
        total += float(np.sum(ws ** 2)) * step ** 2 / 12
        row_step = ws.max(axis=(2, 3), keepdims=True) / 127
        total += float(np.sum(row_step ** 2 / 12 * (m2.reshape(groups, 1, cpg, 1) / sc ** 2) * w.shape[3]))
    return total


def _int8_sqnr(hi: np.ndarray, lo: np.ndarray, m2: np.ndarray, s: np.ndarray) -> float:
    step = (float(np.max(hi / s)) - min(0.0, float(np.min(lo / s)))) / 255
    signal = float(np.sum(m2 / s ** 2))
    if step <= 0 or signal <= 0:
        return math.inf
    return 10 * math.log10(signal / (hi.size * step ** 2 / 12))


def find_pairs(g: Graph) -> list[Pair]:
    """The layers whose output channels can be rescaled, each with the layers
    that absorb the scales (structure only; the clamp policy is applied by
    :func:`equalize`)."""
    pairs = []
    for first in g.nodes:
        if first.op not in _LAYERS or not _const_weights(g, first) or len(first.outputs) != 1:
            continue
        if any(k.startswith("q_") and k not in ("q_clamp", "q_act") for k in first.attrs):
            continue
        found = _readers(g, first)
        if found is not None:
            pairs.append(Pair(first, *found))
    return pairs


def _readers(g: Graph, first: Node) -> tuple[tuple[Node, ...], tuple[str, ...]] | None:
    """(second layers, tensors between) of ``first``, or None when some path
    from its output reaches anything but a second layer (see the module
    docstring)."""
    between, seconds, muls = [first.output], [], []
    k = 0
    while k < len(between):
        t = between[k]
        k += 1
        if g.is_graph_output(t):
            return None
        for r in g.consumers(t):
            if r.op == first.op and r.inputs[0] == t and t not in r.inputs[1:] and _const_weights(g, r):
                seconds.append(r)
            elif _channelwise(g, r, t, first.op) and r.output not in between:
                between.append(r.output)
                muls += [r] if r.op == "Mul" else []
            else:
                return None
    if not seconds or any(sum(i in between for i in m.inputs) != 1 for m in muls):   # x * x: degree 2
        return None
    if not muls and any(g.producer(t).op == "GlobalAveragePool" for t in between[1:]):
        return None     # a pooled head, not a squeeze-excite block: see the module docstring
    return tuple(seconds), tuple(between)


def _channelwise(g: Graph, n: Node, t: str, first_op: str) -> bool:
    """``n`` reads ``t`` and commutes with a positive per-channel scale of it."""
    if len(n.outputs) != 1 or any(k.startswith("q_") and k != "q_leaky" for k in n.attrs):
        return False
    if n.op in _HOMOGENEOUS_NODES:
        return len(n.inputs) == 1
    if first_op != "Conv" or n.op not in _CHANNELWISE:
        return False
    if n.op == "Mul":   # x * y: y must not be rescaled and must not broadcast x to a new shape
        return (len(n.inputs) == 2 and n.inputs.count(t) == 1
                and tuple(g.shape(n.output)) == tuple(g.shape(t)))
    return n.inputs[0] == t


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


def _scales(g: Graph, p: Pair) -> np.ndarray:
    first = p.first
    c = _channels(g, first)
    r1 = _out_ranges(g, first)
    r2 = np.max([_in_ranges(g, second, c) for second in p.seconds], axis=0)
    s = np.ones(c)
    ok = (r1 > 0) & (r2 > 0)
    s[ok] = np.sqrt(r1[ok] * r2[ok]) / r2[ok]
    return s


def _apply(g: Graph, p: Pair, s: np.ndarray) -> None:
    first = p.first
    c = s.size
    w1 = g.const(first.inputs[1])
    shape1 = (c,) + (1,) * (w1.ndim - 1)
    _replace(g, first.inputs[1], w1 / s.reshape(shape1))
    if len(first.inputs) > 2 and first.inputs[2]:
        _replace(g, first.inputs[2], g.const(first.inputs[2]) / s)
    for second in p.seconds:
        _scale_inputs(g, second, s)


def _scale_inputs(g: Graph, second: Node, s: np.ndarray) -> None:
    """Multiply the weights of ``second`` that read input channel ``c`` by ``s[c]``."""
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
