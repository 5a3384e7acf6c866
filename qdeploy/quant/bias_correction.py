"""Empirical bias correction (from the calibration set).

Rounding the weights to int8 shifts the mean of a layer's output: for channel
``c``, ``E[y_q] - E[y_float] = sum_k (Wq - W)[c, k] E[x_k]`` is not zero when
the inputs have a nonzero mean (after a ReLU they always do), and the shift
adds up layer after layer (Nagel et al. 2019, section 4.2; Finkelstein et al.
2019). The correction measures it on the calibration data and subtracts it
through the int32 bias, which costs nothing at run time.

For each ``Conv2D`` / ``FullyConnected`` node of the QGraph, per output
channel ``c`` (pre-activation means; ``x_q`` = the dequantized input the
reference interpreter computes, including every upstream correction):

    delta[c] = E[y_target] - E[y_quant(x_q)]
    bias_int[c] += round(delta[c] / s_bias[c])       (s_bias = s_in * s_w[c], the bias tensor's scale)

``mode`` chooses the target:

* ``"weights"`` (default; the shift the paper corrects): ``y_target`` is the
  float layer (float weights and bias) on the same input ``x_q``, so only the
  mean error of this layer's own weight and bias rounding is removed.
* ``"full"``: ``y_target`` is the float layer on the float graph's own input
  (onnxruntime), so upstream mean shifts are absorbed too. Measured on the
  corpus MobileNetV2 (bench/RESULTS.md) this over-corrects: where the
  accumulated activation noise is large, matching the pre-activation mean
  moves the post-ReLU mean the wrong way and the error grows layer by layer.
  It is kept for models whose accumulated error is small.

* Both expectations are exact and need no full convolution: a convolution's
  mean output is the weights applied to the mean of each kernel tap's input
  window (zero padding included), so only per-tap input means are gathered.
* The pre-activation mean is matched (the fused clamp is nonlinear; a bias
  can only move the pre-activation).
* Upstream corrections change the downstream inputs, so the correction is a
  fixed-point iteration: ``passes`` interpreter runs over the calibration set,
  each adding the residual shift. A corrected bias is saturated to int32 and
  the saturation reported.
"""
from __future__ import annotations

import numpy as np

from ..float_run import each_sample
from ..ir import Graph
from .error import float_name
from .qgraph import QGraph, QNode, QTensor

LAYERS = ("Conv2D", "FullyConnected")
MODES = ("weights", "full")
_CHUNK = 8   # calibration samples per interpreter run (bounds the memory of keep=True)


def correct_bias(float_graph: Graph, qg: QGraph, calib_x, mode: str = "weights",
                 passes: int = 2) -> list[str]:
    """Fold the measured per-channel mean error of every conv/FC layer of
    ``qg`` into its int32 bias (in place); one message per corrected layer.
    ``mode``: ``"weights"`` (default) or ``"full"``, see the module docstring."""
    if mode not in MODES:
        raise ValueError(f"bias correction mode must be one of {', '.join(MODES)}, not {mode!r}")
    layers = [n for n in qg.nodes if n.op in LAYERS and float_name(qg, float_graph.tensors, n.inputs[0])]
    if not layers:
        return []
    calib_x = np.asarray(calib_x, np.float32)
    params = {n.name: _float_params(float_graph, n) for n in layers}
    if mode == "full":
        fx = _float_input_means(float_graph, qg, layers, calib_x)
        want = {n.name: mean_output(fx[n.name], *params[n.name], n) for n in layers}
    total = {n.name: np.zeros(qg.tensor(n.inputs[2]).data.shape, np.int64) for n in layers}
    for _ in range(max(1, passes)):
        qx = _quant_input_means(qg, layers, calib_x)
        for n in layers:
            b = qg.tensor(n.inputs[2])
            s_b = b.scale.astype(np.float64).reshape(-1)
            have = mean_output(qx[n.name], _dequant(qg.tensor(n.inputs[1])), b.data * s_b, n)
            target = want[n.name] if mode == "full" else mean_output(qx[n.name], *params[n.name], n)
            step = np.round((target - have) / s_b).astype(np.int64)
            _set_bias(qg, n.inputs[2], b.data.astype(np.int64) + step)
            total[n.name] += step
    msgs = []
    for n in layers:
        b = qg.tensor(n.inputs[2])
        shift = total[n.name] * b.scale.astype(np.float64).reshape(-1)
        msg = (f"bias correction ({mode}) '{n.name}' ({n.op}): mean |shift| {np.mean(np.abs(shift)):.3g}, "
               f"max |shift| {np.max(np.abs(shift)):.3g} (max {int(np.max(np.abs(total[n.name])))} LSB)")
        if np.any(np.abs(b.data.astype(np.int64)) == 2**31 - 1):
            msg += "; some corrected biases saturated at the int32 limit"
        msgs.append(msg)
    return msgs


# ------------------------------------------------------------------ expectations
def mean_output(x: np.ndarray, w: np.ndarray, b: np.ndarray, node: QNode | None = None,
                attrs: dict | None = None) -> np.ndarray:
    """Per-channel mean over batch (and output positions) of ``conv(x, w) + b``
    (``FullyConnected`` when ``w`` is 2-D), computed from the per-tap means of
    ``x`` (float64). ``attrs``: the Conv2D node's strides, pads [t, l, b, r],
    dilations, group."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    if w.ndim == 2:
        return b + w @ x.reshape(len(x), -1).mean(axis=0)
    return b + _tap_weights(w, attrs or node.attrs, tap_means(x, w.shape[2:], attrs or node.attrs))


def tap_means(x: np.ndarray, kernel, attrs: dict) -> np.ndarray:
    """``M[ci, i, j]``: mean over batch and output positions of the (zero
    padded) input that kernel tap ``(i, j)`` reads for input channel ``ci``."""
    kh, kw = kernel
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    t, l, bo, r = attrs.get("pads", [0, 0, 0, 0])
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (t, bo), (l, r)))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    m = np.empty((x.shape[1], kh, kw))
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            m[:, i, j] = win.mean(axis=(0, 2, 3))
    return m


def _tap_weights(w: np.ndarray, attrs: dict, m: np.ndarray) -> np.ndarray:
    groups = int(attrs.get("group", 1))
    o, cpg = w.shape[0], w.shape[1]
    wg = w.reshape(groups, o // groups, cpg, *w.shape[2:])
    mg = m.reshape(groups, cpg, *m.shape[1:])
    return np.einsum("gocij,gcij->go", wg, mg).reshape(o)


# ------------------------------------------------------------------ the two sides
def _float_params(g: Graph, n: QNode) -> tuple[np.ndarray, np.ndarray]:
    """Float weights and bias (float64) of the float node a QGraph layer came from."""
    src = g.node(n.source[0])
    w = g.const(src.inputs[1]).astype(np.float64)
    b = g.const(src.inputs[2]).astype(np.float64) if len(src.inputs) > 2 and src.inputs[2] \
        else np.zeros(w.shape[0])
    return w, b


def _float_input_means(g: Graph, qg: QGraph, layers: list[QNode], x: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer: the float graph's own input to it, averaged over the samples
    (onnxruntime, one sample at a time; the imported graph has batch 1)."""
    ins = sorted({float_name(qg, g.tensors, n.inputs[0]) for n in layers})
    sums = dict.fromkeys(ins, 0.0)
    for vals in each_sample(g, x, ins):
        for i in ins:
            sums[i] = sums[i] + vals[i].astype(np.float64)
    return {n.name: sums[float_name(qg, g.tensors, n.inputs[0])] / len(x) for n in layers}


def _quant_input_means(qg: QGraph, layers: list[QNode], x: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer: the dequantized input the reference interpreter computes,
    averaged over the samples (the mean output is linear in the input)."""
    from .interpreter import run
    ins = sorted({n.inputs[0] for n in layers})
    sums = dict.fromkeys(ins, 0.0)
    for k in range(0, len(x), _CHUNK):
        vals = run(qg, {qg.inputs[0]: x[k:k + _CHUNK]}, keep=True)
        for i in ins:
            t = qg.tensor(i)
            sums[i] = sums[i] + ((vals[i].astype(np.float64) - t.zp) * t.s).sum(axis=0, keepdims=True)
    return {n.name: sums[n.inputs[0]] / len(x) for n in layers}


def _dequant(t: QTensor) -> np.ndarray:
    """Weights: symmetric, per tensor or per output channel (axis 0)."""
    shape = (-1,) + (1,) * (t.data.ndim - 1) if t.scale.size > 1 else ()
    zp = t.zero_point.astype(np.float64).reshape(shape) if t.zero_point is not None else 0.0
    return (t.data.astype(np.float64) - zp) * t.scale.astype(np.float64).reshape(shape)


def _set_bias(qg: QGraph, name: str, value: np.ndarray) -> None:
    t = qg.tensors[name]
    lim = 2**31 - 1
    t.data = np.clip(value, -lim, lim).astype(np.int32)
