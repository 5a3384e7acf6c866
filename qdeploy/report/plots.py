"""The report's plots: matplotlib figures as base64 SVG data URIs (deterministic bytes:
no date, a fixed hash salt), so report.html stays one self-contained file.

Each figure is a column of panels placed at fixed margins in inches (:func:`_panels`)
rather than by a layout engine: constrained layout measured every tick label twice
(a dry draw, then the layout, then the real draw) and made the three figures 2-2.5x
slower to render, about 0.4 s of each ``quantize`` run."""
from __future__ import annotations

import base64
import io

import numpy as np

# SQNR of identical tensors is infinite; plotted at this ceiling
SQNR_CEILING = 80.0


# panel margins, inches: tick labels + y label on the left, x label below, title above
LEFT, RIGHT, TITLE, XLABEL, GAP = 0.8, 0.1, 0.25, 0.45, 0.1


def _panels(w: float, h: float, rows: int = 1, title: bool = False, xlabel: bool = True):
    """A ``w`` x ``rows * h`` inch figure and its ``rows`` axes, one above the other."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h * rows), dpi=100)
    top, bottom = (TITLE if title else GAP), (XLABEL if xlabel else 0.3)
    H = h * rows
    axes = [fig.add_axes(((LEFT / w), (H - (k + 1) * h + bottom) / H, (w - LEFT - RIGHT) / w,
                          (h - top - bottom) / H)) for k in range(rows)]
    return fig, axes


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
    fig, (ax,) = _panels(9, 3.4)
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
    fig, axes = _panels(9, 2.6, len(weights), title=True)
    for ax, w in zip(axes, weights):
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
    fig, axes = _panels(9, 2.4, len(hists), title=True, xlabel=False)
    for ax, h in zip(axes, hists):
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
