"""Fold constant per-channel Add / Sub / Mul / Div into the preceding Conv / ConvTranspose / Gemm.

Paddle exports write each conv bias as a separate ``Add`` of a ``[1, C, 1, 1]``
constant and "learnable affine blocks" as ``Mul`` by a scalar then ``Add`` of a
scalar. Left alone, each of these ops is one more int8 rounding. Every such op
is a per-channel affine map ``y = x * s + t``:

==================  ==============
``x + c``, ``c + x``  ``s = 1,  t = c``
``x - c``             ``s = 1,  t = -c``
``c - x``             ``s = -1, t = c``
``x * c``, ``c * x``  ``s = c,  t = 0``
``x / c``             ``s = 1/c, t = 0`` (refused when any ``c`` is 0)
==================  ==============

``c / x`` is not affine and is never folded.

* **Folded**: a chain of such ops starting at a Conv, ConvTranspose or Gemm
  whose weights (and bias, if any) are constant and that carries no fused
  clamp (``q_clamp``) yet. Each op of the chain is composed in float64
  (``s = s1 * s2``, ``t = t1 * s2 + t2``) and the result goes into the
  producer as for BatchNorm (see ``fold_bn``): ``W * s`` on the output-channel
  axis (Conv ``[C_out, C_in/g, k...]`` axis 0, ConvTranspose ``[C_in, C_out/g,
  k...]`` axis 1 per group, Gemm ``[M, K]`` axis 0) and ``bias * s + t`` as
  the bias (a producer without bias gets one). The producer then writes the
  chain's last output, so output names never change.
* A constant takes part only when it is constant per output channel: after
  right-aligned broadcasting against the ``[N, C, ...]`` output, every axis but
  the channel axis has size 1, and the channel axis has size 1 or C (so the
  result keeps the producer's shape: ``[C, 1, 1]``, ``[1, C, 1, 1]``, scalar,
  ``[1]`` all qualify; a ``[C]`` vector against a 4-D output, which numpy
  aligns with W, does not). Anything that varies over batch or spatial axes
  ends the chain.
* Every tensor between the producer and the last folded op must have exactly
  one consumer and not be a graph output (its unfolded value would be lost).
* Zero and negative multipliers are folded: in float ``(W x + b) * s`` equals
  ``(W s) x + b s`` for any ``s``, and a per-channel sign is just part of the
  weights, which int8 per-channel quantization handles.
* ``x + 3`` feeding ``Clip(0, 6)`` (the head of the decomposed h-sigmoid /
  h-swish spelling) is left for ``recognize_activation``, which turns the
  whole subgraph into one lookup table; folding the 3 would hide it.
* The same ops after any other producer (an activation, an Add of two
  tensors, a graph input, a shared conv output) stay as they are.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node

NAME = "fold_affine"

_FOLD_INTO = ("Conv", "ConvTranspose", "Gemm")
_AFFINE_OPS = ("Add", "Sub", "Mul", "Div")


def run(g: Graph, opts) -> list[str]:
    msgs = []
    for prod in [n for n in g.nodes if n.op in _FOLD_INTO]:
        if not _can_take_fold(g, prod):
            continue
        chain, scale, shift = _affine_chain(g, prod.outputs[0])
        if not chain:
            continue
        fold_into(g, prod, scale, shift, "affine")
        for n in chain:
            g.nodes.remove(n)
            g.tensors.pop(prod.outputs[0], None)
            prod.outputs = [n.outputs[0]]
        names = ", ".join(f"{n.op} '{n.name}'" for n in chain)
        for n in chain:
            g.merged(n.name, prod.name)
        msgs.append(f"folded constant {names} into {prod.op} '{prod.name}'")
    if msgs:
        g.remove_unused()
    return msgs


def fold_into(g: Graph, prod: Node, scale: np.ndarray, shift: np.ndarray, tag: str) -> None:
    """Make ``prod`` (Conv / ConvTranspose / Gemm with constant weights and
    bias) compute ``prod(x) * scale + shift`` per output channel."""
    scale, shift = np.asarray(scale, np.float64), np.asarray(shift, np.float64)
    w = g.const(prod.inputs[1]).astype(np.float64)
    if prod.op == "ConvTranspose":
        groups = int(prod.attrs.get("group", 1))
        grouped = w.reshape(groups, w.shape[0] // groups, w.shape[1], *w.shape[2:])
        s = scale.reshape(groups, 1, w.shape[1], *([1] * (w.ndim - 2)))
        w = (grouped * s).reshape(w.shape)
    else:   # Conv [C_out, C_in/g, k...] and Gemm [M, K]: output channels on axis 0
        w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    has_bias = len(prod.inputs) > 2 and prod.inputs[2]
    b = g.const(prod.inputs[2]).astype(np.float64) if has_bias else np.zeros(scale.size)
    b = b * scale + shift
    prod.inputs = [prod.inputs[0], g.add_const(f"{prod.name}_W_{tag}", w.astype(np.float32)),
                   g.add_const(f"{prod.name}_B_{tag}", b.astype(np.float32))]


def _can_take_fold(g: Graph, prod: Node) -> bool:
    if "q_clamp" in prod.attrs or len(prod.outputs) != 1 or g.const(prod.inputs[1]) is None:
        return False
    if len(prod.inputs) > 2 and prod.inputs[2] and g.const(prod.inputs[2]) is None:
        return False
    return g.tensor(prod.outputs[0]).dtype == "float32" and len(g.shape(prod.outputs[0])) >= 2


def _affine_chain(g: Graph, x: str) -> tuple[list[Node], np.ndarray, np.ndarray]:
    """The foldable ops reading ``x`` one after another, and their composed
    per-channel (scale, shift) in float64."""
    shape = g.shape(x)
    c = shape[1]
    scale, shift = np.ones(c), np.zeros(c)
    chain: list[Node] = []
    while not g.is_graph_output(x) and len(g.consumers(x)) == 1:
        node = g.consumers(x)[0]
        st = _affine_of(g, node, x, shape)
        if st is None or _is_hsigmoid_head(g, node, x):
            break
        scale, shift = scale * st[0], shift * st[0] + st[1]
        chain.append(node)
        x = node.outputs[0]
    return chain, scale, shift


def _affine_of(g: Graph, node: Node, x: str, shape: tuple[int, ...]):
    """(scale, shift) per channel when ``node`` is an affine op of ``x`` by a
    per-channel constant, else None."""
    if node.op not in _AFFINE_OPS or len(node.inputs) != 2 or len(node.outputs) != 1:
        return None
    x_first = node.inputs[0] == x
    other = node.inputs[1] if x_first else node.inputs[0]
    k = _per_channel(g.const(other), shape)
    if k is None or g.shape(node.outputs[0]) != shape:
        return None
    one, zero = np.ones_like(k), np.zeros_like(k)
    if node.op == "Add":
        return one, k
    if node.op == "Mul":
        return k, zero
    if node.op == "Sub":
        return (one, -k) if x_first else (-one, k)
    if x_first and np.all(k != 0):          # Div: x / c only
        return 1.0 / k, zero
    return None


def _per_channel(value: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The constant as a length-C float64 vector when it only varies over axis 1."""
    if value is None or value.dtype.kind != "f" or value.ndim > len(shape):
        return None
    full = (1,) * (len(shape) - value.ndim) + value.shape
    if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, shape[1]):
        return None
    v = value.astype(np.float64).reshape(-1)
    return np.broadcast_to(v, (shape[1],)).copy()


def _is_hsigmoid_head(g: Graph, node: Node, x: str) -> bool:
    """``x + 3`` whose only reader is ``Clip(0, 6)``."""
    if node.op != "Add":
        return False
    other = node.inputs[1] if node.inputs[0] == x else node.inputs[0]
    v = g.const(other)
    if v is None or v.size != 1 or abs(float(v.reshape(-1)[0]) - 3.0) > 3e-6:
        return False
    readers = g.consumers(node.outputs[0])
    return len(readers) == 1 and readers[0].op == "Clip" and \
        readers[0].attrs.get("min") == 0.0 and readers[0].attrs.get("max") == 6.0
