"""Where GPTQ weight rounding (``--weight-rounding gptq``, quant/gptq.py) helps and where it hurts.

    OMP_NUM_THREADS=1 python bench/weight_rounding.py [--models a,b] [--method tailclip] [--draw 0]

For each trained model of bench/sqnr_real.py (its calibration and evaluation inputs of the
draw), the model quantized for ``arm`` as ``qdeploy quantize`` does with ``--method``, then:

* **weights only**: the float graph (after the passes) with its conv / FC weights replaced by
  the dequantized integers, nearest or GPTQ, run by onnxruntime in float; SQNR of its outputs
  against the same graph with float weights (what GPTQ optimizes, layer by layer);
* **int8**: the integer reference interpreter with either set of integers, SQNR against the
  original model (what bench/sqnr_real.py measures);
* **which layers**: bisection over the layers in graph order, GPTQ integers on one half and
  nearest on the other, following the half whose GPTQ integers cost more at the output, down
  to one layer (on 4 evaluation inputs); its own int8 output SQNR with either rounding.

Not part of the test suite; bench/RESULTS.md "Weight rounding: GPTQ against nearest" holds a run.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqnr_real  # noqa: E402
from sqnr import ort_run, qdeploy_run, worst_sqnr  # noqa: E402

from qdeploy.float_run import run_samples  # noqa: E402
from qdeploy.quant import gptq  # noqa: E402
from qdeploy.quant.error import sqnr_db  # noqa: E402
from qdeploy.quant.interpreter import run  # noqa: E402

MODELS = ["ppocr_v5_rec_cnn", "ppocr_v5_rec_cnn_text", "ppocr_v5_cls", "ppocr_v5_det", "ddddocr_det"]


def _float_outputs(g, x) -> list[np.ndarray]:
    outs = run_samples(g, x)
    return [outs[k] for k in g.outputs]


def _with_weights(g, qg, layers, ints: dict):
    """The float graph with each layer's weights replaced by its dequantized integers."""
    g2 = g.copy()
    for n in layers:
        t, name = qg.tensor(n.inputs[1]), g.node(n.source[0]).inputs[1]
        s = t.scale.astype(np.float64).reshape((-1,) + (1,) * (t.data.ndim - 1))
        g2.tensors[name] = copy.copy(g2.tensors[name])
        g2.tensors[name].data = (ints[n.name].astype(np.float64) * s).astype(np.float32)
    return g2


def measure(name: str, method: str, draw: int, log) -> list[str]:
    model = sqnr_real.load(name)
    cal, ev, _ = sqnr_real.data(name, draw)
    g, qg = sqnr_real.qdeploy_quantize(model, sqnr_real.CASES[name][1], cal, method)
    layers = [n for n in qg.nodes if n.op in gptq.LAYERS]
    near = {n.name: qg.tensor(n.inputs[1]).data.copy() for n in layers}
    msg = gptq.round_weights(g, qg, cal)[0]
    log(f"{name}: {msg}")
    gp = {n.name: qg.tensor(n.inputs[1]).data.copy() for n in layers}

    def use(ints):
        for n in layers:
            qg.tensor(n.inputs[1]).data = ints[n.name]

    fref = _float_outputs(g, ev)
    wonly = {k: worst_sqnr(fref, _float_outputs(_with_weights(g, qg, layers, v), ev))
             for k, v in (("nearest", near), ("gptq", gp))}
    ref = ort_run(model.SerializeToString(), ev)
    int8 = {}
    for k, v in (("nearest", near), ("gptq", gp)):
        use(v)
        int8[k] = worst_sqnr(ref, sqnr_real.assembled(g, qdeploy_run(qg, ev)))
    log(f"{name}: weights only {wonly}, int8 {int8}")

    few, fref4 = ev[:4], [r[:4] for r in ref]
    names = [n.name for n in layers]

    def score(subset) -> float:
        use({k: (gp if k in subset else near)[k] for k in names})
        return worst_sqnr(fref4, sqnr_real.assembled(g, qdeploy_run(qg, few)))
    lo, hi = 0, len(names)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        a, b = score(set(names[lo:mid])), score(set(names[mid:hi]))
        lo, hi = (lo, mid) if a < b else (mid, hi)
    worst = names[lo]
    alone = score({worst}), score(set())
    node = next(n for n in layers if n.name == worst)
    src = g.node(node.source[0])
    local = {}
    for k, v in (("nearest", near), ("gptq", gp)):
        use({**near, worst: v[worst]})
        vals = run(qg, {qg.inputs[0]: few}, keep=True)
        t = qg.tensor(node.outputs[0])
        y = (vals[node.outputs[0]].astype(np.float64) - t.zp) * t.s
        yf = run_samples(g, few, expose=[src.outputs[0]])[src.outputs[0]]
        local[k] = sqnr_db(yf, y)
    use(near)
    return [f"| {name} | {draw} | {wonly['nearest']:.1f} | {wonly['gptq']:.1f} | {int8['nearest']:.1f} | "
            f"{int8['gptq']:.1f} | `{worst}` {list(near[worst].shape)}: {alone[1]:.1f} -> {alone[0]:.1f} | "
            f"{local['nearest']:.1f} -> {local['gptq']:.1f} |"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--method", default="tailclip", help="calibration method (as bench/sqnr_real.py's columns)")
    ap.add_argument("--draw", type=int, default=0)
    a = ap.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)   # noqa: E731
    lines = ["| model | draw | weights only: nearest | weights only: gptq | int8: nearest | int8: gptq | "
             "layer whose gptq costs most (output SQNR, 4 inputs: nearest -> gptq on it alone) | "
             "its own int8 output SQNR |", "|---|---|---|---|---|---|---|---|"]
    for name in a.models.split(","):
        lines += measure(name, a.method, a.draw, log)
        log(lines[-1])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
