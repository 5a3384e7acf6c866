"""One-op (or few-op) models through the whole quantization pipeline.

``pipeline(model, x, target)`` imports the ONNX model, runs the passes, takes
min/max ranges of every activation straight from onnxruntime on ``x`` (a
calibration set of its own, independent of qdeploy's calibration package),
quantizes, and returns (float graph, qgraph).
"""
from __future__ import annotations

import numpy as np

from qdeploy.float_run import run_samples
from qdeploy.ir import Graph
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes
from qdeploy.quant.quantizer import quantize_graph


def minmax_ranges(g: Graph, x: dict) -> dict:
    vals = run_samples(g, x, expose=[t for t in g.activations() if t not in g.inputs])
    vals.update(x)
    return {t: (float(vals[t].min()), float(vals[t].max())) for t in g.activations()}


def pipeline(m, x: dict, target="arm", per_tensor=False, ranges=None):
    g = run_passes(import_onnx(m))
    r = ranges if ranges is not None else minmax_ranges(g, x)
    return g, quantize_graph(g, r, target, per_tensor=per_tensor)


def lsb_check(qg, g, x, tol_lsb=2.0, frac=0.99):
    """Dequantized interpreter outputs within ``tol_lsb`` output LSB of the float
    onnxruntime result on at least ``frac`` of the elements (accuracy sanity)."""
    from qdeploy.quant.interpreter import run
    got = run(qg, x)
    ref = run_samples(g, x)
    for o in g.outputs:
        s = qg.tensors[o + "_q"].s
        err = np.abs(got[o] - ref[o]) / s
        assert np.mean(err <= tol_lsb) >= frac, f"{o}: max err {err.max():.2f} LSB, mean {err.mean():.3f}"
        assert err.max() <= 4 * tol_lsb + 1, f"{o}: max err {err.max():.2f} LSB"
    return got, ref
