"""Calibration bench: qdeploy's streaming calibrator vs onnxruntime's calibrators.

    python bench/calibration.py [--model mobilenet_v2] [--size 224] [--counts 100,500] [--repeats 3] [--write]

Model: a corpus model (qdeploy.corpus) imported at 1x3xSIZExSIZE and run through
qdeploy's passes; that one float graph is exported to ONNX and given to both
tools, so both observe the same network. Data: deterministic image-like samples
(smooth low-frequency colour fields plus texture noise, ImageNet-normalised),
made on the fly from the sample index by both readers: no tool holds the set.

Each (tool, method, count, repeat) runs in its own subprocess; peak RSS is that
child's ru_maxrss (os.wait4), wall time is measured inside the child around the
calibration only (model loading and imports excluded). Reported: median over
repeats. onnxruntime runs ``create_calibrator(...).collect_data(reader)`` +
``compute_data()`` -- the calibrators ``quantize_static`` calls -- with their
default options (Entropy: 128 bins; Percentile: 2048 bins, 99.999), on the
batch-1 model one sample per run as its data reader API expects. qdeploy runs
``calibrate(graph, batches, method)`` with its default batch of 8.
Not part of the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import write_section  # noqa: E402

QD_METHODS = ["minmax", "percentile", "entropy", "mse"]
ORT_METHODS = ["MinMax", "Percentile", "Entropy"]


def sample(i: int, size: int) -> np.ndarray:
    """One deterministic image-like 3 x size x size sample (ImageNet-normalised)."""
    rng = np.random.default_rng(1000 + i)
    k = size // 14
    low = rng.uniform(0, 255, (3, 14, 14)).astype(np.float32)
    img = np.repeat(np.repeat(low, k, axis=1), k, axis=2)[:, :size, :size]
    img = img + rng.normal(0, 12, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return ((img - mean) / std).astype(np.float32)


def graph_for(model: str, size: int):
    from qdeploy.corpus import build
    from qdeploy.onnx_import import import_onnx
    from qdeploy.passes import run_passes
    m = build(model)
    # corpus models are small (e.g. 64x64); convolution nets take any size: re-declare the input
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, [1, 3, size, size]):
        d.Clear()
        d.dim_value = v
    del m.graph.value_info[:]
    return run_passes(import_onnx(m))


# ---------------------------------------------------------------- children
def child_qdeploy(model_path: str, method: str, n: int, size: int) -> dict:
    from qdeploy.calibration.calibrate import calibrate
    from qdeploy.onnx_import import import_onnx
    g = import_onnx(model_path)
    bs = 8

    def batches():
        for s in range(0, n, bs):
            yield np.stack([sample(i, size) for i in range(s, min(n, s + bs))])

    t = time.perf_counter()
    r = calibrate(g, batches(), method=method, batch_size=bs, progress=False)
    ranges = r.bounds()
    return {"wall": time.perf_counter() - t, "tensors": len(ranges)}


def child_ort(model_path: str, method: str, n: int, size: int) -> dict:
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            self.i += 1
            return {"input": sample(self.i - 1, size)[None]}

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        cal = create_calibrator(model_path, augmented_model_path=os.path.join(d, "aug.onnx"),
                                calibrate_method=getattr(CalibrationMethod, method))
        cal.collect_data(Reader())
        ranges = cal.compute_data()
        return {"wall": time.perf_counter() - t, "tensors": len(ranges.data)}


def run_child(tool: str, model_path: str, method: str, n: int, size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", tool, model_path, method, str(n), str(size)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}", "rss_mb": usage.ru_maxrss / 1024}
    res = json.loads(out.strip().splitlines()[-1])
    res["rss_mb"] = usage.ru_maxrss / 1024      # Linux: KiB
    return res


# ---------------------------------------------------------------- parent
def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    return (f"nproc {os.cpu_count()}, CPU {cpu}, Python {platform.python_version()}, numpy {np.__version__}, "
            f"onnxruntime {onnxruntime.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--counts", default="100,500")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="replace the Calibration section of bench/RESULTS.md")
    ap.add_argument("--child", nargs=5, metavar=("TOOL", "MODEL", "METHOD", "N", "SIZE"))
    a = ap.parse_args()
    if a.child:
        tool, path, method, n, size = a.child
        fn = child_qdeploy if tool == "qdeploy" else child_ort
        print(json.dumps(fn(path, method, int(n), int(size))))
        return

    from qdeploy.onnx_export import export_onnx
    import onnx
    counts = [int(c) for c in a.counts.split(",")]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"{a.model}.onnx")
        g = graph_for(a.model, a.size)
        onnx.save(export_onnx(g), path)
        acts = sum(int(np.prod(g.shape(t))) for t in g.activations())
        print(f"model {a.model} at {a.size}x{a.size}: {len(g.nodes)} nodes, {len(g.activations())} activation "
              f"tensors, {acts * 4 / 2**20:.1f} MiB of activations per sample", flush=True)
        runs = [("qdeploy", m) for m in QD_METHODS] + [("onnxruntime", m) for m in ORT_METHODS]
        results: dict = {}
        for n in counts:
            for tool, m in runs:
                rs = [run_child(tool, path, m, n, a.size) for _ in range(a.repeats)]
                ok = [r for r in rs if "error" not in r]
                key = (tool, m.lower(), n)
                results[key] = ({"wall": statistics.median(r["wall"] for r in ok),
                                 "rss_mb": statistics.median(r["rss_mb"] for r in ok)} if ok
                                else {"error": rs[0]["error"], "rss_mb": rs[0]["rss_mb"]})
                print(f"  {tool:12s} {m:10s} n={n:4d}: {results[key]}", flush=True)
    text = report(results, counts, a, machine())
    print()
    print(text)
    if a.write:
        write_section("Calibration", text)


def report(res, counts, a, mach) -> str:
    lines = [f"Command: `python bench/calibration.py --model {a.model} --size {a.size} "
             f"--counts {a.counts} --repeats {a.repeats}`", "",
             f"Machine: {mach}; date {time.strftime('%Y-%m-%d')}", "",
             "| tool | method | " + " | ".join(f"wall s @{n}" for n in counts) + " | "
             + " | ".join(f"peak RSS MiB @{n}" for n in counts) + " | RSS growth |",
             "|---|---|" + "---|" * (2 * len(counts) + 1)]
    fmt = lambda r, k: "-" if "error" in r and k == "wall" else f"{r[k]:.2f}" if k == "wall" else f"{r[k]:.0f}"
    for tool, methods in (("qdeploy", QD_METHODS), ("onnxruntime", ORT_METHODS)):
        for m in methods:
            rs = [res[(tool, m.lower(), n)] for n in counts]
            growth = f"{100 * (rs[-1]['rss_mb'] / rs[0]['rss_mb'] - 1):+.1f}%"
            lines.append(f"| {tool} | {m.lower()} | " + " | ".join(fmt(r, "wall") for r in rs) + " | "
                         + " | ".join(fmt(r, "rss_mb") for r in rs) + f" | {growth} |")
    lines += ["", "Ratios (onnxruntime / qdeploy, same method):", ""]
    for m in ("minmax", "percentile", "entropy"):
        for n in counts:
            q, o = res[("qdeploy", m, n)], res[("onnxruntime", m, n)]
            if "error" in o:
                lines.append(f"- {m} @{n}: onnxruntime failed ({o['error']}, peak RSS {o['rss_mb']:.0f} MiB)")
                continue
            lines.append(f"- {m} @{n}: time {o['wall'] / q['wall']:.1f}x, peak RSS {o['rss_mb'] / q['rss_mb']:.1f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
