"""Fuse clamp-like activations into their producer as a clamp range.

``Relu`` (0, inf), ``Clip`` (its ``min``/``max`` attrs; the importer has
already turned the input form and the opset < 11 attribute form into attrs),
``Max(x, c)`` (c, inf) and ``Min(x, c)`` (-inf, c) with a one-element constant
``c`` are removed and their range is stored on the producer as
``q_clamp=(lo, hi)`` (intersected with a clamp it already has, so
``Min(Max(conv, 0), 6)`` becomes one ``(0, 6)`` clamp) and ``q_act`` =
``"relu"`` for (0, inf), ``"relu6"`` for (0, 6), else ``"clip"``. In int8 the
clamp is free: it narrows the output's min/max before the store.

Producers that take a fused clamp are those whose TFLite builtin carries a
``fused_activation_function``: CONV_2D / DEPTHWISE_CONV_2D (``Conv``),
TRANSPOSE_CONV (``ConvTranspose``), FULLY_CONNECTED (``Gemm``), ADD, SUB,
MUL (``Add``, ``Sub``, ``Mul``), AVERAGE_POOL_2D / MAX_POOL_2D
(``AveragePool``, ``MaxPool``) and CONCATENATION (``Concat``). Not fused:
GlobalAveragePool (TFLite MEAN has no fused activation), Div (no int8 DIV
kernel in the TFLite reference), Resize and everything else.

The activation must be its producer's only consumer, and the producer's
output must not be a graph output (it would lose its unclamped value).
"""
from __future__ import annotations

import math

from ..ir import Graph, Node

NAME = "fuse_activation"

FUSABLE_PRODUCERS = ("Conv", "ConvTranspose", "Gemm", "Add", "Sub", "Mul",
                     "AveragePool", "MaxPool", "Concat")


def run(g: Graph, opts) -> list[str]:
    msgs = []
    for act in [n for n in g.nodes if n.op in ("Relu", "Clip", "Max", "Min")]:
        rng = clamp_range(g, act)
        if rng is None:
            continue
        x = _data_input(g, act)
        prod = g.producer(x)
        if prod is None or prod.op not in FUSABLE_PRODUCERS or len(prod.outputs) != 1:
            continue
        if g.is_graph_output(x) or len(g.consumers(x)) != 1:
            continue
        old = prod.attrs.get("q_clamp", (-math.inf, math.inf))
        lo, hi = max(old[0], rng[0]), min(old[1], rng[1])
        if lo > hi:
            continue
        prod.attrs["q_clamp"] = (lo, hi)
        prod.attrs["q_act"] = act_name(lo, hi)
        g.bypass(act, keep=x)
        g.merged(act.name, prod.name)
        msgs.append(f"fused {act.op} '{act.name}' into {prod.op} '{prod.name}' as clamp "
                    f"[{lo:g}, {hi:g}] ({prod.attrs['q_act']})")
    return msgs


def act_name(lo: float, hi: float) -> str:
    if lo == 0.0 and hi == math.inf:
        return "relu"
    if lo == 0.0 and hi == 6.0:
        return "relu6"
    return "clip"


def clamp_range(g: Graph, act: Node) -> tuple[float, float] | None:
    """The (lo, hi) clamp an activation node applies, or None if it is not a clamp."""
    if act.op == "Relu":
        return 0.0, math.inf
    if act.op == "Clip":
        lo, hi = float(act.attrs.get("min", -math.inf)), float(act.attrs.get("max", math.inf))
        return (lo, hi) if lo <= hi else None
    if act.op in ("Max", "Min") and len(act.inputs) == 2:
        consts = [g.const(i) for i in act.inputs]
        if sum(c is not None for c in consts) != 1:
            return None
        c = next(c for c in consts if c is not None)
        x = _data_input(g, act)
        if c.size != 1 or g.shape(act.outputs[0]) != g.shape(x):
            return None
        v = float(c.reshape(-1)[0])
        return (v, math.inf) if act.op == "Max" else (-math.inf, v)
    return None


def _data_input(g: Graph, act: Node) -> str:
    return next(i for i in act.inputs if g.const(i) is None)
