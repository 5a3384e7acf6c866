"""Fold BatchNormalization into the preceding Conv / ConvTranspose / Gemm.

Inference-mode BatchNormalization is a per-channel affine map
``y = x * scale + shift`` with ``scale = gamma / sqrt(var + eps)`` and
``shift = beta - mean * scale`` (computed in float64, stored as float32).

* **Folded**: when the BN reads the output of a Conv, ConvTranspose or Gemm
  whose weights (and bias, if any) are constant, the BN is that output's only
  consumer, the output is not a graph output and the producer carries no fused
  clamp (``q_clamp``) yet, the scale goes into the weights' output-channel axis
  and ``bias * scale + shift`` becomes the bias (a missing bias counts as 0).
  Conv weights are ``[C_out, C_in/g, k...]`` (axis 0), ConvTranspose weights
  ``[C_in, C_out/g, k...]`` (axis 1 within each of the g groups), Gemm weights
  the IR's ``[M, K]`` (axis 0).
* **Lone BN** (after an Add, a graph input, a shared conv output, ...) on a
  4-D NCHW tensor becomes a depthwise 1x1 Conv (``group = C``, weight =
  scale, bias = shift), so every later stage sees one conv form only.
* A lone BN on a tensor of any other rank (e.g. the 2-D output of a shared
  Gemm) is left as it is: a per-channel Gemm would be a dense C x C matrix,
  which is wrong for both cost and quantization. BNs in training mode or whose
  parameters are not constant are left as they are as well.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .fold_affine import fold_into

NAME = "fold_bn"

_FOLD_INTO = ("Conv", "ConvTranspose", "Gemm")


def run(g: Graph, opts) -> list[str]:
    msgs = []
    for bn in [n for n in g.nodes if n.op == "BatchNormalization"]:
        affine = _affine(g, bn)
        if affine is None:
            continue
        scale, shift = affine
        prod = _foldable_producer(g, bn)
        if prod is not None:
            fold_into(g, prod, scale, shift, "bn")
            g.bypass(bn)
            g.merged(bn.name, prod.name)
            msgs.append(f"folded BatchNormalization '{bn.name}' into {prod.op} '{prod.name}'")
        elif len(g.shape(bn.inputs[0])) == 4:
            _to_depthwise(g, bn, scale, shift)
            msgs.append(f"BatchNormalization '{bn.name}' has no conv to fold into: became a "
                        f"depthwise 1x1 Conv (group={scale.size})")
    if msgs:
        g.remove_unused()
    return msgs


def _affine(g: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (scale, shift) in float64, or None when BN cannot be treated as affine."""
    if bn.attrs.get("training_mode", 0) or any(
            o and (g.consumers(o) or g.is_graph_output(o)) for o in bn.outputs[1:]):
        return None
    params = [g.const(i) for i in bn.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return None
    gamma, beta, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
    eps = float(bn.attrs.get("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def _foldable_producer(g: Graph, bn: Node) -> Node | None:
    x = bn.inputs[0]
    prod = g.producer(x)
    if prod is None or prod.op not in _FOLD_INTO or "q_clamp" in prod.attrs:
        return None
    if g.is_graph_output(x) or len(g.consumers(x)) != 1:
        return None
    if g.const(prod.inputs[1]) is None:
        return None
    if len(prod.inputs) > 2 and prod.inputs[2] and g.const(prod.inputs[2]) is None:
        return None
    return prod


def _to_depthwise(g: Graph, bn: Node, scale: np.ndarray, shift: np.ndarray) -> None:
    c = scale.size
    w = g.add_const(f"{bn.name}_W", scale.reshape(c, 1, 1, 1).astype(np.float32))
    b = g.add_const(f"{bn.name}_B", shift.astype(np.float32))
    bn.op, bn.inputs = "Conv", [bn.inputs[0], w, b]
    bn.outputs = bn.outputs[:1]
    bn.attrs = {"group": c, "kernel_shape": [1, 1], "pads": [0, 0, 0, 0],
                "strides": [1, 1], "dilations": [1, 1]}
