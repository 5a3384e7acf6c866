"""The report's plots: matplotlib figures as base64 SVG data URIs (deterministic bytes:
no date, a fixed hash salt), so report.html stays one self-contained file."""
from __future__ import annotations

import base64
import io

import numpy as np

# SQNR of identical tensors is infinite; plotted at this ceiling
SQNR_CEILING = 80.0


def _figure(w: float, h: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _uri(fig) -> str:
    import matplotlib
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "qdeploy", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def _db(v):
    return SQNR_CEILING if v is None else min(float(v), SQNR_CEILING)


def layer_sqnr(layers: list[dict], worst: list[str]) -> str | None:
    if not layers:
        return None
    fig = _figure(9, 3.4)
    ax = fig.add_subplot()
    i = np.arange(len(layers))
    ax.plot(i, [_db(r["sqnr_db"]) for r in layers], "-o", ms=3, label="accumulated (deployed model at this layer)")
    ax.plot(i, [_db(r["local_sqnr_db"]) for r in layers], "-s", ms=3, label="layer-local (this layer's own error)")
    for k, r in enumerate(layers):
        if r["node"] in worst:
            ax.annotate(r["node"], (k, _db(r["local_sqnr_db"])), xytext=(4, -12), textcoords="offset points",
                        fontsize=8, color="crimson")
            ax.plot([k], [_db(r["local_sqnr_db"])], "o", color="crimson", ms=7, fillstyle="none")
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("SQNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return _uri(fig)


def weight_ranges(weights: list[dict]) -> str | None:
    if not weights:
        return None
    fig = _figure(9, 2.6 * len(weights))
    for k, w in enumerate(weights):
        ax = fig.add_subplot(len(weights), 1, k + 1)
        c = np.arange(len(w["min"]))
        ax.vlines(c, w["min"], w["max"], lw=2, color="tab:blue", label="weights (min..max)")
        ax.plot(c, w["limit"], "_", color="tab:red", label="int8 range (±127 steps)")
        ax.plot(c, [-v for v in w["limit"]], "_", color="tab:red")
        ax.set_title(f"{w['node']}: per-output-channel weight ranges", fontsize=9)
        ax.set_xlabel("output channel")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    return _uri(fig)


def histograms(hists: list[dict]) -> str | None:
    from matplotlib.ticker import FuncFormatter, NullLocator
    if not hists:
        return None
    fig = _figure(9, 2.4 * len(hists))
    for k, h in enumerate(hists):
        ax = fig.add_subplot(len(hists), 1, k + 1)
        e = np.asarray(h["edges"])
        ax.stairs(np.maximum(h["counts"], 0.8), e, fill=True, color="tab:gray")
        ax.set_yscale("log")
        # plain tick labels: mathtext 10^k labels and minor ticks cost 3x the whole figure
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        for v in (h["lo"], h["hi"]):
            ax.axvline(v, color="tab:red", lw=1.5)
        ax.set_title(f"{h['tensor']}: values on {h['samples_from']}; chosen int8 range in red "
                     f"({h['clipped_pct']:.2f}% clipped)", fontsize=9)
        ax.grid(alpha=0.3)
    return _uri(fig)
