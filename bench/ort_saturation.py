"""onnxruntime's own uint8 x int8 QDQ models on this CPU: fused int8 kernels vs the same QDQ
model run as float ops (what its semantics say).

    OMP_NUM_THREADS=1 python bench/ort_saturation.py [--models mobilenet_v2,resnet] [--size 224]

For each corpus model at ``--size`` (bench/qdq_speed.py's ``at_size`` and inputs): onnxruntime's
``quantize_static`` (QDQ, MinMax, uint8 activations, per-channel int8 weights; bench/sqnr.py's
``ort_quantize``), run with graph optimisations on (QLinearConv/QGemm, onnxruntime's U8S8
kernels) and off (Q/DQ as float ops). On x86 CPUs without VNNI the U8S8 kernels add pairs of
products in int16 and saturate, and the two differ by far more than rounding; with VNNI they
agree within rounding. Prints the CPU's VNNI state (qdeploy.emit.qdq.saturating_cpu) and, per
model, both SQNRs against the float model and their largest difference.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from qdq_speed import at_size, corpus_inputs  # noqa: E402
from sqnr import ort_quantize, ort_run, sqnr_db  # noqa: E402


def main(argv=None) -> int:
    from qdeploy.corpus import CORPUS
    from qdeploy.emit.qdq import saturating_cpu
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet")
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args(argv)
    print(f"CPU without VNNI (uint8 x int8 kernels saturate): {saturating_cpu()}")
    print("| model | ort U8S8, fused int8 kernels (dB) | the same QDQ as float ops (dB) | max difference / output range |")
    print("|---|---:|---:|---:|")
    for name in a.models.split(","):
        m = at_size(CORPUS[name](), a.size)
        cal, ev = corpus_inputs(m)
        ref = ort_run(m.SerializeToString(), ev)[0]
        q = ort_quantize(m, cal, "MinMax", "QUInt8")
        fused, ops = ort_run(q, ev)[0], ort_run(q, ev, optimize=False)[0]
        print(f"| {name} @{a.size} | {sqnr_db(ref, fused):.1f} | {sqnr_db(ref, ops):.1f} | "
              f"{np.abs(fused - ops).max() / np.ptp(ops):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
