"""Detector heads: a Concat of mismatched ranges that feeds the outputs runs in float.

YOLO-style heads concatenate box coordinates (0..640, or raw regressions of a
few units) with class scores (0..1) into one output tensor. One int8 scale
cannot serve both: the scores keep ``8 - log2(R_box / R_score)`` bits (none at
all for 640 vs 1). No requantize helps, because the concat's single output
scale is the problem. What does help is to not quantize the concat at all: it
moves no arithmetic, so it can run after dequantization, exactly.

:func:`split_tail` finds the graph's *data-movement tail*: the nodes
(Concat, Reshape, Transpose) whose outputs are read only by other tail nodes
or are graph outputs. When that tail holds a Concat whose branches lose at
least ``MIN_BITS`` bits (the shortcut check's ``bits_lost`` on the calibrated
ranges), the tail is cut off the float graph: the tensors that enter it
become the graph's outputs (each quantized at its own scale, so every emitter
sees an ordinary integer graph with more outputs), and the tail is recorded as
plain data. :func:`apply_tail` replays it in numpy on the dequantized branch
outputs, giving the model's own outputs (``qdeploy run`` does this for every
backend, so users see the model's outputs unchanged).

Nothing is cut when a tensor entering the tail is a graph input or is read
outside the tail (it would have to be both an output and an internal value).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph

MOVES = ("Concat", "Reshape", "Transpose")
MIN_BITS = 2.0      # a branch losing >= 2 bits (4x range mismatch) is worth the extra outputs


def tail_nodes(g: Graph) -> list:
    """The data-movement tail of ``g`` (graph order)."""
    outs = set(g.outputs)
    tail: list = []
    for n in reversed(g.nodes):
        if n.op in MOVES and all((o in outs or g.consumers(o)) and all(c in tail for c in g.consumers(o))
                                 for o in n.outputs):
            tail.append(n)
    return list(reversed(tail))


def _branches(g: Graph, tail: list) -> list[str] | None:
    """The tensors entering ``tail`` in order, or None when one cannot become an
    output (a graph input, a constant, read outside the tail, already an output)."""
    produced = {o for n in tail for o in n.outputs}
    branches: list[str] = []
    for n in tail:
        for i in n.inputs:
            if i not in produced and i not in branches:
                branches.append(i)
    if not tail or any(i in g.inputs or g.const(i) is not None or g.is_graph_output(i)
                       or any(c not in tail for c in g.consumers(i)) for i in branches):
        return None
    return branches


def movable_concats(g: Graph) -> set[str]:
    """Names of the Concats :func:`split_tail` can move to float (in a tail whose
    entering tensors can all become outputs)."""
    tail = tail_nodes(g)
    return {n.name for n in tail if n.op == "Concat"} if _branches(g, tail) is not None else set()


def split_tail(g: Graph, records: list[dict], min_bits: float | None = None) -> dict | None:
    """Cut the tail off ``g`` in place when a Concat in it loses ``min_bits``
    (``records``: :func:`~qdeploy.passes.shortcut_check.check_shortcuts` with
    ranges). Returns the tail record (None: nothing cut)."""
    min_bits = MIN_BITS if min_bits is None else min_bits
    tail = tail_nodes(g)
    names = {n.name for n in tail}
    lossy = [r for r in records if r["node"] in names and r["op"] == "Concat"
             and (r.get("max_bits_lost") or 0.0) >= min_bits]
    if not lossy:
        return None
    branches = _branches(g, tail)
    if branches is None:
        return None
    rec = {"outputs": [{"name": o, "shape": list(g.shape(o))} for o in g.outputs],
           "branches": [{"name": b, "shape": list(g.shape(b))} for b in branches],
           "nodes": [{"op": n.op, "name": n.name, "inputs": list(n.inputs), "outputs": list(n.outputs),
                      "attrs": _plain(n.attrs)} for n in tail],
           "concats": [{"node": r["node"], "max_bits_lost": round(float(r["max_bits_lost"]), 2)} for r in lossy]}
    g.nodes = [n for n in g.nodes if n.name not in names]
    g.outputs = list(branches)
    g.remove_unused()
    return rec


def _plain(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if k.startswith(("q_", "_")):
            continue
        out[k] = [int(x) for x in v] if isinstance(v, (list, tuple)) else (int(v) if isinstance(v, (int, np.integer)) else v)
    return out


def apply_tail(rec: dict, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs from the branch outputs (N samples along axis 0)."""
    env = dict(values)
    for n in rec["nodes"]:
        xs = [np.asarray(env[i]) for i in n["inputs"]]
        a = n["attrs"]
        if n["op"] == "Concat":
            y = np.concatenate(xs, axis=int(a["axis"]) % xs[0].ndim)
        elif n["op"] == "Reshape":
            shape = list(a["shape"])
            if shape and shape[0] == 1:
                shape[0] = xs[0].shape[0]
            y = xs[0].reshape(shape)
        else:
            y = np.transpose(xs[0], a.get("perm") or list(range(xs[0].ndim))[::-1])
        env[n["outputs"][0]] = np.ascontiguousarray(y)
    return {o["name"]: env[o["name"]] for o in rec["outputs"]}


def describe(rec: dict) -> str:
    worst = max(rec["concats"], key=lambda c: c["max_bits_lost"])
    return (f"output(s) {', '.join(o['name'] for o in rec['outputs'])}: the concat '{worst['node']}' "
            f"would lose {worst['max_bits_lost']:.1f} bits of a branch under one int8 scale; "
            f"{len(rec['nodes'])} data-movement node(s) run in float after dequantization on "
            f"{len(rec['branches'])} separately quantized outputs")
