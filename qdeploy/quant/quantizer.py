"""The quantizer: float Graph + calibrated ranges + target -> QGraph.

``quantize_graph(graph, ranges, target, per_tensor=False)`` runs in four steps:

1. **Check** (one error for everything): every op must have a handler in
   ``prepare.HANDLERS`` and be allowed by the target (all unsupported nodes are
   listed at once, with what to do); every activation whose scale comes from
   calibration must have a range (the missing ones are named).
2. **Activation parameters**, in topological order, by each op's output rule
   (``prepare.out_rule``): from the range (intersected with a fused clamp;
   power-of-two targets pick the covering scale or a finer one by the MSE
   over ``hists[name]``, the calibration histogram, when given: see
   ``pow2_select.py``),
   tied to the input (MaxPool, Reshape, Transpose, Pad, Slice, Split,
   DepthToSpace, AvgPool except on fpga, Resize: TFLite requires equal scales), fixed
   (arm: Logistic/Softmax 1/256 zp -128, Tanh 1/128 zp 0) or shared (Concat).
3. **Concat sharing**: the Concat output takes the range covering all its
   inputs. An input produced by a requantizing op (Conv, FC, Add, ...) that
   nobody else reads takes the shared parameters directly (the concat output
   has that precision anyway, so nothing is lost). Any other input (a graph
   input, a tensor read elsewhere, the output of a tied op) gets a
   ``Requantize`` node in front of the Concat, so its other readers keep
   their precision. One exception on the Q31 targets: when that Requantize's
   ratio ``s_in / s_concat`` lies in [1/4, 1/2), the producer's own scale is
   widened to ``BRANCH_RATIO * s_concat`` first (see :func:`_widen_branch`).
4. **Prepare**: each node's handler (``prepare.py``) appends quantized nodes
   with every integer; a node named in ``keep_float`` (``--keep-float``, ort)
   becomes a ``Float`` node instead (``float_island.py``). The float input gets a ``Quantize`` node (its int
   tensor is named ``<input>_q``), each output a ``Dequantize`` (the int
   tensor is ``<output>_q``; the float output keeps the model's name). Every
   other tensor keeps its float graph name, so per-layer tools can pair them.

Warnings (weights that had to be adjusted, per-tensor weights with an
enormous channel ratio) are issued with :func:`warnings.warn` naming the
layer and recorded in ``qgraph.metadata["warnings"]``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import QDeployError
from ..ir import Graph
from .float_island import check_target as check_float_target, grouped as float_grouped, prepare as float_island
from .float_island import resolve as resolve_float
from .prepare import HANDLERS, fixed_params, Ctx, insert_requantize, out_rule, unsupported_reason
from .qgraph import QGraph, QNode, QTensor
from .pow2_select import pow2_activation_scale
from .scales import activation_params, symmetric_maxabs
from .targets import Target, load_target

REQUANTIZING = {"Conv", "ConvTranspose", "Gemm", "Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu",
                "Relu", "Clip", "GlobalAveragePool", "ReduceMean",
                "AveragePool"}   # AveragePool: only where out_rule gives it its own range (fpga)


def quantize_graph(graph: Graph, ranges: dict, target: "str | Target" = "arm",
                   per_tensor: bool = False, hists: dict | None = None, keep_float=()) -> QGraph:
    target = load_target(target)
    g = graph
    keep = set()
    if keep_float:
        check_float_target(target)
        keep = set(resolve_float(g, keep_float))
    # the ort default: grouped convs that are not depthwise run in float (float_island.py)
    rule = [n for n in float_grouped(g) if n not in keep] if target.numerics.float_grouped else []
    keep |= set(rule)
    check_ops(g, target)
    ranges = {k: (float(v[0]), float(v[1])) for k, v in ranges.items()}
    _check_ranges(g, ranges, target)
    ranges = tied_ranges(g, ranges, target)
    qt = _activation_params(g, ranges, target, hists or {})
    ctx = Ctx(g, target, per_tensor, qt)
    shared = _share_concat_scales(g, ctx)
    for n in g.nodes:
        if n.op == "Concat":
            n = _concat_inputs(ctx, n, shared)
        (float_island if n.name in keep else HANDLERS[n.op])(ctx, n)
    qg = _wrap(g, ctx, target)
    if rule:
        qg.metadata["float_grouped"] = rule
    for w in ctx.warnings:
        warnings.warn(w, stacklevel=2)
    return qg


# ------------------------------------------------------------------ checks
def check_ops(g: Graph, target: "str | Target", tail_pending: bool = False) -> None:
    """Raise one error listing every node ``target`` cannot run (public: the
    pipeline checks this before calibrating, ``tail_pending``: before the float
    tail is cut, see ``prepare.unsupported_reason``)."""
    target = load_target(target)
    bad = []
    for n in g.nodes:
        why = unsupported_reason(g, n, target, tail_pending)
        if why:
            bad.append(f"'{n.name}' ({n.op}) {why}")
    if bad:
        raise QDeployError(f"{len(bad)} node(s) cannot be quantized for target '{target.name}': "
                           + "; ".join(bad))


def _needs_range(g: Graph, target: Target) -> list[str]:
    need = list(g.inputs)
    for n in g.nodes:
        if out_rule(n.op, target) == "range":
            need += [o for o in n.outputs if o]
    return need


def _check_ranges(g: Graph, ranges: dict, target: Target) -> None:
    missing = [t for t in _needs_range(g, target) if t not in ranges]
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise QDeployError(f"the ranges have no entry for {len(missing)} tensor(s) of model '{g.name}': {shown}; "
                           "the ranges come from another model or an older graph: calibrate this model again")
    for t in _needs_range(g, target):
        lo, hi = ranges[t]
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise QDeployError(f"the range of tensor '{t}' is [{lo}, {hi}]; ranges must be finite with "
                               "min <= max: calibrate again (check the calibration images for NaN/Inf)")


# ------------------------------------------------------------------ activation parameters
def tied_ranges(g: Graph, ranges: dict, target: Target) -> dict:
    """Ranges with every group of scale-tied tensors (an op whose output
    shares its input's scale: MaxPool, Reshape, Pad, ... ``prepare.TIE``)
    given the union of its members' ranges.

    The group's scale comes from its first tensor (the producer's output).
    With a clipping method (percentile, entropy, mse) that tensor's own range
    may clip values a later member keeps: a MaxPool passes on exactly the
    largest values of its input, so its output's tail is much heavier than its
    input's. Clipping the input at its own 99.99th percentile then clips the
    pool output far more often (squeezenet's stem conv -> MaxPool: -8 dB on
    the model output, bench/RESULTS.md). With the union no member is clipped
    more than its own calibration says. For ``minmax`` ranges nothing changes
    (a tied output's values lie inside its input's range)."""
    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for n in g.nodes:
        if out_rule(n.op, target) != "tie" or n.inputs[0] not in ranges:
            continue
        for o in n.outputs:
            if o and o in ranges:
                parent[root(o)] = root(n.inputs[0])
    if not parent:
        return ranges
    union: dict[str, tuple[float, float]] = {}
    for t in ranges:
        r = root(t)
        lo, hi = union.get(r, ranges[t])
        union[r] = (min(lo, ranges[t][0]), max(hi, ranges[t][1]))
    return {t: union[root(t)] for t in ranges}


def _activation_params(g: Graph, ranges: dict, target: Target, hists: dict) -> dict[str, QTensor]:
    nm = target.numerics
    qmin, qmax = target.qrange
    dtype = nm.activation_dtype

    def make(name, s, zp):
        return QTensor(name, tuple(g.shape(name)), dtype, np.array([s], np.float32), np.array([zp], np.int32))

    def from_range(name, clamp=None):
        lo, hi = ranges[name]
        if clamp is not None:
            lo, hi = max(lo, clamp[0]), min(hi, clamp[1])
            hi = max(hi, lo)
        if nm.pow2_scales and nm.activation_symmetric:
            maxabs = symmetric_maxabs(lo, hi)
            return make(name, pow2_activation_scale(maxabs, hists.get(name), qmin, qmax), 0)
        return make(name, *activation_params(lo, hi, qmin, qmax, nm.activation_symmetric, nm.pow2_scales))

    qt = {i: from_range(i) for i in g.inputs}
    for n in g.nodes:
        rule = out_rule(n.op, target)
        for o in n.outputs:
            if not o:
                continue
            if rule == "tie":
                src = qt[n.inputs[0]]
                qt[o] = make(o, src.s, src.zp)
            elif rule == "fixed":
                qt[o] = make(o, *fixed_params(n.op, target))
            elif rule == "concat":
                # symmetric int8 covers [-qmax, qmax] * s: the extra code -128 is not range to
                # cover (it would double a power-of-two shared scale)
                qlo = -qmax if nm.activation_symmetric else qmin
                lo = min(qt[i].s * (qlo - qt[i].zp) if i in qt else float(np.min(g.const(i))) for i in n.inputs)
                hi = max(qt[i].s * (qmax - qt[i].zp) if i in qt else float(np.max(g.const(i))) for i in n.inputs)
                clamp = n.attrs.get("q_clamp")
                if clamp is not None:
                    lo, hi = max(lo, clamp[0]), min(hi, clamp[1])
                qt[o] = make(o, *activation_params(lo, hi, qmin, qmax, nm.activation_symmetric, nm.pow2_scales))
            else:
                qt[o] = from_range(o, n.attrs.get("q_clamp"))
    return qt


BRANCH_RATIO = 0.6   # a requantized concat branch's scale / the concat's, where _widen_branch applies


def _share_concat_scales(g: Graph, ctx: Ctx) -> dict[str, set[str]]:
    """Give each Concat input produced by a private requantizing op the
    Concat's parameters, widen the ones :func:`_widen_branch` takes; return,
    per Concat, the inputs that still differ."""
    qt = ctx.qt
    differ: dict[str, set[str]] = {}
    for n in g.nodes:
        if n.op != "Concat":
            continue
        out = qt[n.outputs[0]]
        for i in n.inputs:
            if g.const(i) is not None:
                continue
            prod = g.producer(i)
            ours = (prod is not None and prod.op in REQUANTIZING and not g.is_graph_output(i)
                    and out_rule(prod.op, ctx.target) == "range")
            if ours and len(g.consumers(i)) == 1:
                qt[i].scale, qt[i].zero_point = out.scale.copy(), out.zero_point.copy()
            elif ours:
                _widen_branch(g, ctx, i, out)
        differ[n.name] = {i for i in n.inputs if g.const(i) is not None or
                          (qt[i].s, qt[i].zp) != (out.s, out.zp)}
    return differ


def _widen_branch(g: Graph, ctx: Ctx, name: str, out: QTensor) -> None:
    """Widen the scale of ``name`` (a Concat input that other nodes read too,
    so it will be requantized to the Concat's parameters ``out``) to
    ``BRANCH_RATIO * out.s`` when the Requantize ratio ``r = s / out.s`` is
    in [1/4, 1/2), keeping the lower end of its range.

    For such a ratio TFLite's ``QuantizeMultiplier`` gives shift -1, and
    ``MultiplyByQuantizedMultiplier`` rounds twice: to the nearest multiple
    of half an output step, then that to a whole step with ties away from
    zero. Half of the intermediate values are ties, so the branch gains a mean
    error of about +1/4 output LSB on positive values (+0.13 LSB measured
    on the corpus GhostNet's ghost-module concats), a bias that the averaging
    of a following squeeze-excite pool keeps while it removes the noise.
    With ``r`` = 0.6 (shift 0) the requantisation rounds once, and 3/5 makes
    no ties. The price is a 1.2-2.4x coarser step for the tensor's other
    readers. Measured on GhostNet over 10 calibration draws: output SQNR
    +0.27 dB on average, and the integer model then loses nothing against
    the same scales in float (bench/RESULTS.md "SQNR"). Below 1/4 the bias
    is at most 1/8 LSB and the widening would cost more: left alone. Only
    on Q31 targets (``fpga`` requantizes by a rounding shift), and not for a
    tensor that a scale-tied op (MaxPool, Reshape, ...) also reads: that
    op's output already has the tensor's parameters."""
    if ctx.shift_requant or any(out_rule(c.op, ctx.target) == "tie" for c in g.consumers(name)):
        return
    t = ctx.qt[name]
    if not 0.25 <= np.float64(t.s) / np.float64(out.s) < 0.5:
        return
    s = np.float32(BRANCH_RATIO * np.float64(out.s))
    zp = t.zp
    if not ctx.target.numerics.activation_symmetric:   # the same lowest value, to half a step
        zp = int(np.clip(np.round(ctx.qmin - (ctx.qmin - t.zp) * np.float64(t.s) / np.float64(s)),
                         ctx.qmin, ctx.qmax))
    t.scale, t.zero_point = np.array([s], np.float32), np.array([zp], np.int32)


def _concat_inputs(ctx: Ctx, n, shared: dict[str, set[str]]):
    """The Concat node with a Requantize in front of each input whose
    parameters differ from the output's."""
    out = ctx.t(n.outputs[0])
    inputs = []
    for k, i in enumerate(n.inputs):
        if i in shared.get(n.name, set()):
            if ctx.g.const(i) is not None:
                i = ctx.const_operand(i)
            i = insert_requantize(ctx, i, out.s, out.zp, f"{n.name}_in{k}_requant", n)
        inputs.append(i)
    from ..ir import Node
    return Node(n.op, n.name, inputs, list(n.outputs), dict(n.attrs))


# ------------------------------------------------------------------ assembling the QGraph
def _wrap(g: Graph, ctx: Ctx, target: Target) -> QGraph:
    qt = ctx.qt
    nodes = list(ctx.nodes)
    renames = {}
    for o in g.outputs:
        renames[o] = o + "_q"
    head = []
    for i in g.inputs:
        renames[i] = i + "_q"
        qparams = {"requant": "float32"} if target.numerics.requant == "float32" else {}
        head.append(QNode("Quantize", f"{i}_quantize", [i], [i + "_q"], {}, qparams, []))
    tensors: dict[str, QTensor] = {}
    for name, t in qt.items():
        new = renames.get(name, name)
        t.name = new
        tensors[new] = t
    for n in nodes:
        n.inputs = [renames.get(i, i) for i in n.inputs]
        n.outputs = [renames.get(o, o) for o in n.outputs]
    tail = []
    for o in g.outputs:
        tail.append(QNode("Dequantize", f"{o}_dequantize", [o + "_q"], [o], {}, {}, []))
    for name in list(g.inputs) + list(g.outputs):
        tensors[name] = QTensor(name, tuple(g.shape(name)), "float32")
    used = {i for n in nodes for i in n.inputs} | {o for n in nodes for o in n.outputs}
    used |= {renames.get(x, x) for x in list(g.inputs) + list(g.outputs)} | set(g.inputs) | set(g.outputs)
    tensors = {k: v for k, v in tensors.items() if k in used}
    meta = {"warnings": list(ctx.warnings), "float_names": {v: k for k, v in renames.items()},
            "qmin": target.qrange[0], "qmax": target.qrange[1]}
    if target.numerics.weight_bits != 8:   # onnxruntime's reduce_range, decided by the target
        meta["weight_bits"] = target.numerics.weight_bits
    if target.numerics.weight_dtype != "int8":   # how the QDQ model stores them (emit/qdq.py)
        meta["weight_dtype"] = target.numerics.weight_dtype
    return QGraph(g.name, target.name, target.profile, list(g.inputs), list(g.outputs), tensors,
                  head + nodes + tail, meta)
