"""Layers kept in float on the ``ort`` target: ``qdeploy quantize --keep-float NODE``.

When one layer dominates the quantization error (the report's layer table names
it), onnxruntime can run that layer in float while everything else stays int8:
its input is dequantized, the float op runs with the model's own float weights,
and its output is quantized at the output tensor's calibrated scale (with the
layer's fused clamp), so its readers see an ordinary int8 tensor. The QGraph
node is ``Float`` (qgraph.py states its arithmetic); the QDQ emitter writes
DequantizeLinear -> Conv/ConvTranspose/Gemm with plain float weights ->
QuantizeLinear, which onnxruntime cannot fuse into QLinearConv/QGemm. The
TFLite model and the C bundle are integer-only, so the option is refused for
every target whose profile is not ``ort`` and for those artefacts.

**Names.** A node is named as ``qdeploy inspect`` and the report show it: the
model's own node names. The passes keep the name of every Conv / ConvTranspose
/ Gemm; a node a pass folded into one (a BatchNormalization, a fused
Relu/Clip, a folded Pad or constant Add/Mul, a pool folded by ``--fold-gap``)
stands for the layer it was folded into (``Graph.records["merged"]``): asking
for the Relu after a conv keeps that conv in float, and its clamp follows it
(the clamp is applied to the quantized output, exactly as before). Only
Conv, ConvTranspose and Gemm layers can be kept in float: they are the ones
whose weights float keeps; any other node's output is quantized at the same
scale either way.

**The ort default ``float_grouped``** (``[numerics]`` in targets/ort.toml):
every grouped Conv that is not depthwise (group > 1 and more than one input
channel per group, ResNeXt/RegNet-style) becomes such a float layer without
being named (:func:`grouped`): onnxruntime's int8 grouped QLinearConv is several
times slower than its float grouped conv at 1 thread (bench/RESULTS.md, "QDQ
speed"). Depthwise convs stay int8: there the layout reorders around a float
island cost more than the int8 kernel loses, and the float depthwise sums were
not bit-exact with the reference on the real detectors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import QDeployError
from ..ir import Graph, Node
from .qgraph import QTensor

KEEPABLE = {"Conv": "Conv2D", "ConvTranspose": "TransposeConv2D", "Gemm": "FullyConnected"}
OPTION = "--keep-float"


def split_names(values) -> tuple[str, ...]:
    """``--keep-float a --keep-float b,c`` -> ("a", "b", "c") (order kept, no repeats)."""
    if isinstance(values, str):
        values = [values]
    names = [s.strip() for v in values or () for s in str(v).split(",") if s.strip()]
    return tuple(dict.fromkeys(names))


def check_target(target) -> None:
    """Refuse ``--keep-float`` for a target whose artefacts are integer-only (the
    ``ort`` profile emits only the QDQ model: ``qdeploy.emit.ARTEFACTS``)."""
    if target.profile != "ort":
        raise QDeployError(f"{OPTION} is an ort-only option (onnxruntime runs the float layer between "
                           f"DequantizeLinear and QuantizeLinear): target '{target.name}' ({target.profile} "
                           f"profile) emits integer-only artefacts; use --target ort or drop {OPTION}")


def resolve(g: Graph, names, model: "str | Path | None" = None) -> list[str]:
    """The nodes of the pass-processed ``g`` that ``names`` ask to keep in float
    (see the module docstring); one clear error for a name that is not a layer."""
    merged = {r["node"]: r["into"] for r in g.records.get("merged", [])}
    nodes = {n.name: n for n in g.nodes}
    out: list[str] = []
    for req in split_names(names):
        name, seen = req, set()
        while name not in nodes and name in merged and name not in seen:
            seen.add(name)
            name = merged[name]
        n = nodes.get(name)
        if n is None:
            raise QDeployError(_unknown(g, req, model))
        if n.op not in KEEPABLE:
            what = (f"it was folded into {n.op} '{n.name}', which" if name != req else
                    f"node '{n.name}' ({n.op})")
            raise QDeployError(f"{OPTION} {req}: {what} cannot be kept in float: only Conv, ConvTranspose and "
                               "Gemm layers can (their float weights are what it keeps; any other node's output "
                               "is quantized at the same scale either way)")
        if name not in out:
            out.append(name)
    return out


def grouped(g: Graph) -> list[str]:
    """The Conv nodes of the pass-processed ``g`` that ``float_grouped`` keeps in
    float: group > 1 and more than one input channel per group (not depthwise)."""
    return [n.name for n in g.nodes if n.op == "Conv" and int(n.attrs.get("group", 1)) > 1
            and np.shape(g.const(n.inputs[1]))[1] > 1]


def _unknown(g: Graph, req: str, model) -> str:
    for i in g.inputs:
        if req in (f"{i}_quantize", i):
            return (f"{OPTION} {req}: that is the graph input '{i}' and its quantization, not a layer; "
                    "the input is quantized once in any case (name a Conv, ConvTranspose or Gemm node)")
    for o in g.outputs:
        if req in (f"{o}_dequantize", o):
            return (f"{OPTION} {req}: that is the graph output '{o}' and its dequantization, not a layer "
                    "(name the Conv, ConvTranspose or Gemm node that computes it)")
    op = _onnx_op(model, req)
    if op is not None:
        return (f"{OPTION} {req}: node '{req}' ({op}) of the model does not run after import and the passes "
                "(a constant computation or a rewritten pattern): nothing of it is left to keep in float; "
                "see `qdeploy inspect MODEL` for the layers")
    return (f"{OPTION} {req}: model '{g.name}' has no node named '{req}'; `qdeploy inspect MODEL` lists its "
            "layers (the report's layer table uses the same names)")


def _onnx_op(model, name: str) -> str | None:
    """The op of node ``name`` in the ONNX file as given (None: no such node)."""
    if model is None:
        return None
    try:
        import onnx
        m = onnx.load(str(model), load_external_data=False)
    except Exception:
        return None
    return next((n.op_type for n in m.graph.node if n.name == name), None)


def prepare(ctx, n: Node) -> None:
    """The quantizer's handler for a node kept in float: a ``Float`` QNode reading
    the int input, the float weights and bias (float32 constants, in the layout of
    the int op it stands for) and writing the int output at its own parameters."""
    g = ctx.g
    x, y = n.inputs[0], n.outputs[0]
    W, B, attrs = float_layer(g, n)
    has_bias = len(n.inputs) > 2 and n.inputs[2]
    w = _const(ctx.qt, ctx.unique(n.inputs[1] + "_float"), W)
    b = _const(ctx.qt, ctx.unique((n.inputs[2] if has_bias else n.name + "_bias") + "_float"), B)
    lo, hi = ctx.act_range(y, n.attrs.get("q_clamp"))
    ctx.emit("Float", n, [x, w, b], [y], {"op": KEEPABLE[n.op], **attrs},
             {"requant": "float32", "act_min": lo, "act_max": hi})


def float_layer(g: Graph, n: Node) -> tuple[np.ndarray, np.ndarray, dict]:
    """(float32 weights in the int op's layout, float32 bias [C_out], the int op's attrs)."""
    from .prepare import conv_geometry, output_channel_first, transpose_conv_geometry
    W = np.asarray(g.const(n.inputs[1]), np.float32)
    if n.op == "Conv":
        attrs = conv_geometry(g, n)
    elif n.op == "ConvTranspose":
        attrs = dict(transpose_conv_geometry(g, n), group=int(n.attrs.get("group", 1)))
        W = output_channel_first(W, attrs["group"])
    else:
        attrs = {}
    has_bias = len(n.inputs) > 2 and n.inputs[2]
    B = np.asarray(g.const(n.inputs[2]), np.float32).reshape(-1) if has_bias else np.zeros(1, np.float32)
    return W, np.broadcast_to(B, (W.shape[0],)).copy(), attrs


def _const(qt: dict, name: str, data: np.ndarray) -> str:
    qt[name] = QTensor(name, tuple(data.shape), "float32", data=np.ascontiguousarray(data))
    return name


def local_in_float(g: Graph, qg, nodes: list[str], x: np.ndarray) -> dict[str, tuple[float, float]]:
    """``{node: (layer-local SQNR in dB as it is, kept in float)}`` for each QGraph node
    of ``nodes`` (a Conv2D / TransposeConv2D / FullyConnected; nodes without a float
    counterpart are left out), on samples ``x``: the float graph's input of the layer
    quantized with its parameters, each variant run alone, its output against the float
    graph's (``quant/error.py``'s layer-local measure). What ``--keep-float`` buys at
    that layer (its weights, bias and requantisation; the input and output stay int8).
    One float-graph run over ``x`` serves every node."""
    from dataclasses import replace
    from ..float_run import run_samples
    from .error import dequantize, sqnr_db
    from .interpreter import run_node
    from .qgraph import QNode
    names = qg.metadata.get("float_names", {})
    layers = {}
    for node in nodes:
        qn = next((q for q in qg.nodes if q.name == node and q.op in KEEPABLE.values()), None)
        fn = next((n for n in g.nodes if n.name == node and n.op in KEEPABLE), None)
        if qn is None or fn is None:
            continue
        fin, fout = names.get(qn.inputs[0], qn.inputs[0]), names.get(qn.outputs[0], qn.outputs[0])
        if fin in g.tensors and fout in g.tensors:
            layers[node] = (qn, fn, fin, fout)
    if not layers:
        return {}
    x = np.asarray(x, np.float32)
    vals = run_samples(g, x, expose=sorted({t for *_, fin, fout in layers.values() for t in (fin, fout)}
                                           - set(g.inputs)))
    vals[g.inputs[0]] = x
    out = {}
    for node, (qn, fn, fin, fout) in layers.items():
        xin = run_node(qg, QNode("Quantize", "local_quantize", [fin], [qn.inputs[0]]), [vals[fin]])[0]
        W, B, attrs = float_layer(g, fn)
        tensors = dict(qg.tensors)
        w, b = _const(tensors, node + "__float_w", W), _const(tensors, node + "__float_b", B)
        fq = QNode("Float", node, [qn.inputs[0], w, b], list(qn.outputs), {"op": qn.op, **attrs},
                   {"requant": "float32", "act_min": qn.params["act_min"], "act_max": qn.params["act_max"]})
        ref = vals[fout]
        as_is = run_node(qg, qn, [xin, None, None])[0]
        kept = run_node(replace(qg, tensors=tensors), fq, [xin, None, None])[0]
        out[node] = (sqnr_db(ref, dequantize(qg, qn.outputs[0], as_is)),
                     sqnr_db(ref, dequantize(qg, qn.outputs[0], kept)))
    return out


def float_nodes(qg) -> list[dict]:
    """The QGraph's layers kept in float: node name, the op it stands for and
    ``by``: "--keep-float" (named) or "float_grouped" (the target's rule)."""
    rule = set(qg.metadata.get("float_grouped", ()))
    return [{"node": n.name, "op": n.attrs["op"], "by": "float_grouped" if n.name in rule else OPTION}
            for n in qg.nodes if n.op == "Float"]
