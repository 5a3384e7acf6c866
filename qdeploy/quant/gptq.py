"""Weight rounding that compensates its own error (GPTQ; Frantar et al. 2023).

Rounding each weight to its nearest integer is optimal weight by weight, not
for the layer: what matters is the layer's output ``W x`` on the inputs it
sees, and the errors of the weights of one filter add up on them. Trained
filters hold large taps of opposite sign whose responses nearly cancel (the
first depthwise conv of ppocr_v5_rec: +10.717 / -10.782, sum -0.0135), and
there independent rounding errors come out large (bench/RESULTS.md "ppocr_v5_rec_cnn
under int8").

For each Conv2D / FullyConnected of the QGraph this rounds the integer weights
again, keeping every scale (so biases, multipliers and every other integer are
unchanged), to reduce ``sum over calibration inputs of ||(W - Wq) x||^2`` per
output channel:

* ``H = sum x x^T`` over the layer's input patches (im2col, zero padding
  included) of the float graph on the calibration samples (onnxruntime, one
  sample at a time), per group of a grouped conv; at most ``ROWS`` output
  positions per sample, a seeded choice, where a feature map is larger.
* Columns (input taps) in order of decreasing ``H[k, k]``; each is rounded to
  the nearest integer of its channel's grid (clipped to the target's weight
  range), and its error, divided by the Cholesky factor of ``H^-1``, is moved
  onto the columns not rounded yet: the optimal correction for a quadratic
  error (the OBS update). Blocks of ``BLOCK`` columns, the rest of the matrix
  updated once per block.
* ``H`` is damped by ``DAMP`` times its mean diagonal. A layer whose samples
  give fewer input rows than taps (a FullyConnected on a small calibration
  set: its ``H`` would fit those samples only) keeps nearest rounding, as
  does a layer whose damped ``H`` is not positive definite, and one whose
  integers are not the nearest rounding of the float graph's weights (a layer
  the float graph does not hold as it was quantized).

The integers still fit every kernel: they are the same width and range, and
the reference interpreter, TFLite, the C bundle and the QDQ model read them as
before.

**Opt-in** (``--weight-rounding gptq``; the default stays ``nearest``), measured
on the trained models (bench/RESULTS.md "Weight rounding: GPTQ against nearest"):
with float activations it does what it promises (output SQNR with int8 weights
only: the rec CNN 1.0 -> 8.7 dB on photo crops, 9.4 -> 21.7 on text lines;
ppocr_v5_det 21.3 -> 37.2), but with int8 activations it loses on 7 of the 9
trained-model rows (ddddocr_det -1.8 dB, ppocr_v5_cls -1.3 and 5 points of top-1
agreement) and gains only on the rec CNN (photo crops +0.3 dB; text lines +0.1,
68 -> 75 % of the lines decoded as the float model does). The loss comes from
the first layers: on ddddocr_det (minmax ranges, draw 0) its second conv alone
takes the output from 25.6 to 21.9 dB although that conv's own int8 output gets
0.5 dB better. Side checks that did not change that: ``H`` from the integer
model's own inputs, the columns in their natural order, ``H`` damped by the
input's rounding noise, depthwise or pointwise convs only; stronger damping only
moves it towards nearest rounding.
"""
from __future__ import annotations

import numpy as np

from ..float_run import each_sample
from ..ir import Graph
from .error import float_name
from .fixedpoint import round_away
from .qgraph import QGraph, QNode
from .scales import quantize_weights

LAYERS = ("Conv2D", "FullyConnected")
DAMP = 0.01      # of the mean diagonal of H
BLOCK = 128      # columns rounded between two matrix updates
ROWS = 4096      # output positions per sample and layer (a seeded choice where there are more)
SAMPLES = 64     # calibration samples at most (evenly spaced over the set)


def round_weights(float_graph: Graph, qg: QGraph, calib_x, wmax: int = 127) -> list[str]:
    """Round the integer weights of every conv / FC layer of ``qg`` again with
    GPTQ (in place); one summary message. ``wmax``: the weight range
    ``[-wmax, wmax]`` of the target (weights are symmetric)."""
    layers = [n for n in qg.nodes if n.op in LAYERS and qg.tensor(n.inputs[1]).data is not None
              and float_name(qg, float_graph.tensors, n.inputs[0])]
    if not layers:
        return []
    calib_x = np.asarray(calib_x, np.float32)
    if len(calib_x) > SAMPLES:
        calib_x = calib_x[np.linspace(0, len(calib_x) - 1, SAMPLES).round().astype(int)]
    hs = hessians(float_graph, qg, layers, calib_x)
    changed, kept = 0, {}
    for n in layers:
        h, rows = hs[n.name]
        t = qg.tensor(n.inputs[1])
        w = np.asarray(float_graph.const(float_graph.node(n.source[0]).inputs[1]), np.float64)
        # only where the float node's weights are what the integers were rounded from
        if w.shape != t.data.shape or not np.array_equal(quantize_weights(w, t.scale, wmax), t.data):
            kept.setdefault("its weights are not the float layer's", []).append(n.name)
            continue
        if rows < h.shape[1]:
            kept.setdefault("fewer calibration input rows than taps", []).append(n.name)
            continue
        q = _gptq(w, h.astype(np.float64), t.scale, wmax, n.attrs.get("group", 1))
        if q is None:
            kept.setdefault("H not positive definite", []).append(n.name)
            continue
        changed += int(np.count_nonzero(q != t.data))
        t.data = q.astype(t.data.dtype)
    total = sum(qg.tensor(n.inputs[1]).data.size for n in layers)
    n_kept = sum(len(v) for v in kept.values())
    msg = (f"weight rounding (gptq): {len(layers) - n_kept} of {len(layers)} layers, "
           f"{changed} of {total} weights differ from nearest rounding")
    if kept:
        msg += f"; nearest rounding kept for {n_kept} (" + "; ".join(
            f"{why}: {len(names)}, e.g. '{names[0]}'" for why, names in kept.items()) + ")"
    return [msg]


def _gptq(w: np.ndarray, h: np.ndarray, scale: np.ndarray, wmax: int, groups: int) -> np.ndarray | None:
    """Integers for float weights ``w`` (O, ...) with per-channel (or one) ``scale``
    given ``h`` (G, K, K); None where H cannot be factored."""
    o = w.shape[0]
    wg = w.reshape(groups, o // groups, -1)                        # G, O/G, K
    s = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (o,)).reshape(groups, o // groups, 1)
    h = h.copy()
    d = np.einsum("gkk->gk", h)
    dead = d <= 0
    h[:, np.arange(h.shape[1]), np.arange(h.shape[1])] += np.where(dead, 1.0, DAMP * d.mean(axis=1, keepdims=True))
    perm = np.argsort(-d, axis=1, kind="stable")
    wg = np.take_along_axis(wg, perm[:, None, :], axis=2)
    h = np.take_along_axis(np.take_along_axis(h, perm[:, :, None], axis=1), perm[:, None, :], axis=2)
    try:
        u = np.swapaxes(np.linalg.cholesky(np.linalg.inv(h)), 1, 2)  # upper: U^T U = H^-1
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(u)):
        return None
    k = wg.shape[2]
    q = np.empty_like(wg)
    for b0 in range(0, k, BLOCK):
        b1 = min(b0 + BLOCK, k)
        err = np.empty(wg.shape[:2] + (b1 - b0,))
        for i in range(b0, b1):
            qi = np.clip(round_away(wg[:, :, i] / s[:, :, 0]), -wmax, wmax)   # as quantize_weights
            q[:, :, i] = qi
            e = (wg[:, :, i] - qi * s[:, :, 0]) / u[:, i, i][:, None]
            wg[:, :, i + 1:b1] -= e[:, :, None] * u[:, None, i, i + 1:b1]
            err[:, :, i - b0] = e
        if b1 < k:
            wg[:, :, b1:] -= err @ u[:, b0:b1, b1:]
    out = np.empty_like(q)
    np.put_along_axis(out, perm[:, None, :], q, axis=2)
    return out.reshape(w.shape).astype(np.int64)


def hessians(g: Graph, qg: QGraph, layers: list[QNode], x: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Per layer: ``H`` (G, K, K) of its float input patches, and the rows summed."""
    hs, rows = dict.fromkeys((n.name for n in layers), 0.0), dict.fromkeys((n.name for n in layers), 0)
    rng = {n.name: np.random.default_rng(k) for k, n in enumerate(layers)}
    for vals in each_sample(g, x, sorted({float_name(qg, g.tensors, n.inputs[0]) for n in layers})):
        for n in layers:
            v = vals[float_name(qg, g.tensors, n.inputs[0])]
            cols = patches(v, qg.tensor(n.inputs[1]).data.shape, n.attrs) if n.op == "Conv2D" \
                else v.reshape(1, 1, -1).astype(np.float32)
            if cols.shape[1] > ROWS:
                cols = cols[:, np.sort(rng[n.name].choice(cols.shape[1], ROWS, replace=False))]
            hs[n.name] = hs[n.name] + np.matmul(np.swapaxes(cols, 1, 2), cols)
            rows[n.name] += cols.shape[1]
    return {k: (h, rows[k]) for k, h in hs.items()}


def patches(x: np.ndarray, wshape, attrs: dict) -> np.ndarray:
    """im2col of one sample ``x`` (1, C, H, W) for a conv with weights ``wshape``
    (O, C/G, kh, kw): (G, positions, C/G * kh * kw), columns in the weights' order."""
    groups = int(attrs.get("group", 1))
    kh, kw = wshape[2:]
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    t, l, bo, r = attrs.get("pads", [0, 0, 0, 0])
    xp = np.pad(np.asarray(x, np.float32)[0], ((0, 0), (t, bo), (l, r)))
    c = xp.shape[0]
    oh = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((c, kh, kw, oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xp[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
    cols = cols.reshape(groups, c // groups * kh * kw, oh * ow)
    return np.ascontiguousarray(np.swapaxes(cols, 1, 2))
