"""Regenerate every table of bench/RESULTS.md in one run, then print the end-to-end
``qdeploy quantize`` wall time next to onnxruntime's ``quantize_static``.

    python bench/run_all.py [--quick] [--only sqnr,calibration,...]

Each bench runs in its own process with the command its RESULTS.md section names and
``--write`` (so every section is rewritten by the script that owns it; see
bench/README.md). ``--quick`` runs each on a small subset (a smoke run: its sections
then hold smoke numbers, so do not commit them). Benches whose inputs are missing
(the real models of QDEPLOY_REALMODELS) run without them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# bench -> (full arguments, --quick arguments); the full ones are the commands in RESULTS.md
BENCHES = {
    "sqnr": (["--draws", "3", "--jitter", "mobilenet_v2,resnet", "--recovery", "mobilenet_v2,digits"],
             ["--models", "digits,squeezenet", "--draws", "1", "--jitter", "", "--recovery", "digits"]),
    "calibration": (["--model", "mobilenet_v2", "--size", "224", "--counts", "100,500", "--repeats", "3"],
                    ["--counts", "20,40", "--repeats", "1"]),
    "rss_calib_set": (["--model", "mobilenet_v2", "--size", "224", "--counts", "20,2000"],
                      ["--size", "64", "--counts", "20,100"]),
    "tflite_size": (["--real"] if os.environ.get("QDEPLOY_REALMODELS") else [],
                    ["--models", "mobilenet_v2,resnet", "--runs", "5"]),
    "qdq_speed": (["--real", "--runs", "20"] if os.environ.get("QDEPLOY_REALMODELS") else ["--runs", "20"],
                  ["--models", "mobilenet_v2,resnet", "--runs", "5", "--repeats", "1"]),
    "qdq_exact_speed": (["--runs", "20"], ["--models", "mobilenet_v2,seg_head", "--runs", "5", "--repeats", "1"]),
    "c_bundle": (["--repeats", "20"], ["--models", "mobilenet_v1,resnet", "--repeats", "5"]),
    "c_firmware": (["--samples", "4"], ["--models", "mobilenet_v1", "--samples", "1"]),
    "keep_float": ([] if os.environ.get("QDEPLOY_REALMODELS") else ["--models", "outlier,digits"],
                   ["--models", "outlier,digits", "--runs", "5"]),
    "e2e_time": (["--models", "digits,mobilenet_v2,resnet", "--calib", "64", "--repeats", "3"],
                 ["--models", "digits", "--repeats", "1"]),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subsets (smoke run)")
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated benches to run")
    a = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    failed, walls = [], {}
    for name in a.only.split(","):
        full, quick = BENCHES[name]
        cmd = [sys.executable, str(ROOT / "bench" / f"{name}.py"), *(quick if a.quick else full), "--write"]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        walls[name] = time.perf_counter() - t
        if r.returncode != 0:
            failed.append(name)
            print(r.stderr[-3000:], flush=True)
        else:
            print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "(no output)", flush=True)
        if name == "e2e_time" and r.returncode == 0:
            print("\nEnd-to-end `qdeploy quantize` (all artefacts + verification + report) vs onnxruntime "
                  "quantize_static (QDQ only):")
            lines = r.stdout.splitlines()
            start = max(i for i, line in enumerate(lines) if line.startswith("| model"))
            print("\n".join(line for line in lines[start:] if line.startswith("|")))
    print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items()))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
