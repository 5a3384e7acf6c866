"""Peak memory of ``qdeploy calib ranges`` and ``qdeploy quantize`` vs the size of SET.npz.

    python bench/rss_calib_set.py [--model mobilenet_v2] [--size 224] [--counts 20,2000] [--write]

For each count a calibration set of that many 3 x SIZE x SIZE samples (the
deterministic image-like samples of bench/calibration.py) is written as qdeploy
writes sets (an uncompressed .npz; here streamed to disk so the bench itself
never holds it), then each command runs in its own process under
``/usr/bin/time -v`` and its "Maximum resident set size" is read (``--repeats``
runs, the median kept: the same command moves by about 10 % between runs). The commands
read the set a batch at a time (qdeploy/calibration/stream.py), so peak RSS
should not depend on the count (issue 10: 2000 vs 20 samples within 10 %).
``quantize`` runs with its defaults (minmax, automatic CLE, output widening).
Not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench.results import write_section  # noqa: E402

from calibration import sample  # noqa: E402  (the same samples as the calibration bench)


def write_set(path: Path, count: int, size: int) -> None:
    """A qdeploy calibration set written row by row (never whole in memory)."""
    from qdeploy.calibration.recipe import tensor_recipe
    from qdeploy.fsutil import dumps_json
    import io
    recipe = tensor_recipe(sample_shape=(3, size, size), layout="nchw",
                           sources=[{"name": f"bench_{count}.npy", "sha256": "0" * 64, "count": count}],
                           limit=None, seed=0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        r = io.BytesIO()
        np.lib.format.write_array(r, np.array([dumps_json(recipe)]), allow_pickle=False)
        z.writestr("recipe.npy", r.getvalue())
        with z.open("x.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                    "shape": (count, 3, size, size)})
            for i in range(count):
                f.write(sample(i, size).tobytes())


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak RSS MiB, wall s) of ``qdeploy ARGS`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", "from qdeploy.cli import main; main()", *args]
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    # 1: quantize's FAIL verdict (random weights), everything written; not a crash's traceback
    if p.returncode not in (0, 1) or "Traceback" in p.stderr or "error:" in p.stderr:
        raise SystemExit(f"{' '.join(args)} failed:\n{p.stderr[-2000:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return kb / 1024, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--counts", default="20,2000")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of each command per count; the table gives medians (RSS moves by ~10 %% between runs)")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    from qdeploy.corpus import build
    from qdeploy.fsutil import write_bytes
    counts = [int(c) for c in a.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        model = d / f"{a.model}.onnx"
        m = build(a.model)   # corpus nets are small (64x64); convolution nets take any size
        for dim, v in zip(m.graph.input[0].type.tensor_type.shape.dim, [1, 3, a.size, a.size]):
            dim.Clear()
            dim.dim_value = v
        del m.graph.value_info[:]
        write_bytes(model, m.SerializeToString())
        for n in counts:
            s = d / f"set{n}.npz"
            write_set(s, n, a.size)
            mib = s.stat().st_size / 2**20
            runs = [(peak_rss(["calib", "ranges", str(model), str(s), "-o", str(d / f"r{n}_{k}.json"), "-q"]),
                     peak_rss(["quantize", str(model), "--calib", str(s), "-o", str(d / f"out{n}_{k}"), "-q"]))
                    for k in range(a.repeats)]
            cr, qz = (tuple(float(np.median([r[j][i] for r in runs])) for i in range(2)) for j in range(2))
            print(f"  {n} samples, each run (MiB): calib ranges "
                  f"{', '.join(f'{r[0][0]:.0f}' for r in runs)}; quantize {', '.join(f'{r[1][0]:.0f}' for r in runs)}",
                  flush=True)
            rows.append((n, mib, cr, qz))
            print(f"{n} samples ({mib:.0f} MiB): calib ranges {cr[0]:.0f} MiB {cr[1]:.1f} s; "
                  f"quantize {qz[0]:.0f} MiB {qz[1]:.1f} s", flush=True)
            s.unlink()
    base = rows[0]
    lines = ["| samples | SET.npz MiB | calib ranges peak RSS MiB | wall s | quantize peak RSS MiB | wall s |",
             "|---|---|---|---|---|---|"]
    for n, mib, cr, qz in rows:
        lines.append(f"| {n} | {mib:.0f} | {cr[0]:.0f} | {cr[1]:.1f} | {qz[0]:.0f} | {qz[1]:.1f} |")
    growth = [(f"calib ranges {rows[-1][0]} vs {base[0]}", rows[-1][2][0] / base[2][0] - 1),
              (f"quantize {rows[-1][0]} vs {base[0]}", rows[-1][3][0] / base[3][0] - 1)]
    text = "\n".join(lines) + "\n\nPeak RSS growth: " + "; ".join(f"{k} {v:+.1%}" for k, v in growth)
    print(text)
    if a.write:
        import onnxruntime
        head = (f"Command: `python bench/rss_calib_set.py --model {a.model} --size {a.size} --counts {a.counts} "
                f"--repeats {a.repeats}` (medians of the runs)\n\n"
                f"Machine: nproc {os.cpu_count()}, Python {platform.python_version()}, numpy {np.__version__}, "
                f"onnxruntime {onnxruntime.__version__}; date {time.strftime('%Y-%m-%d')}\n\n")
        write_section("Streamed calibration input", head + text + "\n")


if __name__ == "__main__":
    main()
