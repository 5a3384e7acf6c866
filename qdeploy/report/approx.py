"""Approximation errors the integer arithmetic makes on purpose.

- **LUTs** (``Lut`` nodes: sigmoid, tanh, h-swish, SiLU, ...): over all 256 input
  integers, the table's dequantized output against the exact function of the
  dequantized input, in output LSB (0.5 is the rounding floor), and, where TFLite
  has its own integer recipe, the table against that recipe (DESIGN.md §2: at most 1).
- **Leaky-ReLU multiply + shift** (``LeakyShift`` nodes, fpga): the slope ``m / 2**s``
  against ``alpha`` (the float graph's ``q_leaky`` record, passes/leaky_shift.py).
"""
from __future__ import annotations

import numpy as np


def lut_errors(qg) -> list[dict]:
    from ..quant.recipes import luts
    rows = []
    for n in qg.nodes:
        if n.op != "Lut":
            continue
        ti, to = qg.tensors[n.inputs[0]], qg.tensors[n.outputs[0]]
        func = n.attrs.get("func")
        kw = {k: v for k, v in n.attrs.items() if k not in ("func", "source") and isinstance(v, (int, float))}
        table = np.asarray(n.params["table"]).astype(np.int64)
        info = np.iinfo(np.dtype(ti.dtype))
        q = np.arange(info.min, info.max + 1)
        row = {"node": n.name, "func": func, "source": list(n.source), "max_lsb": None, "recipe_lsb": None}
        if func in luts.FUNCTIONS:
            try:
                ideal = luts.FUNCTIONS[func](ti.s * (q - ti.zp).astype(np.float64), **kw)
                row["max_lsb"] = float(np.max(np.abs((table - to.zp) * to.s - ideal)) / to.s)
                if func in luts._RECIPES and ti.dtype == "int8":
                    row["recipe_lsb"] = luts.lut_vs_recipe_error(func, ti.s, ti.zp, to.s, to.zp, **kw)
            except (TypeError, ValueError):
                pass
        rows.append(row)
    return rows


def leaky_errors(g, qg) -> list[dict]:
    used = {s for n in qg.nodes if n.op == "LeakyShift" for s in n.source}
    rows = []
    for n in g.nodes:
        q = n.attrs.get("q_leaky") if n.op == "LeakyRelu" else None
        if q and n.name in used:
            rows.append({"node": n.name, "alpha": float(n.attrs.get("alpha", 0.01)),
                         "multiplier": q["multiplier"], "shift": q["shift"],
                         "alpha_approx": q["alpha_approx"], "abs_error": q["abs_error"],
                         "rel_error_pct": 100.0 * q["rel_error"]})
    return rows
