"""End-to-end wall time of ``qdeploy quantize`` against onnxruntime's ``quantize_static``.

    python bench/e2e_time.py [--models digits,mobilenet_v2,resnet] [--calib 64] [--write]

Per model, the same calibration samples (bench/sqnr.py's data: the digits example's
calib.npz, or the bundled photographs for corpus models), each tool timed in-process
after a warm-up import, 1 thread (OMP/onnxruntime), median of ``--repeats``:

* ``qdeploy all`` — ``qdeploy quantize --target arm`` as the CLI runs it
  (pipeline.quantize_model with verify + report): import, passes, CLE, calibration,
  quantization, every artefact of the target (QDQ, TFLite, C when emitted), then every
  artefact's backends verified against the reference interpreter and the report
  (metrics vs the original model, per-layer SQNR, plots) on the held-out samples;
* ``qdeploy no verify`` — the same with ``--no-verify`` and without the report;
* ``ort quantize_static`` — onnxruntime's QDQ only (quant_pre_process + MinMax
  calibration + per-channel QDQ), bench/sqnr.py's ort_quantize.

``--write`` replaces the "End-to-end quantize time" section of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _time(fn, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
    return statistics.median(walls)


def measure(name: str, calib: int, repeats: int) -> dict:
    import numpy as np
    import onnx

    import sqnr
    from qdeploy.pipeline import QuantizeOptions, quantize_model
    model = sqnr.models()[name]
    x, _, _ = sqnr.datasets(name, model, 0)
    x = np.ascontiguousarray(x[:calib], np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        src, cal = Path(tmp) / f"{name}.onnx", Path(tmp) / "calib.npy"
        onnx.save(model, str(src))
        np.save(cal, x)

        def ours(full: bool):
            return lambda: quantize_model(src, Path(tmp) / "out", QuantizeOptions(
                target="arm", calib=str(cal), verify=full, report=full, progress=False))
        ours(True)()    # warm-up: imports, onnxruntime/TFLite first sessions
        res = quantize_model(src, Path(tmp) / "out", QuantizeOptions(target="arm", calib=str(cal), verify=True,
                                                                    report=True, progress=False))
        row = {"model": name, "samples": len(x), "artefacts": ", ".join(sorted(res.emitted)) or "-",
               "verified": ", ".join(f"{v['backend']}: {v['status']}" for v in res.report["verification"]) or "-",
               "all": _time(ours(True), repeats), "no_verify": _time(ours(False), repeats),
               "ort": _time(lambda: sqnr.ort_quantize(model, x, "MinMax", "QUInt8"), repeats)}
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | calib samples | qdeploy all s | qdeploy no verify s | ort quantize_static s | "
             "all / ort | artefacts | verification |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['samples']} | {r['all']:.1f} | {r['no_verify']:.1f} | {r['ort']:.1f} | "
                     f"{r['all'] / r['ort']:.1f}x | {r['artefacts']} | {r['verified']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,mobilenet_v2,resnet")
    ap.add_argument("--calib", type=int, default=64, help="calibration samples (default 64)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update the section of bench/RESULTS.md")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    for name in a.models.split(","):
        rows.append(measure(name, a.calib, a.repeats))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    if a.write:
        import onnxruntime
        from bench.results import write_section
        head = (f"Command: `python bench/e2e_time.py --models {a.models} --calib {a.calib} --repeats {a.repeats}` "
                f"(date {time.strftime('%Y-%m-%d')}, {platform.machine()}, nproc {os.cpu_count()}, onnxruntime "
                f"{onnxruntime.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, median of "
                f"{a.repeats}). `qdeploy all` = `qdeploy quantize --target arm` end to end: every artefact of "
                "the target plus their verification against the reference interpreter and the report; "
                "`ort quantize_static` = onnxruntime's QDQ model only.\n\n")
        write_section("End-to-end quantize time", head + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
