"""Mark every LeakyRelu with an integer multiply + shift for its slope.

In integer arithmetic a leaky ReLU's negative slope ``alpha`` becomes
``(x * m) >> s``. This pass picks ``(m, s)`` minimising ``|alpha - m / 2**s|``
for a bit budget ``b = opts.leaky_bits`` and stores on the node

    q_leaky = {"multiplier": m, "shift": s, "alpha_approx": m / 2**s,
               "abs_error": |alpha - m / 2**s|, "rel_error": abs_error / |alpha|}

The float ``alpha`` attribute is left unchanged: the float graph keeps its
exact semantics, and the quantizer decides per target whether to use the
approximation (the ``fpga`` profile does; TFLite's LEAKY_RELU has its own
Q31 recipe).

Bit budget: ``m`` is a b-bit magnitude (``0 <= |m| < 2**b``, with the sign of
alpha) and the shift is at most ``b - 1``, i.e. alpha is a b-bit number with
at most b-1 fraction bits (the shift never exceeds the multiplier's width,
so ``x * m`` of an int8 ``x`` fits in 2b bits and the rounding step is one
b-bit shifter). With b = 8 this gives the design's ``0.1 ~ 13 >> 7``
(0.1015625, abs error 0.0015625, 1.56 %), the 26/256 that Xilinx DPUs use;
without the shift limit the optimum would be 205 >> 11. Ties go to the
smallest shift, then to the smallest ``|m|``.
"""
from __future__ import annotations

import math

from ..ir import Graph

NAME = "leaky_shift"


def best_shift(alpha: float, bits: int) -> tuple[int, int]:
    """``(m, s)`` with ``|m| < 2**bits`` and ``0 <= s <= bits - 1`` minimising
    ``|alpha - m / 2**s|`` (ties: smallest s, then smallest |m|)."""
    if bits < 1:
        raise ValueError(f"leaky bit budget must be >= 1, got {bits}")
    top = 2 ** bits - 1
    best: tuple[float, int, int] | None = None
    for s in range(bits):
        t = alpha * 2.0 ** s                       # exact: a power-of-two scaling
        for m in sorted({math.floor(t), math.ceil(t)}, key=abs):
            m = max(-top, min(top, m))
            err = abs(alpha - m / 2.0 ** s)
            if best is None or err < best[0]:
                best = (err, m, s)
    return best[1], best[2]


def approximation(alpha: float, bits: int) -> dict:
    m, s = best_shift(alpha, bits)
    approx = m / 2.0 ** s
    err = abs(alpha - approx)
    return {"multiplier": m, "shift": s, "alpha_approx": approx, "abs_error": err,
            "rel_error": err / abs(alpha) if alpha else 0.0}


def run(g: Graph, opts) -> list[str]:
    msgs = []
    for n in g.nodes:
        if n.op != "LeakyRelu":
            continue
        alpha = float(n.attrs.get("alpha", 0.01))
        q = approximation(alpha, opts.leaky_bits)
        if n.attrs.get("q_leaky") == q:
            continue
        n.attrs["q_leaky"] = q
        msgs.append(f"LeakyRelu '{n.name}' alpha={alpha:.6g} ~ {q['multiplier']}>>{q['shift']} = "
                    f"{q['alpha_approx']:.7g} (abs error {q['abs_error']:.3g}, "
                    f"{100 * q['rel_error']:.2f}% at {opts.leaky_bits} bits)")
    return msgs
