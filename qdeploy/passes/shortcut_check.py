"""Shortcut check: one record per merge (Add of two activations, Concat).

A merge puts branches with different value ranges under one quantization
scale. For a **Concat** the int8 output shares one scale, so a branch whose
range is ``r`` inside an output range ``R`` keeps only ``8 - log2(R / r)``
bits: ``log2(R / r)`` bits are lost. An **Add** rescales each input
separately (TFLite's int8 ADD shifts both inputs left by 20 bits, then
rescales each to a common scale), so no bits are lost at its inputs; what is
shared is the output scale, which covers the sum, so the smaller branch's
contribution is resolved ``log2(R_out / r)`` bits more coarsely than it was
on its own. A branch whose span is 0 (constant zero) has no meaningful ratio:
its ``bits_lost`` and the record's ``ratio`` are None (records stay plain
JSON, no infinities).

A Concat that reaches the graph outputs through data movement only (a
detector head concatenating boxes with scores; its branches computed inside
the graph) is marked ``feeds_outputs``:
the quantizer's float tail (``quant/float_tail.py``) keeps it out of int8
when its branches lose ``MIN_BITS`` (2) bits or more. The advice of such a record
says only what holds whether or not it is cut (under 2 bits: kept in int8); the
pipeline replaces the record of a concat it does cut
(``float_tail.moved_record``: flagged ``float_tail``, advice pointing to the
tail's one note), so the explanation is printed once.

A branch's range is its quantization span ``max(hi, 0) - min(lo, 0)`` (int8
grids always contain zero). :func:`check_shortcuts` builds the records; the
pass stores them (structure only, no ranges yet) in
``graph.records["shortcut"]``, replacing an earlier list, and the calibrator
calls :func:`check_shortcuts` again with measured ranges.
"""
from __future__ import annotations

import math

from ..ir import Graph, Node
from ..quant.float_tail import MIN_BITS

NAME = "shortcut_check"

# a Concat whose branches differ by more than this loses >= 1 bit: worth advice
ADVICE_RATIO = 2.0

Range = tuple[float, float]


def run(g: Graph, opts) -> list[str]:
    recs = check_shortcuts(g, None)
    g.records["shortcut"] = recs
    def origin(b):
        return b["producer"] or ("constant" if g.const(b["tensor"]) is not None else "graph input")
    return [f"{r['op']} '{r['node']}' merges {len(r['branches'])} branches: "
            + ", ".join(f"'{b['tensor']}' (from {origin(b)})" for b in r["branches"])
            for r in recs]


def check_shortcuts(g: Graph, ranges: dict[str, Range] | None = None) -> list[dict]:
    """One record per Add (two non-constant inputs) and Concat, in graph order.

    Record keys: ``node``, ``op``, ``output``, ``branches`` (list of
    ``{"tensor", "producer"}`` plus, when ranges are known, ``"range"``,
    ``"span"``, ``"bits_lost"``), and when every branch range is known:
    ``ratio`` (largest / smallest branch span), ``max_bits_lost`` and ``advice``.
    For an Add, ``bits_lost`` is 0 and ``bits_coarser_in_output`` per branch is
    given when the output range is known too."""
    from ..quant.float_tail import movable_concats
    at_output = movable_concats(g)
    recs = []
    for n in g.nodes:
        if n.op == "Concat" or (n.op == "Add" and len(n.inputs) == 2
                                and all(g.const(i) is None for i in n.inputs)):
            recs.append(_record(g, n, ranges or {}, n.name in at_output))
    return recs


def span(r: Range) -> float:
    return max(float(r[1]), 0.0) - min(float(r[0]), 0.0)


def _record(g: Graph, n: Node, ranges: dict[str, Range], at_output: bool = False) -> dict:
    branches = []
    for t in n.inputs:
        p = g.producer(t)
        branches.append({"tensor": t, "producer": p.name if p is not None else None})
    rec = {"node": n.name, "op": n.op, "output": n.outputs[0], "branches": branches}
    if at_output:
        rec["feeds_outputs"] = True
    if not all(b["tensor"] in ranges for b in branches):
        return rec
    for b in branches:
        lo, hi = ranges[b["tensor"]]
        b["range"], b["span"] = (float(lo), float(hi)), span((lo, hi))
    spans = [b["span"] for b in branches]
    big, small = max(spans), min(spans)
    rec["ratio"] = big / small if small > 0 else None
    if n.op == "Concat":
        for b in branches:
            b["bits_lost"] = math.log2(big / b["span"]) if b["span"] > 0 else None
    else:
        out = ranges.get(n.outputs[0])
        for b in branches:
            b["bits_lost"] = 0.0
            if out is not None and b["span"] > 0 and span(out) > 0:
                b["bits_coarser_in_output"] = max(0.0, math.log2(span(out) / b["span"]))
    lost = [b["bits_lost"] for b in branches if b["bits_lost"] is not None]
    rec["max_bits_lost"] = max(lost) if lost else None
    rec["advice"] = _advice(n, rec)
    return rec


def _advice(n: Node, rec: dict) -> str:
    ratio = rec["ratio"]
    if ratio is None:
        zero = [b["tensor"] for b in rec["branches"] if b["span"] == 0]
        return f"{n.op.lower()} branch(es) {zero} are constant zero; check the calibration data"
    worst = max(rec["branches"], key=lambda b: b["bits_lost"] if n.op == "Concat"
                else b.get("bits_coarser_in_output", 0.0))
    if n.op == "Concat":
        if ratio < ADVICE_RATIO:
            return f"concat of branches with {ratio:.1f}x range mismatch: under 1 bit lost, fine"
        text = (f"concat of branches with {ratio:.1f}x range mismatch: loses {worst['bits_lost']:.1f} "
                f"bits on branch '{worst['tensor']}'")
        if rec.get("feeds_outputs"):
            text += "; it feeds the outputs through data movement only (a detector head)"
            if (rec.get("max_bits_lost") or 0.0) < MIN_BITS:
                return text + (f", but under {MIN_BITS:g} bits lost quantize keeps it in int8 rather than "
                               "output its branches separately (quant/float_tail.py)")
            return text + ("; where it stays in int8, separate outputs concatenated after dequantization "
                           "would keep them (quant/float_tail.py)")
        return text + "; an Add or a requantize of that branch would keep them"
    text = (f"add of branches with {ratio:.1f}x range mismatch: each input is rescaled "
            "separately, so no bits are lost at the inputs")
    coarse = worst.get("bits_coarser_in_output")
    if coarse is not None and coarse >= 1.0:
        text += (f"; the output scale covers the sum, so branch '{worst['tensor']}' is resolved "
                 f"{coarse:.1f} bits more coarsely in the output")
    return text
