"""What ``quantize --target ort --keep-float NODE`` buys and costs: output SQNR and latency.

    OMP_NUM_THREADS=1 python bench/keep_float.py [--models outlier,digits,ppocr_v5_cls,ppocr_v5_det] [--runs 30] [--write]

Per model: ``quantize_model`` on the ``ort`` target with verification and report (as
``qdeploy quantize`` runs it), then again with ``--keep-float`` of the layer the report
names: the node of its ``--keep-float`` advice when it gives one, else the worst
conv/FC layer of its layer table (lowest layer-local SQNR). Columns: that layer, its
layer-local SQNR as int8 and in float (report.json ``layers``), the output SQNR of the
QDQ model against the original model on the evaluation set (report.json ``metrics``),
the QDQ-vs-reference verification status, the float layer's own agreement (onnxruntime's
float op fed the reference's integers vs the reference interpreter's ``Float`` node, on 4
evaluation samples: ``qdeploy.emit.qdq_compare.per_op``), and onnxruntime's latency (1 thread, batch 1,
default optimisations; the sessions run interleaved ``--runs`` rounds after 3 warm-ups,
the smallest of 3 such medians, ms) of the float model and of both QDQ models.

Data: outlier: tests/test_keep_float.py's model whose conv2 weights dominate its error
(the case the option is for), on the bundled photographs (a held-out 20 % evaluated).
digits: examples/digits calib.npz / eval.npz (450 labelled samples, top-1 accuracy
added). The trained models of ../shared/realmodels (``QDEPLOY_REALMODELS``): bench/sqnr_real.py's
draw 0 (random crops of the bundled photos, preprocessed as each model's package does;
calibration and evaluation photos apart); ppocr_v5_det on its logits (sqnr_real.py ``CUTS``).
``--write`` replaces the "Keep a layer in float" section of bench/RESULTS.md. Not part
of the test suite.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import write_section  # noqa: E402

WEIGHTED = ("Conv2D", "FullyConnected", "TransposeConv2D")


def inputs(name: str, d: Path) -> tuple[Path, Path | None, Path | None, Path | None]:
    """(model, calibration .npy/.npz, evaluation .npz, labels or None) for ``name``
    (None: the bundled photographs, a held-out 20 % evaluated)."""
    if name == "outlier":
        from tests.test_keep_float import outlier_model
        outlier_model(d / "outlier.onnx")
        return d / "outlier.onnx", None, None, None
    if name == "digits":
        ex = ROOT / "examples" / "digits"
        return ex / "digits_cnn.onnx", ex / "calib.npz", ex / "eval.npz", None
    from sqnr_real import data, load
    model = d / f"{name}.onnx"
    onnx.save(load(name), str(model))
    cal, ev = data(name, 0)
    np.save(d / f"{name}_cal.npy", cal)
    np.savez(d / f"{name}_eval.npz", x=ev)
    return model, d / f"{name}_cal.npy", d / f"{name}_eval.npz", None


def quantize(model: Path, calib: Path, ev: Path, out: Path, keep=()) -> dict:
    from qdeploy.pipeline import QuantizeOptions, quantize_model
    t = time.time()
    res = quantize_model(model, out, QuantizeOptions(target="ort", calib=calib and str(calib), eval=ev and str(ev),
                                                     keep_float=keep, verify=True, report=True, progress=False))
    rep = res.report
    rep["_seconds"] = time.time() - t
    rep["_input_shape"] = list(res.graph.shape(res.graph.inputs[0])[1:])
    return rep


def chosen(rep: dict) -> tuple[str, str]:
    """(node, how it was chosen) from the report."""
    for a in rep["advice"]:
        if a["option"].startswith("--keep-float"):
            return a["option"].split(" ", 1)[1], "advice"
    rows = sorted((r for r in rep["layers"] if r["op"] in WEIGHTED and r["local_sqnr_db"] is not None),
                  key=lambda r: r["local_sqnr_db"])
    return rows[0]["node"], "worst conv/FC"


def latency(paths: list[Path], runs: int, x: np.ndarray, repeats: int = 3) -> list[float]:
    """Per model, the smallest of ``repeats`` medians of ``runs`` interleaved runs (ms)."""
    return list(np.min([_medians(paths, runs, x) for _ in range(repeats)], axis=0))


def _medians(paths: list[Path], runs: int, x: np.ndarray) -> list[float]:
    import onnxruntime as ort
    sessions = []
    for p in paths:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        s = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        sessions.append((s, s.get_inputs()[0].name))
    feed = np.ascontiguousarray(x[:1], np.float32)
    times: list[list[float]] = [[] for _ in sessions]
    for k in range(runs + 3):
        for i, (s, name) in enumerate(sessions):
            t = time.perf_counter()
            s.run(None, {name: feed})
            if k >= 3:
                times[i].append(1000 * (time.perf_counter() - t))
    return [float(np.median(t)) for t in times]


def float_layer_agreement(out: Path, x: np.ndarray):
    """onnxruntime's float layer against the reference's ``Float`` node, fed the reference's
    integers (qdq_compare.per_op)."""
    from qdeploy.emit.qdq_compare import per_op
    from qdeploy.quant.qgraph import load_qgraph
    qg = load_qgraph(out / "model.qgraph")
    diffs = per_op(qg, onnx.load(str(out / "model.qdq.onnx")), {qg.inputs[0]: x})
    return next(d for d in diffs if d.op == "Float")


def sqnr(rep: dict, backend: str = "qdq") -> float:
    return min(o["sqnr_db"] for o in rep["metrics"][backend]["outputs"].values())


def local(rep: dict, node: str) -> float:
    return next(r["local_sqnr_db"] for r in rep["layers"] if r["node"] == node)


def measure(name: str, runs: int, log) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model, calib, ev, _ = inputs(name, d)
        base = quantize(model, calib, ev, d / "int8")
        node, how = chosen(base)
        kept = quantize(model, calib, ev, d / "kept", keep=(node,))
        x = np.load(ev)["x"] if ev else np.random.default_rng(0).normal(0, 1, [4] + base["_input_shape"])
        x = np.asarray(x, np.float32)
        island = float_layer_agreement(d / "kept", x[:4])
        ms = latency([model, d / "int8" / "model.qdq.onnx", d / "kept" / "model.qdq.onnx"], runs, x)
        row = {"model": name, "node": node, "how": how, "worst_layers": base["worst_layers"],
               "local_int8": local(base, node), "local_float": local(kept, node),
               "sqnr_int8": sqnr(base), "sqnr_float": sqnr(kept),
               "verify_int8": base["verification"][0]["status"], "verify_float": kept["verification"][0]["status"],
               "ms_float": ms[0], "ms_int8": ms[1], "ms_kept": ms[2], "samples": base["eval"]["samples"],
               "island_exact_pct": island.frac_exact * 100, "island_max_lsb": island.max,
               "acc": {k: r["metrics"]["qdq"].get("accuracy") for k, r in (("int8", base), ("kept", kept))}}
        log(json.dumps(row))
        return row


def table(rows: list[dict], argv: str) -> str:
    lines = [f"`{argv}` (onnxruntime {__import__('onnxruntime').__version__}, 1 thread, batch 1)", "",
             "| model | layer kept in float (chosen by) | layer-local SQNR int8 -> float | output SQNR int8 -> "
             "float (QDQ vs original) | QDQ vs reference (int8 / with the float layer) | the float layer on "
             "onnxruntime vs the reference's, per op | latency float / int8 / int8 + float layer (ms) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = ""
        if r["acc"]["int8"] is not None:
            acc = f"; top-1 {r['acc']['int8']:.2f} -> {r['acc']['kept']:.2f} %"
        lines.append(f"| {r['model']} ({r['samples']} eval samples) | `{r['node']}` ({r['how']}) | "
                     f"{r['local_int8']:.1f} -> {r['local_float']:.1f} dB | {r['sqnr_int8']:.1f} -> "
                     f"{r['sqnr_float']:.1f} dB{acc} | {r['verify_int8']} / {r['verify_float']} | "
                     f"{r['island_exact_pct']:.4f} % exact, max {r['island_max_lsb']} LSB | "
                     f"{r['ms_float']:.3g} / {r['ms_int8']:.3g} / {r['ms_kept']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="outlier,digits,ppocr_v5_cls,ppocr_v5_det")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    rows = [measure(m, a.runs, lambda s: print(s, flush=True)) for m in a.models.split(",")]
    body = table(rows, "python bench/keep_float.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    print(body)
    if a.write:
        write_section("Keep a layer in float", body)


if __name__ == "__main__":
    main()
