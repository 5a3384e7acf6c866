"""How much the float model itself amplifies small errors: its outputs under input noise.

Some trained models turn a tiny perturbation into a large output change (PP-OCRv5's text
recognizer backbone: Gaussian noise 40 dB below its input leaves about 2 dB of SQNR at the
backbone's output, bench/RESULTS.md "ppocr_v5_rec_cnn under int8"). Such a model cannot
come out of int8 with a good SQNR whatever the calibration: rounding adds errors of that
size at every layer. The per-layer table does not show it (every layer's own error is
small; the accumulated one grows from the first layers on), so the report measures it
directly, on the float model alone:

the original model runs on the evaluation samples plus seeded Gaussian noise whose power
is that of rounding to the quantized input's grid (standard deviation ``scale / sqrt(12)``,
``scale`` = the input's int8 step); ``output_sqnr_db`` is the worst output's SQNR against
the clean run. On the test corpus and on the trained models of bench/sqnr_real.py this is
30-59 dB; on the recognizer's CNN, 2.4 dB. Below ``SENSITIVE_DB`` the summary and the HTML
report say so, naming the first layer whose accumulated SQNR falls below ``SENSITIVE_DB``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SENSITIVE_DB = 20.0
SEED = 0


def input_step(qg) -> float | None:
    """The int8 step of the quantized graph's input (its Quantize node's output scale)."""
    for n in qg.nodes:
        if n.op == "Quantize" and n.inputs and n.inputs[0] == qg.inputs[0]:
            return float(qg.tensors[n.outputs[0]].s)
    return None


def input_noise(model: Path, x: np.ndarray, names: list[str], step: float, clean: dict | None = None) -> dict:
    """``{"noise_std", "input_sqnr_db", "output_sqnr_db"}`` of the original ``model`` on ``x``
    plus Gaussian noise of standard deviation ``step / sqrt(12)`` (seeded: same inputs, same
    numbers). ``clean``: the model's outputs on ``x`` when the caller has them."""
    from ..quant.error import sqnr_db
    from .measure import run_original
    std = step / np.sqrt(12.0)
    noise = np.random.default_rng(SEED).standard_normal(x.shape) * std
    noisy = run_original(model, (x + noise).astype(np.float32), names)
    clean = clean if clean is not None else run_original(model, x, names)
    worst = min(sqnr_db(clean[n][:len(x)], noisy[n]) for n in names)
    return {"noise_std": float(std), "input_sqnr_db": _num(sqnr_db(x, x + noise)), "output_sqnr_db": _num(worst)}


def first_below(layers: list[dict], db: float = SENSITIVE_DB) -> str | None:
    """The first layer (node name) whose accumulated SQNR is below ``db``."""
    return next((r["node"] for r in layers if r.get("sqnr_db") is not None and r["sqnr_db"] < db), None)


def note(sens: dict | None) -> str | None:
    """The sentence the summary and the HTML report print, or None for a model that is not sensitive."""
    if not sens or sens.get("output_sqnr_db") is None or sens["output_sqnr_db"] >= SENSITIVE_DB:
        return None
    where = f"; the accumulated SQNR falls below {SENSITIVE_DB:.0f} dB at '{sens['first_below']}'" \
        if sens.get("first_below") else ""
    return (f"the float model amplifies small errors: random noise as large as rounding its input to int8 "
            f"({sens['input_sqnr_db']:.1f} dB below the input) leaves {sens['output_sqnr_db']:.1f} dB output SQNR "
            f"on the original model, before any quantization; int8 adds errors of that size at every layer, so "
            f"no calibration method or option reaches much more{where}")


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)
