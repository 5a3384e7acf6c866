"""The C bundle on the host: arena and flash bytes, and latency against TFLite Micro.

    python bench/c_bundle.py [--models a,b] [--repeats 20] [--write]

For every corpus model (arm target, bundled calib/ photographs, first 8): quantize with
``--emit c,tflite``, then

* arena: MODEL_ARENA_BYTES (activations only; the caller owns the input and output
  buffers), the planner's lower bound (largest sum of simultaneously live activation
  buffers), and TFLite Micro's arena for the same model's .tflite
  (``print_allocations``: "head" = its planned tensors, input and output included;
  "total" = head + persistent data). ``C + I/O`` adds the input and output bytes, the
  like-for-like number next to TFLM's head.
* flash: the bundle's const data (weights, biases, requantisation, tables) and the
  emitter's code estimate.
* latency: ``model_invoke`` of the bundle built by the host backend (``cc -O2``,
  qdeploy/emit/c/host.py) called through ctypes, vs ``invoke()`` of TFLite Micro's Python
  interpreter (its reference kernels) on the same int8 input; medians over ``--repeats``.
  Both include a Python call's overhead (a few microseconds).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402
from qdeploy.corpus import CORPUS, save  # noqa: E402
from qdeploy.emit.c.host import build_library  # noqa: E402
from qdeploy.pipeline import QuantizeOptions, quantize_model, read_manifest  # noqa: E402


@contextlib.contextmanager
def _stdout_to(path: Path):
    """fds 1 and 2 (TFLite Micro's C++ logging) into ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        for k, fd in enumerate(saved):
            os.dup2(fd, k + 1)
            os.close(fd)


def tflm(blob: bytes, x: np.ndarray, repeats: int, tmp: Path):
    from tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(blob, arena_size=16 << 20)
    with _stdout_to(tmp / "alloc.txt"):
        interp.print_allocations()
    text = (tmp / "alloc.txt").read_text()
    head = int(re.search(r"allocation head (\d+)", text).group(1))
    total = int(re.search(r"allocation total (\d+)", text).group(1))
    interp.set_input(x, 0)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t)
    return head, total, statistics.median(times)


def c_bundle(cdir: Path, in_bytes: int, out_bytes: int, repeats: int) -> float:
    fn = ctypes.CDLL(str(build_library(cdir))).model_invoke
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    x = np.zeros(in_bytes, np.int8)
    y = np.zeros(out_bytes, np.int8)
    fn(x.ctypes.data, y.ctypes.data)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x.ctypes.data, y.ctypes.data)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(CORPUS))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--write", action="store_true", help="replace the C bundle section of bench/RESULTS.md")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="qdeploy-bench-c-") as tmp:
        tmp = Path(tmp)
        for name in a.models.split(","):
            model = tmp / f"{name}.onnx"
            save(name, model)
            out = tmp / name
            quantize_model(model, out, QuantizeOptions(target="arm", limit=8, emit="c,tflite", progress=False))
            mem = read_manifest(out)["memory"]
            blob = (out / "model.int8.tflite").read_bytes()
            io = mem["ram_bytes"] - mem["arena_bytes"]
            in_bytes = int(re.search(rb"#define MODEL_INPUT_BYTES (\d+)", (out / "c" / "model.h").read_bytes()).group(1))
            from tflite_micro import runtime
            det = runtime.Interpreter.from_bytes(blob, arena_size=16 << 20).get_input_details(0)
            x = np.zeros(det["shape"], np.int8)
            head, total, t_tflm = tflm(blob, x, max(3, a.repeats // 4), tmp)
            t_c = c_bundle(out / "c", in_bytes, io - in_bytes, a.repeats)
            rows.append((name, mem, io, head, total, t_c, t_tflm))
            print(f"{name}: arena {mem['arena_bytes']} (bound {mem['arena_lower_bound']}), C+I/O "
                  f"{mem['arena_bytes'] + io}, TFLM head {head} total {total}; C {t_c * 1e3:.2f} ms, "
                  f"TFLM {t_tflm * 1e3:.2f} ms", flush=True)
    lines = [f"Command: `python bench/c_bundle.py --repeats {a.repeats}`  ",
             f"Date: {time.strftime('%Y-%m-%d')}; machine: {platform.machine()}, {os.cpu_count()} cores (shared with "
             "other jobs: latencies are indicative); host cc -O2", "",
             "| model | C arena B | lower bound B | arena / bound | C + I/O B | TFLM head B | TFLM total B | "
             "C + I/O / TFLM head | const data B | flash est. B | C ms | TFLM ms | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, mem, io, head, total, t_c, t_tflm in rows:
        ar, lb = mem["arena_bytes"], mem["arena_lower_bound"]
        lines.append(f"| {name} | {ar} | {lb} | {ar / max(lb, 1):.2f} | {ar + io} | {head} | {total} | "
                     f"{(ar + io) / head:.2f} | {mem['weights_bytes']} | {mem['flash_bytes']} | {t_c * 1e3:.2f} | "
                     f"{t_tflm * 1e3:.2f} | {t_tflm / t_c:.1f}x |")
    text = "\n".join(lines)
    print(text)
    if a.write:
        write_section("C bundle (host)", text)


if __name__ == "__main__":
    main()
