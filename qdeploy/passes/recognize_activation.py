"""Recognise smooth activations and mark them for lookup-table lowering.

Real exports spell h-swish, h-sigmoid and SiLU as small subgraphs. This pass
rewrites each into one IR node (runs before ``fuse_activation``, whose Clip
fusion would otherwise take the ``Clip(x+3, 0, 6)`` out of an h-swish):

=======================================================  ==========================
pattern (either operand order of Add and Mul)            becomes
=======================================================  ==========================
``x * Clip(x+3, 0, 6) / 6`` or ``... * (1/6)``           ``HardSwish(x)``
``Clip(x+3, 0, 6) / 6`` or ``... * (1/6)``               ``HardSigmoid(x, 1/6, 0.5)``
``x * HardSigmoid(x)`` with alpha 1/6, beta 0.5          ``HardSwish(x)``
``x * Sigmoid(x)``                                       ``SiLU(x)`` (IR-only op)
=======================================================  ==========================

A rewrite happens only when every intermediate tensor has exactly one
consumer and is not a graph output, every constant is a scalar (one
element) and the result has the shape of ``x``. Constants must match to a
relative 1e-6 (float32 ``1/6`` = 0.16666667 matches; a hand-typed 0.16666
does not: replacing it would change the float result). ``x * HardSigmoid(x)``
with other coefficients (Paddle's default 0.2 / 0.5) is not h-swish and is
kept as it is.

Every ``Sigmoid``, ``HardSigmoid``, ``HardSwish``, ``SiLU`` and ``Tanh`` node
then gets ``q_lut=True``: the quantizer lowers it to a 256-entry int8 table.
"""
from __future__ import annotations

from ..ir import Graph, Node

NAME = "recognize_activation"

LUT_OPS = ("Sigmoid", "HardSigmoid", "HardSwish", "SiLU", "Tanh")
_SIXTH = 1.0 / 6.0


def run(g: Graph, opts) -> list[str]:
    msgs = []
    for match in (_hswish_from_clip, _hsigmoid_from_clip, _hswish_from_hsigmoid, _silu):
        for node in list(g.nodes):
            if any(node is n for n in g.nodes):      # not removed by an earlier match
                msg = match(g, node)
                if msg:
                    msgs.append(msg)
    for n in g.nodes:
        if n.op in LUT_OPS and not n.attrs.get("q_lut"):
            n.attrs["q_lut"] = True
            msgs.append(f"marked {n.op} '{n.name}' for 256-entry LUT lowering")
    if msgs:
        g.remove_unused()
    return msgs


# ---------------------------------------------------------------- matchers
def _hswish_from_clip(g: Graph, final: Node) -> str | None:
    """``x * Clip(x+3, 0, 6) / 6`` (Div by 6 or Mul by 1/6) ending at ``final``."""
    m = _scaled_by_sixth(g, final)
    mul = _private_producer(g, m, "Mul")
    if mul is None:
        return None
    for c, x in _operand_pairs(mul):
        clip = _private_producer(g, c, "Clip")
        if clip is not None and _clip_0_6_of_x_plus_3(g, clip) == x:
            return _replace(g, final, [g.producer(clip.inputs[0]), clip, mul], x, "HardSwish", {},
                            "x*Clip(x+3,0,6)/6")
    return None


def _hsigmoid_from_clip(g: Graph, final: Node) -> str | None:
    """``Clip(x+3, 0, 6) / 6`` (Div by 6 or Mul by 1/6) ending at ``final``."""
    clip = _private_producer(g, _scaled_by_sixth(g, final), "Clip")
    x = _clip_0_6_of_x_plus_3(g, clip) if clip is not None else None
    if x is None:
        return None
    return _replace(g, final, [g.producer(clip.inputs[0]), clip], x, "HardSigmoid",
                    {"alpha": _SIXTH, "beta": 0.5}, "Clip(x+3,0,6)/6")


def _hswish_from_hsigmoid(g: Graph, final: Node) -> str | None:
    if final.op != "Mul":
        return None
    for h, x in _operand_pairs(final):
        hs = _private_producer(g, h, "HardSigmoid")
        if hs is not None and hs.inputs[0] == x and _close(hs.attrs.get("alpha", 0.2), _SIXTH) \
                and _close(hs.attrs.get("beta", 0.5), 0.5):
            return _replace(g, final, [hs], x, "HardSwish", {}, "x*HardSigmoid(x)")
    return None


def _silu(g: Graph, final: Node) -> str | None:
    if final.op != "Mul":
        return None
    for s, x in _operand_pairs(final):
        sig = _private_producer(g, s, "Sigmoid")
        if sig is not None and sig.inputs[0] == x:
            return _replace(g, final, [sig], x, "SiLU", {}, "x*Sigmoid(x)")
    return None


# ---------------------------------------------------------------- helpers
def _replace(g: Graph, final: Node, parts: list[Node], x: str, op: str, attrs: dict, form: str) -> str | None:
    if g.shape(final.outputs[0]) != g.shape(x):
        return None
    old = final.op
    for p in parts:
        g.nodes.remove(p)
    final.op, final.inputs, final.attrs = op, [x], dict(attrs, q_lut=True)
    return (f"recognised {op} {form} ending at {old} '{final.name}' "
            f"({len(parts) + 1} nodes -> 1, marked for LUT lowering)")


def _scalar(g: Graph, name: str) -> float | None:
    v = g.const(name)
    return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None


def _close(a, b: float) -> bool:
    return a is not None and abs(float(a) - b) <= 1e-6 * abs(b)


def _operand_pairs(node: Node) -> list[tuple[str, str]]:
    """(this, other) for both orders of a binary node's inputs."""
    if len(node.inputs) != 2:
        return []
    a, b = node.inputs
    return [(a, b), (b, a)]


def _private_producer(g: Graph, tensor: str | None, op: str) -> Node | None:
    """The producer of ``tensor`` if it is an ``op`` node and ``tensor`` feeds
    nothing else (and is not a graph output)."""
    if tensor is None or g.is_graph_output(tensor) or len(g.consumers(tensor)) != 1:
        return None
    p = g.producer(tensor)
    return p if p is not None and p.op == op else None


def _scaled_by_sixth(g: Graph, node: Node) -> str | None:
    """``t`` when ``node`` computes ``t / 6`` or ``t * (1/6)``."""
    if node.op == "Div" and len(node.inputs) == 2 and _close(_scalar(g, node.inputs[1]), 6.0):
        return node.inputs[0]
    if node.op == "Mul":
        for t, c in _operand_pairs(node):
            if _close(_scalar(g, c), _SIXTH) and g.const(t) is None:
                return t
    return None


def _clip_0_6_of_x_plus_3(g: Graph, clip: Node) -> str | None:
    """``x`` when ``clip`` is ``Clip(x + 3, 0, 6)`` and ``x + 3`` feeds only it."""
    if clip.attrs.get("min") != 0.0 or clip.attrs.get("max") != 6.0:
        return None
    add = _private_producer(g, clip.inputs[0], "Add")
    if add is None:
        return None
    for x, c in _operand_pairs(add):
        if g.const(x) is None and _close(_scalar(g, c), 3.0):
            return x
    return None
