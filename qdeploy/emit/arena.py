"""Static arena planning: every activation buffer placed at a fixed offset of one
arena, by liveness (greedy by size, with in-place reuse).

The algorithm is TFLite Micro's ``GreedyMemoryPlanner`` (TVM USMP calls it
"greedy by size"): buffers are placed largest first, each at the lowest
``alignment``-aligned offset where it overlaps no already placed buffer whose
lifetime overlaps its own. On top, the in-place reuse that TinyEngine-style
planners do: a buffer produced by an element-wise op (activation, requantize,
reshape, ...) may take the storage of an input that dies at that step, because
the kernel reads each element before writing it. Such a chain of buffers is one
*group*, planned as one buffer (its lifetime the union, its size the largest).

A buffer is live over the steps ``first..last`` (inclusive): the step that
writes it to the last step that reads it. Two buffers whose lifetimes share a
step get disjoint bytes, except an honoured in-place pair (``b.inplace_of ==
a.name``), which share the offset. ``inplace_of`` is honoured when ``a`` dies
exactly where ``b`` is born (``a.last == b.first``), both have the same size
(a smaller ``b`` would hold ``a``'s larger footprint for its whole life: an
element-wise op's output has its input's size anyway), and no other buffer
already took ``a``'s storage.

``Plan.size`` is exact: the end of the highest placed buffer (no padding after
it). ``Plan.lower_bound`` is the largest sum, over one step, of the live groups'
sizes (an in-place pair counted once): no placement of these buffers with these
sharings can be smaller.

:func:`plan_qgraph` derives the buffers from a QGraph: every int8 activation
tensor of the integer body, in schedule order (``qg.nodes`` without the graph's
boundary Quantize/Dequantize), the integer graph inputs (written before step 0)
and outputs (read after the last step) included.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALIGNMENT = 16

# ops whose kernels may write their output over the storage of an input of the
# same size (element-wise, reading each element before writing it; for a
# broadcasting op, equal size means the input is not broadcast). Reshape only
# where it keeps the memory order: a caller whose layout makes a Reshape a
# permutation (NCHW -> NHWC flatten) passes its own set.
INPLACE_OPS = frozenset({"Requantize", "Lut", "LeakyShift", "Reshape", "Add", "Sub", "Mul",
                         "Maximum", "Minimum", "PRelu"})


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int                       # bytes
    first: int                      # step that writes it
    last: int                       # last step that reads it (>= first)
    inplace_of: str | None = None   # a buffer whose storage it may reuse


@dataclass(frozen=True)
class Plan:
    offsets: dict[str, int]                    # byte offset of every buffer, by name
    size: int                                  # arena bytes (exact)
    lower_bound: int                           # max over steps of the live bytes
    alignment: int = ALIGNMENT
    inplace: dict[str, str] = field(default_factory=dict)   # honoured: buffer -> whose storage
    peak: tuple[str, ...] = ()                 # the buffers live at the lower bound's step, largest first
    algorithm: str = "greedy-by-size + in-place"


def plan(buffers: list[Buffer], alignment: int = ALIGNMENT) -> Plan:
    """Offsets for ``buffers`` (see the module docstring)."""
    by_name = {b.name: b for b in buffers}
    if len(by_name) != len(buffers):
        raise ValueError("buffer names must be unique")
    for b in buffers:
        if b.size < 0 or b.last < b.first:
            raise ValueError(f"buffer '{b.name}': size {b.size}, steps {b.first}..{b.last}")
    groups, inplace = _groups(buffers, by_name)
    bound, peak, t_peak = _lower_bound(groups, by_name)
    best = None
    for name, key in _orders(groups, t_peak).items():
        placed = _place(sorted(groups, key=key), alignment)
        size = max((o + g[1] for g, o in placed), default=0)
        if best is None or size < best[0]:
            best = (size, placed, name)
    size, placed, how = best
    offsets = {m: o for g, o in placed for m in g[0]}
    return Plan({b.name: offsets[b.name] for b in buffers}, size, bound, alignment, inplace, peak,
                f"greedy ({how}) + in-place")


def _orders(groups, t_peak):
    """The placement orders tried (the smallest arena wins): TFLite Micro's
    largest first; the groups live at the peak step first (they then pack
    contiguously, and the rest fit around them); most conflicting first (TVM
    USMP's greedy-by-conflicts); in schedule order, largest first within a step
    (a chain with small scratch buffers beside it: each tensor lands where the
    ones that died just before it were)."""
    def conflicts(g):
        return sum(1 for h in groups if h[2] <= g[3] and g[2] <= h[3])
    n_conf = {id(g): conflicts(g) for g in groups}
    tie = lambda g: (g[2], g[0][0])   # noqa: E731
    return {
        "by size": lambda g: (-g[1],) + tie(g),
        "peak first": lambda g: (not g[2] <= t_peak <= g[3], -g[1]) + tie(g),
        "by conflicts": lambda g: (-n_conf[id(g)], -g[1]) + tie(g),
        "by first use": lambda g: (g[2], -g[1], g[0][0]),
    }


def _place(order, alignment):
    """Each group at its lowest fitting offset, in ``order``: [(group, offset)]."""
    placed: list[tuple[tuple, int]] = []
    for g in order:
        placed.append((g, _lowest_fit(placed, g, alignment)))
    return placed


def _groups(buffers, by_name):
    """In-place chains: ([member names], size, first, last) each, and the honoured pairs."""
    root: dict[str, str] = {b.name: b.name for b in buffers}
    taken: set[str] = set()
    inplace: dict[str, str] = {}
    for b in sorted(buffers, key=lambda b: (b.first, b.name)):
        a = by_name.get(b.inplace_of) if b.inplace_of else None
        if a is None or a.name in taken or a.last != b.first or b.size != a.size or a is b:
            continue
        taken.add(a.name)
        inplace[b.name] = a.name
        root[b.name] = root[a.name]
    members: dict[str, list[str]] = {}
    for b in buffers:
        r = b.name
        while root[r] != r:
            r = root[r]
        members.setdefault(r, []).append(b.name)
    groups = []
    for names in members.values():
        bs = [by_name[n] for n in names]
        groups.append((names, max(b.size for b in bs), min(b.first for b in bs), max(b.last for b in bs)))
    return groups, inplace


def _lowest_fit(placed, g, alignment) -> int:
    """The lowest aligned offset where group ``g`` overlaps no placed group live
    at the same time."""
    _, size, first, last = g
    busy = sorted((o, o + h[1]) for h, o in placed if h[2] <= last and first <= h[3] and h[1] > 0)
    off = 0
    for lo, hi in busy:
        if off + size <= lo:
            break
        off = max(off, _align(hi, alignment))
    return off


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _lower_bound(groups, by_name) -> tuple[int, tuple[str, ...], int]:
    """(the bound, the buffers live at its step, that step)."""
    if not groups:
        return 0, (), 0
    lo = min(g[2] for g in groups)
    hi = max(g[3] for g in groups)
    best, peak, at = -1, (), lo
    for t in range(lo, hi + 1):
        total, live = 0, []
        for names, _, first, last in groups:
            here = [by_name[n] for n in names if by_name[n].first <= t <= by_name[n].last]
            if here:
                total += max(b.size for b in here)
                live += here
        if total > best:
            best, at = total, t
            peak = tuple(b.name for b in sorted(live, key=lambda b: (-b.size, b.name)))
    return best, peak, at


# ------------------------------------------------------------------ QGraph buffers
def schedule(qg) -> list:
    """The integer body of ``qg`` in schedule order: its nodes without the graph
    inputs' Quantize and the graph outputs' Dequantize."""
    boundary = {id(n) for n in qg.nodes
                if (n.op == "Quantize" and n.inputs[0] in qg.inputs)
                or (n.op == "Dequantize" and n.outputs[0] in qg.outputs)}
    return [n for n in qg.nodes if id(n) not in boundary]


def int_io(qg) -> tuple[list[str], list[str]]:
    """The integer graph inputs and outputs (the tensors the C API takes and returns)."""
    ins = [n.outputs[0] for i in qg.inputs for n in qg.nodes if n.op == "Quantize" and n.inputs[0] == i]
    outs = [n.inputs[0] for o in qg.outputs for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] == o]
    return ins, outs


def qgraph_buffers(qg, inplace_ops=INPLACE_OPS) -> list[Buffer]:
    """One :class:`Buffer` per integer activation tensor of ``qg`` (steps = indices
    into :func:`schedule`; inputs first = 0, outputs last = len(schedule))."""
    body = schedule(qg)
    ins, outs = int_io(qg)
    first: dict[str, int] = {t: 0 for t in ins}
    last: dict[str, int] = {t: 0 for t in ins}
    inplace: dict[str, str] = {}
    for step, n in enumerate(body):
        for t in n.inputs:
            if t in first:
                last[t] = step
        for t in n.outputs:
            first[t] = last[t] = step
    for t in outs:
        last[t] = len(body)
    for step, n in enumerate(body):
        if n.op not in inplace_ops:
            continue
        y = qg.tensors[n.outputs[0]]
        for t in n.inputs:
            x = qg.tensors[t]
            if t in first and last[t] == step and _nbytes(x) == _nbytes(y) and x.dtype == y.dtype:
                inplace[n.outputs[0]] = t
                break
    return [Buffer(t, _nbytes(qg.tensors[t]), first[t], last[t], inplace.get(t)) for t in first]


def _nbytes(t) -> int:
    return int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize


def plan_qgraph(qg, inplace_ops=INPLACE_OPS, alignment: int = ALIGNMENT) -> Plan:
    """The arena plan of ``qg``'s integer activations (``inplace_ops=()``: no in-place)."""
    return plan(qgraph_buffers(qg, inplace_ops), alignment)
