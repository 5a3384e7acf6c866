"""One-op (or few-op) models through the whole quantization pipeline.

``pipeline(model, x, target)`` imports the ONNX model, runs the passes, takes
min/max ranges of every activation straight from onnxruntime on ``x`` (a
calibration set of its own, independent of qdeploy's calibration package),
quantizes, and returns (float graph, qgraph).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qdeploy.float_run import run_float
from qdeploy.ir import Graph
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes
from qdeploy.quant.quantizer import quantize_graph


def model(nodes, inputs: dict, outputs: list[str], inits: dict | None = None, opset: int = 13):
    g = helper.make_graph(
        nodes, "t",
        [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def minmax_ranges(g: Graph, x: dict) -> dict:
    acts = [t for t in g.activations() if t not in g.inputs]
    n = len(next(iter(x.values())))
    runs = [run_float(g, {k: v[i:i + 1] for k, v in x.items()}, expose=acts) for i in range(n)]
    vals = {t: np.stack([r[t] for r in runs]) for t in acts}
    vals.update(x)
    return {t: (float(vals[t].min()), float(vals[t].max())) for t in g.activations()}


def pipeline(m, x: dict, target="arm", per_tensor=False, ranges=None):
    g = run_passes(import_onnx(m))
    r = ranges if ranges is not None else minmax_ranges(g, x)
    return g, quantize_graph(g, r, target, per_tensor=per_tensor)


def float_batch(g: Graph, x: dict) -> dict:
    """The float graph (batch 1) on onnxruntime, sample by sample, stacked."""
    n = len(next(iter(x.values())))
    outs = [run_float(g, {k: v[i:i + 1] for k, v in x.items()}) for i in range(n)]
    return {o: np.concatenate([r[o] for r in outs]) for o in g.outputs}


def lsb_check(qg, g, x, tol_lsb=2.0, frac=0.99):
    """Dequantized interpreter outputs within ``tol_lsb`` output LSB of the float
    onnxruntime result on at least ``frac`` of the elements (accuracy sanity)."""
    from qdeploy.quant.interpreter import run
    got = run(qg, x)
    ref = float_batch(g, x)
    for o in g.outputs:
        s = qg.tensors[o + "_q"].s
        err = np.abs(got[o] - ref[o]) / s
        assert np.mean(err <= tol_lsb) >= frac, f"{o}: max err {err.max():.2f} LSB, mean {err.mean():.3f}"
        assert err.max() <= 4 * tol_lsb + 1, f"{o}: max err {err.max():.2f} LSB"
    return got, ref
