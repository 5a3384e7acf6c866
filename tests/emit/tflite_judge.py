"""The TFLite judges: a QGraph (or one of its nodes) as a TFLite file, run on
TFLite Micro (reference kernels: bit-exact with the reference interpreter) and
on LiteRT (XNNPACK: within 1 LSB).

``node_graph(qg, node)`` is the QGraph fragment of one node: its non-constant
inputs become int8 graph inputs, its outputs the graph outputs, so
``qdeploy.emit.tflite.build`` writes it as a (one-op, or the op's exact
composition) TFLite model that TFLite's Prepare recomputes from the float
scales. ``judge_nodes`` runs every node of a QGraph that way on the reference
interpreter's own integer inputs for that node.
"""
from __future__ import annotations

import numpy as np
import pytest

from qdeploy.emit.tflite import build
from qdeploy.emit.tflite.runners import litert_invoker, run_int
from qdeploy.quant.interpreter import quantize_inputs, run_int as ref_run_int
from qdeploy.quant.qgraph import QGraph

tflite_micro = pytest.importorskip("tflite_micro")


def node_graph(qg: QGraph, node) -> QGraph:
    names = list(dict.fromkeys(node.inputs + node.outputs))
    ins = [i for i in dict.fromkeys(node.inputs) if not qg.tensors[i].is_const]
    return QGraph(f"{qg.name}:{node.name}", qg.target, qg.profile, ins, list(node.outputs),
                  {k: qg.tensors[k] for k in names}, [node])


def judge_nodes(qg: QGraph, x: dict, litert: bool = True) -> dict:
    """Every non-boundary node of ``qg`` as its own TFLite model on the
    reference's integer inputs ``x`` (float model inputs, N samples): returns
    {node name: (op, elements, TFLM mismatches, LiteRT elements > 1 LSB, LiteRT
    elements differing)}."""
    env = ref_run_int(qg, quantize_inputs(qg, x), keep=True)
    res = {}
    for n in qg.nodes:
        if n.op in ("Quantize", "Dequantize"):
            continue
        sub = node_graph(qg, n)
        blob = build(sub)
        ins = [env[i] for i in sub.inputs]
        got = run_int(blob, ins)
        want = [env[o] for o in n.outputs]
        bad = sum(int(np.sum(g.astype(np.int64) != w.astype(np.int64))) for g, w in zip(got, want))
        far = diff = 0
        if litert:
            lt = run_int(blob, ins, litert_invoker(blob))
            d = [np.abs(g.astype(np.int64) - w.astype(np.int64)) for g, w in zip(lt, want)]
            far = sum(int(np.sum(v > 1)) for v in d)
            diff = sum(int(np.sum(v > 0)) for v in d)
        res[n.name] = (n.op, sum(w.size for w in want), bad, far, diff)
    return res
