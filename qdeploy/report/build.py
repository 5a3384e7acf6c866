"""report.json: verification, the metrics against the original model, and the evidence.

Format ``qdeploy-report`` version 1. Keys (floats in the units named; ``null`` where
a value is infinite (identical tensors) or does not apply):

- ``format``, ``version``, ``qdeploy``: this file's format and the writer's version
- ``model``, ``target``: the model file name and the target name
- ``eval``: ``source`` (file name, or the held-out split), ``samples``, ``labels`` (bool)
- ``verdict``: ``pass`` (bool, or null when nothing was evaluated), ``criterion``
  (``accuracy drop`` with labels, else ``top-1 disagreement`` for a class-score output,
  else ``output SQNR``), ``value``, ``threshold``, ``backend`` (the worst one), ``text``
- ``verification``: one record per artefact backend: ``artefact``, ``backend``,
  ``status`` (``bit-exact`` | ``within 1 LSB`` | ``drifts`` | ``not run``: see
  :mod:`.verify`; ``differs`` never gets written: it is an error), ``reason``,
  ``outputs`` {name: ``status``, ``max_lsb``, ``off_by_one_pct``, ``detail``}; an
  empty list with ``verified: false`` under ``--no-verify``
- ``metrics``: ``float`` {``accuracy``}, and per backend (``ref`` and every verified
  one) ``outputs`` {name: ``sqnr_db``, ``cosine``, ``max_abs``, [``top1_agreement``,
  ``topk_agreement``, ``k``] (%)}, [``accuracy``, ``drop`` (points)]
- ``layers``: per quantized activation, in execution order: ``tensor``, ``node``,
  ``op``, ``depthwise``, ``source``, accumulated ``sqnr_db``/``cosine``/``max_abs``
  and layer-local ``local_*`` (on ``layer_samples`` samples)
- ``worst_layers``: the three lowest layer-local SQNRs (node names)
- ``weights``: per worst weighted layer: ``node``, per output channel ``min``/``max``
  (dequantized) and ``limit`` (the int8 grid's ±127 steps)
- ``histograms``: per worst activation (on at most 64 samples): ``tensor``, ``samples_from``, ``edges``,
  ``counts``, chosen range ``lo``/``hi``, ``clipped_pct``, ``p999_of_range``
- ``shortcuts``: the shortcut-check records (manifest.json) with ``max_bits_lost``
- ``approximations``: ``luts`` (``max_lsb`` vs the exact function, ``recipe_lsb`` vs
  TFLite's recipe) and ``leaky`` (multiply + shift slope errors)
- ``decisions``: the CLE / output-widening / GAP-folding / bias-correction lines of
  manifest.json ``passes``
- ``advice``: [{``why``, ``option``, ``command``}] (:mod:`.advice`)
- ``advice_withheld``: null, or on a model the sensitivity note flags whose int8 output is
  already near the float model's own ceiling (:func:`.advice.bound_by_sensitivity`):
  ``options`` (the advice found and not printed), ``ceiling_db``, ``sqnr_db``, ``why``
- ``weight_gain``: {node: dB} the dominating layers (conv / FC) gain layer-local with their
  weights in float (input and output int8; :func:`qdeploy.quant.float_island.local_in_float`)
- ``rounding_note``: null, or on a failing model with no advice whose dominating layers keep
  their error with float weights, the sentence saying the int8 activations' rounding is the
  cost (:func:`.advice.rounding_note`)
- ``sensitivity``: the float model under input noise (:mod:`.sensitivity`): ``noise_std``,
  ``input_sqnr_db``, ``output_sqnr_db`` (on at most ``SENSITIVITY_SAMPLES`` samples),
  ``first_below`` (node) and ``note`` (null unless the model amplifies small errors); null
  without evaluation samples or without an int8 input
- ``float_nodes``: the layers kept in float (``--keep-float``): ``node``, ``op`` (the
  int op each stands for); empty without the option
- ``artefacts``: file -> bytes (manifest.json), ``model_bytes``: the original model's, and
  ``memory``: the C bundle's arena/RAM/flash bytes (manifest.json ``memory``) or null
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .advice import advise, bound_by_sensitivity, dominant, float_candidate, rounding_note
from .approx import leaky_errors, lut_errors
from .evalset import EvalSet
from .measure import evaluate, layer_samples, reference_outputs, run_original
from .sensitivity import first_below, input_noise, input_step, note
from .verify import verify

FORMAT, VERSION = "qdeploy-report", 1
JSON_NAME, HTML_NAME = "report.json", "report.html"
HIST_BINS = 64
P999_BINS = 1 << 16       # |v| bins the 99.9th percentile is read from (report histograms)
HIST_SAMPLES = 64            # activation histograms: at most this many samples
FEW_SAMPLES = 50             # below this the verdict text says one sample's weight
SENSITIVITY_SAMPLES = 8      # the float model under input noise: at most this many samples
_DECISIONS = ("cle", "clip_check", "output_range", "fold_gap", "weight_rounding", "bias_correction", "float_tail")


@dataclass
class ReportOptions:
    verify: bool = True          # run every artefact backend and compare with the reference
    max_drop: float = 1.0        # points of accuracy (labels) or of top-1 disagreement
    min_sqnr: float = 20.0       # dB, the criterion for outputs that are not class scores


def build_report(out: Path, manifest: dict, qg, g, model: Path, ev: EvalSet, base: dict,
                 hist_x: np.ndarray, hist_from: str, ropts: ReportOptions, progress=None) -> dict:
    """Verify (unless ``ropts.verify`` is off), measure and assemble report.json's dict.
    ``base``: the quantize command's options (:func:`.advice.command`); ``hist_x``:
    the samples whose activation histograms are shown (``hist_from`` says which);
    ``progress(step_name)`` is called after each step."""
    step = progress or (lambda _name: None)
    rep = {"format": FORMAT, "version": VERSION, "qdeploy": __version__, "model": manifest["model"]["file"],
           "target": manifest["target"].get("name"),
           "eval": {"source": ev.source, "samples": int(len(ev.x)), "labels": ev.y is not None},
           "artefacts": {k: v["bytes"] for k, v in manifest.get("artefacts", {}).items()},
           "model_bytes": Path(model).stat().st_size, "memory": manifest.get("memory"),
           "shortcuts": manifest.get("shortcuts", []), "float_nodes": manifest.get("float_nodes", []),
           "decisions": [p for p in manifest.get("passes", []) if p.split(":")[0] in _DECISIONS],
           "verification": [], "verified": bool(ropts.verify), "layer_samples": 0}
    # nothing to evaluate on (one calibration sample, nothing held out): the artefacts are
    # still verified against the reference, on the calibration samples (bit-exactness does
    # not need unseen inputs; accuracy would), and the verdict says why it is missing
    vx = ev.x if len(ev.x) else np.asarray(hist_x, np.float32)
    if len(ev.x) == 0 and not (ropts.verify and len(vx)):
        rep.update(_not_evaluated(qg, g, "not evaluated: no evaluation samples (give --eval)"))
        return rep
    inputs = {qg.inputs[0]: vx}
    ref, layers = reference_outputs(g, qg, vx, layers=len(ev.x) > 0)
    step("reference interpreter")
    flt = run_original(model, vx, [o["name"] for o in manifest["outputs"]])
    step("original model")
    # a float tail (quant/float_tail.py): the artefacts and the QGraph compute its branches
    # (verified on their int grids); the model's outputs are assembled from them in float
    tail, inner, assemble = manifest.get("float_tail"), manifest, (lambda d: d)
    if tail is not None:
        from ..quant.float_tail import apply_tail
        inner = {**manifest, "outputs": [{"name": b["name"], "shape": b["shape"][1:]} for b in tail["branches"]]}
        assemble = lambda d: apply_tail(tail, d)   # noqa: E731
    results: dict = {}
    if ropts.verify:
        rep["verification"], results = verify(out, inner, qg, inputs, ref, on_step=step,
                                              flt=None if tail is not None else flt)
    if len(ev.x) == 0:
        n = f"{len(vx)} calibration sample" + ("s" if len(vx) != 1 else "")
        rep.update(_not_evaluated(qg, g, f"not evaluated: no evaluation samples (give --eval); the artefacts "
                                  f"were verified on the {n}"))
        return rep
    rep["metrics"] = evaluate(flt, {b: assemble(v) for b, v in {"ref": ref, **results}.items()}, ev.y)
    step("per-layer errors")   # measured with the reference outputs, in one pass
    nodes = {n.name: n for n in qg.nodes}
    for r in layers:
        r["depthwise"] = bool(nodes[r["node"]].attrs.get("depthwise", False))
    rep["layers"], rep["layer_samples"] = layers, int(min(len(ev.x), layer_samples(qg)))
    worst = sorted((r for r in layers if r["local_sqnr_db"] is not None), key=lambda r: r["local_sqnr_db"])[:3]
    rep["worst_layers"] = [r["node"] for r in worst]
    rep["weights"] = [weight_ranges(qg, nodes[r["node"]]) for r in worst
                      if nodes[r["node"]].op in ("Conv2D", "FullyConnected", "TransposeConv2D")]
    hists = histograms(g, qg, [r["tensor"] for r in {id(r): r for r in worst + dominant(layers)}.values()],
                       np.asarray(hist_x[:HIST_SAMPLES], np.float32), hist_from)
    rep["histograms"] = list(hists.values())
    rep["approximations"] = {"luts": lut_errors(qg), "leaky": leaky_errors(g, qg)}
    foldable, gap_nodes = _gap_info(g, qg)
    per_channel = bool(manifest["target"].get("numerics", {}).get("weight_per_channel", True))
    rep["sensitivity"] = _sensitivity(model, qg, ev.x, flt, layers)
    step("float model under input noise")
    in_float = _in_float(g, qg, layers, ev.x[:rep["layer_samples"]])
    rep["weight_gain"] = {node: kept - now for node, (now, kept) in in_float.items()}
    rep["advice"] = advise(base, layers, hists, per_channel, foldable, gap_nodes,
                           ranges_given=bool(manifest.get("calibration", {}).get("ranges_file")),
                           float_gain=_float_gain(layers, manifest, in_float), weight_gain=rep["weight_gain"])
    rep["advice"], rep["advice_withheld"] = bound_by_sensitivity(rep["advice"], rep["sensitivity"],
                                                                 _worst_sqnr(rep["metrics"]["ref"]))
    rep["verdict"] = verdict(rep, qg, ropts)
    rep["rounding_note"] = rounding_note(layers, rep["weight_gain"], rep["advice"], rep["advice_withheld"],
                                         rep["verdict"]["pass"])
    return rep


def _not_evaluated(qg, g, text: str) -> dict:
    """The report's fields when there are no evaluation samples (``text``: the verdict line)."""
    return dict(metrics={}, layers=[], worst_layers=[], weights=[], histograms=[], advice=[], advice_withheld=None,
                weight_gain={}, rounding_note=None, sensitivity=None,
                approximations={"luts": lut_errors(qg), "leaky": leaky_errors(g, qg)},
                verdict={"pass": None, "criterion": None, "value": None, "threshold": None, "backend": None,
                         "text": text})


def _worst_sqnr(metrics: dict) -> float | None:
    """The lowest output SQNR of one backend's metrics (None: every output identical)."""
    vals = [o["sqnr_db"] for o in metrics["outputs"].values() if o.get("sqnr_db") is not None]
    return min(vals) if vals else None


def _sensitivity(model: Path, qg, x: np.ndarray, flt: dict, layers: list[dict]) -> dict | None:
    step = input_step(qg)
    if step is None:
        return None
    k = min(len(x), SENSITIVITY_SAMPLES)
    sens = input_noise(model, x[:k], list(flt), step, clean={n: v[:k] for n, v in flt.items()})
    sens["first_below"] = first_below(layers)
    sens["note"] = note(sens)
    return sens


def verdict(rep: dict, qg, ropts: ReportOptions) -> dict:
    """Judge the worst backend by the criterion the data allows (see the module docstring)."""
    m = {b: v for b, v in rep["metrics"].items() if b != "float"}
    first = next(iter(m["ref"]["outputs"]))
    if rep["eval"]["labels"]:
        crit, thr = "accuracy drop", ropts.max_drop
        vals = {b: v["drop"] for b, v in m.items()}
        unit, ok = "points", lambda v: v <= thr
    elif "top1_agreement" in m["ref"]["outputs"][first]:
        crit, thr = "top-1 disagreement", ropts.max_drop
        vals = {b: 100.0 - v["outputs"][first]["top1_agreement"] for b, v in m.items()}
        unit, ok = "%", lambda v: v <= thr
    else:
        crit, thr = "output SQNR", ropts.min_sqnr
        vals = {b: float("inf") if (w := _worst_sqnr(v)) is None else w for b, v in m.items()}
        unit, ok = "dB", lambda v: v >= thr
    worst = (max if crit != "output SQNR" else min)(vals, key=vals.get)
    v = vals[worst]
    passed = bool(ok(v))
    cmp = ("<=" if crit != "output SQNR" else ">=") if passed else (">" if crit != "output SQNR" else "<")
    n = rep["eval"]["samples"]
    text = (f"{'PASS' if passed else 'FAIL'}: {crit} {v:.2f} {unit} ({worst}) {cmp} {thr:g} {unit} "
            f"on {n} evaluation samples" + (f" (few: one sample is {100 / n:.0f} points; give --eval for a "
                                            "firmer verdict)" if n < FEW_SAMPLES and crit != "output SQNR" else ""))
    return {"pass": passed, "criterion": crit, "value": float(v), "threshold": float(thr), "backend": worst,
            "text": text}


def weight_ranges(qg, n) -> dict:
    w = qg.tensors[n.inputs[1]]
    data = w.data.astype(np.float64).reshape(w.data.shape[0], -1)
    scale = np.broadcast_to(np.asarray(w.scale, np.float64).reshape(-1), (data.shape[0],))
    deq = data * scale[:, None]
    return {"node": n.name, "min": deq.min(1).tolist(), "max": deq.max(1).tolist(),
            "limit": (127.0 * scale).tolist(), "per_channel": w.axis is not None}


def histograms(g, qg, tensors: list[str], x: np.ndarray, source: str) -> dict[str, dict]:
    """Float value histograms of ``tensors`` (QGraph names) on ``x`` with the int grid's
    range. Two passes of the float model over ``x``, one sample at a time (memory holds
    one sample's tensors, not ``len(x)``): the value range, then the counts, the share
    outside the grid and the 99.9th percentile of ``|v|`` (from ``P999_BINS`` bins over
    ``[0, max |v|]``, interpolated within its bin: off by at most max |v| / P999_BINS)."""
    from ..float_run import each_sample
    fnames = qg.metadata.get("float_names", {})
    want = {t: fnames.get(t, t) for t in tensors if fnames.get(t, t) in g.tensors}
    if not want or len(x) == 0:
        return {}
    names = sorted(set(want.values()))
    lo_hi = {f: (np.inf, -np.inf) for f in names}
    for vals in each_sample(g, x, names):
        for f in names:
            v = vals[f]
            lo_hi[f] = (min(lo_hi[f][0], float(v.min())), max(lo_hi[f][1], float(v.max())))
    stats = {}
    for t, f in want.items():
        qt = qg.tensors[t]
        info = np.iinfo(np.dtype(qt.dtype))
        lo, hi = (info.min - qt.zp) * qt.s, (info.max - qt.zp) * qt.s
        a, b = min(lo, lo_hi[f][0]), max(hi, lo_hi[f][1])
        top = max(abs(lo_hi[f][0]), abs(lo_hi[f][1]))
        stats[t] = {"lo": lo, "hi": hi, "range": (a, b) if b > a else None, "top": top, "counts": 0,
                    "edges": None, "out": 0, "n": 0, "abs": np.zeros(P999_BINS, np.int64)}
    for vals in each_sample(g, x, names):
        for t, f in want.items():
            st, v = stats[t], np.asarray(vals[f], np.float64).ravel()
            counts, st["edges"] = np.histogram(v, bins=HIST_BINS, range=st["range"])
            st["counts"] = st["counts"] + counts
            s_ = qg.tensors[t].s
            st["out"] += int(np.count_nonzero((v < st["lo"] - s_ / 2) | (v > st["hi"] + s_ / 2)))
            st["n"] += v.size
            st["abs"] += np.histogram(np.abs(v), bins=P999_BINS, range=(0.0, st["top"] or 1.0))[0]
    out = {}
    for t, st in stats.items():
        reach = max(abs(st["lo"]), abs(st["hi"])) or 1.0
        out[t] = {"tensor": t, "samples_from": source, "edges": st["edges"].tolist(),
                  "counts": st["counts"].tolist(), "lo": st["lo"], "hi": st["hi"],
                  "clipped_pct": st["out"] / max(1, st["n"]) * 100.0,
                  "p999_of_range": _quantile(st["abs"], st["top"] or 1.0, 0.999) / reach}
    return out


def _quantile(counts: np.ndarray, top: float, q: float) -> float:
    """The ``q`` quantile (numpy's "linear": between the sorted values ``floor(h)`` and
    ``floor(h) + 1``, ``h = q (n - 1)``) of values binned by ``counts`` over ``[0, top]``,
    each value placed evenly within its bin."""
    n = int(counts.sum())
    if n == 0:
        return 0.0
    cum = np.cumsum(counts)
    width = top / len(counts)

    def value(j: int) -> float:              # the j-th smallest (0-based)
        k = int(np.searchsorted(cum, j + 1))
        before = int(cum[k - 1]) if k else 0
        return width * (k + (j - before + 0.5) / int(counts[k]))
    h = q * (n - 1)
    i = int(np.floor(h))
    return value(i) + (h - i) * (value(min(i + 1, n - 1)) - value(i))


def _float_gain(layers: list[dict], manifest: dict, in_float: dict) -> tuple | None:
    """(node, layer-local SQNR as it is, kept in float) of the ``--keep-float`` candidate
    (ort target only: :func:`.advice.float_candidate`, one of the dominating layers
    :func:`_in_float` measured), or None."""
    node = float_candidate(layers)
    if manifest["target"].get("profile") != "ort" or node not in in_float:
        return None
    return (node, *in_float[node])


def _in_float(g, qg, layers: list[dict], x: np.ndarray) -> dict[str, tuple[float, float]]:
    """``{node: (layer-local SQNR as it is, with its weights in float)}`` of the dominating
    conv / FC layers (:func:`.advice.dominant`, at most three; input and output int8:
    :func:`qdeploy.quant.float_island.local_in_float`, what ``--keep-float`` would run)."""
    from ..quant.float_island import local_in_float
    res = local_in_float(g, qg, [r["node"] for r in dominant(layers)], x)
    return {node: (float(a), float(b)) for node, (a, b) in res.items()}


def _gap_info(g, qg) -> tuple[bool, set[str]]:
    """(whether --fold-gap would fold something, the QGraph nodes of global pools and of the
    convs reading them)."""
    from ..passes import fold_gap
    try:
        foldable = bool(fold_gap.run(g.copy()))
    except Exception:
        foldable = False
    pools = {n.name for n in g.nodes if n.op in ("GlobalAveragePool", "ReduceMean")}
    readers = {c.name for p in pools for o in g.node(p).outputs for c in g.consumers(o)}
    src = pools | readers
    return foldable, {n.name for n in qg.nodes if set(n.source) & src}
