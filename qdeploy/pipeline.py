"""The main job, end to end: ``qdeploy quantize`` and ``qdeploy run`` as Python functions.

    model.onnx -> import -> passes -> [check ops] -> calibration samples -> [fold GAP] -> [CLE]
               -> calibrate (or --ranges) -> quantize -> [bias correction] -> OUT/

(``quantize_samples`` is the part from the fold to bias correction, on arrays: what
bench/sqnr.py measures.)

Files in OUT (the emitters add their artefacts beside them):

- ``model.qgraph``      the quantized graph: every integer (``qdeploy/quant/qgraph.py``)
- ``model.float.onnx``  the pass-processed float graph (rung 1 of the verification
                        ladder; ``qdeploy run --backend float``)
- ``ranges.json``       the calibration result (reusable with ``--ranges``)
- ``manifest.json``     format ``qdeploy-manifest`` v1: inputs' sha256 (file names, never
                        absolute paths), options, target, versions, the model's inputs and
                        outputs (name, per-sample shape), pass log, warnings, artefact sizes,
                        ``float_nodes`` (with ``--keep-float``: the layers kept in float,
                        node and the op they stand for)

Decisions (where DESIGN.md is silent):

- **Checks before work.** Options, OUT, target, model, the target's ops (every
  unsupported node in one error) and ``--ranges`` (fingerprint, version) are
  checked before the first calibration sample is read.
- **OUT** is built in a temporary sibling and renamed into place only when
  everything succeeded, so a failed run writes nothing and leaves an existing OUT
  as it was. OUT must be absent, an empty folder or an earlier qdeploy OUT (it has
  our ``manifest.json``); anything else (a file, a folder of other files, a name
  ending in a file suffix such as ``.onnx``, a folder holding one of the inputs) is
  refused rather than replaced.
- **Determinism.** Same inputs and options -> byte-identical files: no times, no
  absolute paths, stable JSON, deterministic npz/ONNX bytes.
- **--ranges** replaces only the range measurement. The samples of ``--calib`` (default:
  the bundled photographs) still feed bias correction, so ``calib ranges M SET -o r.json``
  + ``quantize --ranges r.json --calib SET`` is byte-identical to ``quantize --calib SET
  --no-cle`` (see the next point); a warning says when the file's calibration recipe
  differs from ``--calib``'s.
- **--ranges and CLE.** Equalization rescales channels, so ranges measured on the
  original graph do not describe the equalized one, and measuring new ones needs the
  data the file was meant to replace. Hence: ``--cle`` with ``--ranges`` is an error;
  with CLE left automatic (every pair for per-tensor weights, the pairs that even out the
  activations for per-channel weights: ``equalize_graph``) ``--ranges`` switches it off
  with a warning; a ``ranges.json`` written by a run that equalized carries
  ``options.cle = true`` and is refused by ``--ranges`` (it fits only the equalized graph).
- **Calibration samples.** ``--limit N`` keeps the first N samples (``calib build
  --limit`` makes a seeded choice when a random subset is wanted).

``run_artifact`` (``qdeploy run``) takes N samples of the batch-1 model along the
first axis in the model's own layout, checks each input's per-sample shape against
the manifest, and returns every output stacked the same way; ``BACKENDS`` is the
table backend -> runner (the emitters add theirs).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .calibration.sources import require_float
from .emit import ARTEFACTS, EmitContext, artefact_of, emit_all, load_runner, parse_emit
from .emit import backends as _artefact_backends
from .errors import QDeployError
from .fsutil import atomic_dir, dumps_json, refuse_cwd, why, write_bytes
from .ir import Graph
from .schema import Key, check

# onnx (import_onnx, export_bytes) is imported where used: the command line imports this
# module for its option lists, and `qdeploy --help` / `run` need no onnx

QGRAPH, FLOAT, RANGES, MANIFEST = "model.qgraph", "model.float.onnx", "ranges.json", "manifest.json"
MANIFEST_FORMAT, MANIFEST_VERSION = "qdeploy-manifest", 1
METHODS = ("tailclip", "minmax", "percentile", "entropy", "mse", "auto")
WEIGHT_ROUNDINGS = ("gptq", "nearest")   # quant/gptq.py, or each weight to its nearest integer
# gptq is opt-in: it lowers each layer's weight error but loses on 7 of 9 trained-model rows
# once the activations are int8 (quant/gptq.py, bench/RESULTS.md "Weight rounding")
WEIGHT_ROUNDING = "nearest"
FILE_SUFFIXES = (".onnx", ".tflite", ".npz", ".npy", ".json", ".qgraph", ".toml", ".h", ".c", ".zip")


@dataclass
class QuantizeOptions:
    target: str = "arm"               # bundled target name, the path of a .toml, or a Target
    calib: str | None = None          # SET.npz, .npy, an image folder, or None: the bundled calib/ photos
    ranges: str | None = None         # a ranges.json to reuse instead of calibrating
    # tailclip: minmax except where a tensor's tail is heavy (calibration/observers.py), chosen
    # on trained models and the corpus (bench/RESULTS.md); auto (output-aware,
    # calibration/auto.py) is opt-in: within noise of minmax on the corpus, 25x slower
    method: str = "tailclip"          # tailclip | minmax | percentile | entropy | mse | auto
    per_tensor: bool = False
    preset: str = "imagenet"          # preprocessing of images (folder or bundled calib/)
    input_shape: tuple | dict | None = None
    # None = automatic: cross-layer equalization of every eligible pair when the weights are
    # per-tensor; with per-channel weights the pairs where it raises the int8 SQNR of the tensor
    # between the two layers on the calibration data, plus the saturating-ReLU6 -> depthwise fit
    # (equalize_graph; bench/RESULTS.md "arm" vs "arm plain"). Skipped, with a warning, when
    # --ranges is given.
    cle: bool | None = None           # cross-layer equalization (float graph, re-calibrated after)
    # bias correction is opt-in: measured neutral to -1 dB on the corpus models (their error is
    # activation noise, not a weight-rounding mean shift), +0.2 top-1 points on digits
    bias_correction: bool = False     # empirical bias correction (after quantization)
    weight_rounding: str = WEIGHT_ROUNDING   # gptq | nearest (quant/gptq.py)
    # opt-in: H*W times the weights and MACs of each folded 1x1 conv (passes/fold_gap.py)
    fold_gap: bool = False            # GlobalAveragePool -> 1x1 Conv folded into one conv
    # layers run in float between DequantizeLinear and QuantizeLinear (ort only: quant/float_island.py)
    keep_float: tuple = ()            # node names (the model's, as inspect and the report show them)
    batch_size: int = 8
    limit: int | None = None          # at most this many calibration samples (the first ones)
    # artefacts to write (qdeploy/emit ARTEFACTS): "qdq,tflite,c", a list, or None = the target's emit
    emit: str | tuple | None = None
    emit_options: dict = field(default_factory=dict)   # per-artefact options (EmitContext.options)
    progress: bool = True
    # verification + report (qdeploy/report): the CLI and qdeploy.quantize() turn both on. Either
    # one evaluates: on --eval, or else on a held-out split of the calibration samples
    # (report/evalset.py: those samples are then not calibrated on)
    verify: bool = False              # run every emitted artefact's backends against the reference
    report: bool = False              # write report.json + report.html
    eval: str | None = None           # evaluation set (.npz/.npy)
    labels: str | None = None         # its class labels (.npy), if not inside the set
    max_drop: float = 1.0             # verdict: accuracy drop / top-1 disagreement, points
    min_sqnr: float = 20.0            # verdict for outputs that are not class scores, dB


@dataclass
class QuantizeResult:
    out: Path
    graph: Graph                       # the float graph that was quantized
    qgraph: object                     # QGraph
    ranges: object                     # calibration Ranges
    calib_x: np.ndarray
    log: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report: dict | None = None         # report.json's content (verification, metrics), when evaluated
    emitted: dict = field(default_factory=dict)   # artefact name -> path in OUT (manifest "emitted")

    @property
    def artefacts(self) -> dict[str, Path]:
        """Emitted artefact name -> its path in OUT."""
        return {n: self.out / p for n, p in self.emitted.items()}


def prepare_float(model, input_shape=None) -> Graph:
    """Import and run the pass pipeline."""
    from .onnx_import import check_batch_one, import_onnx
    from .passes import run_passes
    g = import_onnx(model, input_shape)
    check_batch_one(g)
    return run_passes(g, copy=False)


def calibration_samples(g: Graph, calib: str | None, preset: str = "imagenet",
                        limit: int | None = None, on_warning=None) -> tuple[np.ndarray, dict | None]:
    """The calibration tensor for the graph's (single) input, and its recipe:
    a saved set (``.npz``) or tensor file checked against the input, a folder
    of images, or the bundled ``calib/`` photographs preprocessed for the input."""
    from .calibration.dataset import build_set, check_against_model, images_for_model, load_set
    if len(g.inputs) != 1:
        raise QDeployError(f"model '{g.name}' has {len(g.inputs)} inputs; qdeploy quantizes "
                           "single-input models")
    inp = g.inputs[0]
    shape = g.shape(inp)
    if calib is not None and not Path(calib).exists():
        raise QDeployError(f"--calib {calib}: no such file or folder; give a set made by "
                           "'qdeploy calib build' (.npz) or a folder of images")
    if calib is not None and Path(calib).is_file():
        cs = load_set(calib, lazy=True) if _is_calib_set(calib) else build_set([calib], on_warning=on_warning)
        check_against_model(cs, shape, inp)
    else:
        cs = images_for_model(calib, shape, preset=preset, name=inp, on_warning=on_warning, lazy=True)
    if hasattr(cs.x, "head"):   # samples streamed from disk (calibration/stream.py): they stay there
        return (cs.x if limit is None else cs.x.head(limit)), cs.recipe
    x = cs.x[:limit] if limit is not None else cs.x
    return np.ascontiguousarray(x, np.float32), cs.recipe


def _is_calib_set(path) -> bool:
    if Path(path).suffix.lower() != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "recipe" in z.files
    except Exception:
        return False   # build_set reports unreadable files with a clear message


def quantize_model(model, out, opts: QuantizeOptions | None = None) -> QuantizeResult:
    """Quantize ``model`` (an ONNX path) for ``opts.target`` into the folder ``out``
    (see the module docstring for what is checked and written)."""
    from .calibration.ranges import load_ranges
    from .onnx_export import export_bytes
    from .quant.qgraph import qgraph_bytes
    from .quant.quantizer import check_ops
    from .quant.targets import load_target

    opts = opts or QuantizeOptions()
    if opts.keep_float:   # "a,b", ["a", "b,c"] -> ("a", "b", "c"), as the CLI gives it
        from dataclasses import replace
        from .quant.float_island import split_names
        opts = replace(opts, keep_float=split_names(opts.keep_float))
    _check_options(opts)
    if not str(out).strip():
        raise QDeployError("-o is empty; give the output folder's name, such as out/")
    model, out = Path(model), Path(out)
    _check_out(out, [model] + [Path(p) for p in (opts.calib, opts.ranges, opts.target, opts.eval, opts.labels)
                               if isinstance(p, str)])
    target = load_target(opts.target)
    emits = parse_emit(opts.emit, target)
    io = (opts.emit_options or {}).get("io", "int8")
    if io != "int8" and "tflite" not in emits:   # refused like --keep-float off ort: asked for, cannot apply
        raise QDeployError(f"--io {io} sets the inputs/outputs of {ARTEFACTS['tflite'].path}, which this run "
                           f"does not write (it emits: {', '.join(emits) or 'nothing'}); add tflite to "
                           "--emit or drop --io")
    if opts.keep_float:
        from .quant.float_island import check_target, resolve
        check_target(target)
    g = prepare_float(model, opts.input_shape)
    check_ops(g, target, tail_pending=True)
    if opts.keep_float:
        resolve(g, opts.keep_float, model)   # a name that is not a layer: one line, before calibrating
    warn: list[str] = []
    per_tensor = _per_tensor(opts, target)
    cle = None                         # quantize_samples decides from opts.cle
    given = load_ranges(opts.ranges, g) if opts.ranges else None
    if given is not None:
        cle = _ranges_without_cle(opts, given, opts.cle is not False, warn)
    x, recipe = calibration_samples(g, opts.calib, opts.preset, opts.limit, on_warning=warn.append)
    ev = None
    if opts.verify or opts.report:
        x, ev = _eval_samples(opts, g, x, recipe, warn)
    if given is not None and given.recipe is not None and recipe != given.recipe:
        warn.append(f"--ranges {Path(opts.ranges).name} was measured on another calibration set "
                    "than the one given (recipes differ); bias correction uses the given set")
    qg, ranges, cle, caught = quantize_samples(g, x, target, opts, given=given, recipe=recipe, cle=cle)
    warn += caught

    files = {QGRAPH: qgraph_bytes(qg), FLOAT: export_bytes(g), RANGES: dumps_json(ranges.to_dict()).encode()}
    ctx = EmitContext(target=target, recipe=recipe, model_name=model.stem, version=__version__,
                      options=dict(opts.emit_options))
    files.update(emit_all(qg, ctx, emits))
    manifest = _manifest(model, opts, target, g, ranges, len(x), cle, per_tensor, warn, files)
    manifest["emitted"] = {n: ARTEFACTS[n].path for n in emits}
    manifest.update(ctx.report)   # e.g. "memory": the C bundle's arena and flash bytes
    if g.records.get("float_tail"):
        manifest["float_tail"] = g.records["float_tail"][0]
    if opts.keep_float or qg.metadata.get("float_grouped"):   # named, or the target's float_grouped rule
        from .quant.float_island import float_nodes
        manifest["float_nodes"] = float_nodes(qg)
    files[MANIFEST] = dumps_json(manifest).encode()
    rep = None
    try:
        with atomic_dir(out) as tmp:
            for name, data in files.items():
                write_bytes(tmp / name, data)
            if ev is not None:   # verified on the files in the temporary OUT: a failure leaves no OUT
                rep = _evaluate(tmp, manifest, qg, g, model, ev, x, opts, target, out)
    except OSError as e:
        raise QDeployError(f"-o {out}: cannot write the output folder ({why(Path(out) / MANIFEST, e)}); "
                           "choose a writable location") from None
    return QuantizeResult(out, g, qg, ranges, x, list(g.log), warn, rep, manifest["emitted"])


def _eval_samples(opts: QuantizeOptions, g: Graph, x: np.ndarray, recipe, warn: list[str]):
    """(calibration samples, EvalSet): ``--eval``, or a held-out split of ``x``."""
    from .report.evalset import check_labels, load_eval, split_calibration
    from .report.measure import classes
    if opts.eval is not None:
        ev = load_eval(opts.eval, opts.labels, g.shape(g.inputs[0]), g.inputs[0], recipe)
    else:
        if opts.labels is not None:
            raise QDeployError("--labels needs --eval (the held-out calibration samples have no labels)")
        x, ev = split_calibration(x)
        if len(ev.x) == 0:
            warn.append(f"only {len(x)} calibration sample: nothing held out to evaluate on (give --eval)"
                        + ("; the artefacts are verified on that sample" if opts.verify else ""))
    check_labels(ev, classes(g.shape(g.outputs[0])[1:]))
    return x, ev


def _evaluate(tmp: Path, manifest: dict, qg, g: Graph, model: Path, ev, x, opts: QuantizeOptions,
              target, out: Path) -> dict:
    """Verify and measure the files in ``tmp``; writes report.json + report.html there."""
    from .report.build import HTML_NAME, JSON_NAME, ReportOptions, build_report
    from .report.html import render
    from .report.progress import steps
    base = {"model": str(model), "target": opts.target if isinstance(opts.target, str) else target.name,
            "calib": opts.calib, "method": opts.method, "per_tensor": opts.per_tensor, "cle": opts.cle,
            "fold_gap": opts.fold_gap, "bias_correction": opts.bias_correction,
            "weight_rounding": opts.weight_rounding, "keep_float": list(opts.keep_float), "eval": opts.eval,
            "labels": opts.labels, "out": str(out)}
    ropts = ReportOptions(verify=opts.verify, max_drop=opts.max_drop, min_sqnr=opts.min_sqnr)
    total = 4 + (len(manifest["emitted"]) * 2 if opts.verify else 0)
    with steps("verifying and evaluating", total, opts.progress) as step:
        rep = build_report(tmp, manifest, qg, g, model, ev, base, x, "calibration samples", ropts,
                           progress=step)
    if opts.report:
        write_bytes(tmp / JSON_NAME, dumps_json(rep).encode())
        write_bytes(tmp / HTML_NAME, render(rep).encode())
    return rep


def quantize_samples(g: Graph, x: np.ndarray, target, opts: QuantizeOptions, given=None, recipe=None,
                     cle: bool | None = None, widen: bool = True, relu6: str = "data"):
    """The middle of ``qdeploy quantize`` on arrays, ``g`` edited in place (each step
    appends to ``g.log``): [fold GAP] -> [CLE] -> calibrate on ``x`` (or the ``given``
    Ranges) -> widen graph-output ranges -> quantize -> [bias correction].
    ``cle``: None = from ``opts.cle`` (automatic unless False); ``quantize_model`` passes
    its decision (--ranges switches automatic CLE off). ``widen=False`` keeps the
    calibrated output ranges and ``relu6`` is CLE's ReLU6 policy (quant/cle.py): both
    only for measurements (bench/sqnr.py). Returns (QGraph, Ranges, whether CLE changed
    the graph, warning messages)."""
    from .calibration.calibrate import calibrate
    from .calibration.tails import widen_outputs
    from .passes.shortcut_check import check_shortcuts
    from .quant.quantizer import quantize_graph
    from .quant.targets import load_target
    target = load_target(target)
    per_tensor = _per_tensor(opts, target)
    cle = (opts.cle is not False) if cle is None else cle
    if opts.fold_gap:   # the fold changes no remaining tensor's values: --ranges still fit
        from .passes import fold_gap
        g.log += [(fold_gap.NAME, msg) for msg in fold_gap.run(g)]
    if cle:
        # CLE needs the observed maxima of ReLU6 outputs (see quant/cle.py), then the
        # equalized graph is calibrated again: its activation ranges changed
        cle = equalize_graph(g, x, select=opts.cle is None and not per_tensor, batch_size=opts.batch_size,
                             relu6=relu6)
    ranges = given if given is not None else calibrate(
        g, x, method=opts.method, batch_size=opts.batch_size, progress=opts.progress, recipe=recipe,
        target=target, per_tensor=per_tensor)
    if cle:
        ranges.options["cle"] = True
    bounds = ranges.bounds()
    # a Concat of mismatched ranges feeding the outputs (detector heads), or an output Sigmoid
    # whose small scores the target's fixed int8 grid would flatten, runs in float after
    # dequantization: the tensors entering it become the graph's outputs (quant/float_tail.py)
    from .quant.float_tail import describe, split_tail
    before = check_shortcuts(g, bounds)
    tail = split_tail(g, before, target=target, bounds=bounds)
    if tail is not None:
        g.records["float_tail"] = [tail]      # records hold lists of dicts
        g.log.append(("float_tail", describe(tail)))
        for t in g.outputs:   # the branches are graph outputs now: tailclip leaves outputs unclipped
            if getattr(ranges.observers.get(t), "may_clip", False) and t not in ranges.fixed:
                ranges.observers[t].keep_cover()
                bounds[t] = ranges.range(t)
    if widen:
        bounds, msgs = widen_outputs(g, x, bounds)
        g.log += [("output_range", msg) for msg in msgs]
    # tailclip's whole-model check: every clippable tail clipped when the fake-quantized
    # model's outputs on the calibration samples say so (calibration/clip_check.py)
    from .calibration.clip_check import check_clipping
    bounds, msg = check_clipping(g, x, ranges, bounds, target, per_tensor, progress=opts.progress)
    if msg:
        g.log.append(("clip_check", msg))
    # the shortcut check again, now with measured ranges: what each merge's shared scale costs
    g.records["shortcut"] = check_shortcuts(g, bounds)
    if tail is not None:   # the concats moved to float stay on the record, flagged
        from .quant.float_tail import moved_record
        moved = {n["name"] for n in tail["nodes"]}
        g.records["shortcut"] += [moved_record(r) for r in before if r["node"] in moved]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qg = quantize_graph(g, bounds, target, per_tensor=per_tensor,
                            hists=_pow2_histograms(g, x, ranges, target, opts.batch_size),
                            keep_float=opts.keep_float)
        if opts.weight_rounding == "gptq":
            from .quant.gptq import round_weights
            g.log += [("weight_rounding", msg) for msg in
                      round_weights(g, qg, x, wmax=target.numerics.weight_max)]
        if opts.bias_correction:
            from .quant.bias_correction import correct_bias
            g.log += [("bias_correction", msg) for msg in correct_bias(g, qg, x)]
    if tail is not None:
        qg.metadata["float_tail"] = tail
    return qg, ranges, cle, [str(w.message) for w in caught]


def _per_tensor(opts: QuantizeOptions, target) -> bool:
    """Per-tensor weights: asked for, or the target has no per-channel weights (fpga)."""
    return opts.per_tensor or not target.numerics.weight_per_channel


def equalize_graph(g: Graph, x: np.ndarray, select: bool, batch_size: int = 8, relu6: str = "data") -> bool:
    """Cross-layer equalization of ``g`` in place, as ``quantize`` does it:
    every eligible pair with one second layer, or with ``select`` (automatic
    CLE with per-channel weights) the pairs :func:`~qdeploy.quant.cle.select_for_activations` keeps
    plus :func:`~qdeploy.quant.cle.fit_clamped_depthwise`; messages go to
    ``g.log``. True when a layer was rescaled (the graph changed: calibrate it
    again)."""
    from .calibration.calibrate import calibrate
    from .quant.cle import equalize, fit_clamped_depthwise, select_for_activations
    first = calibrate(g, x, method="minmax", batch_size=batch_size, progress=False)
    only = None
    if select:
        only, msgs = select_for_activations(g, x, first)
        g.log += [("cle", msg) for msg in msgs]
    msgs = equalize(g, first, relu6=relu6, only=only, several=select)
    if select:
        msgs += fit_clamped_depthwise(g, x, first)
    g.log += [("cle", msg) for msg in msgs]
    return any(m.startswith(("CLE equalized", "CLE fitted")) for m in msgs)


def _pow2_histograms(g: Graph, x: np.ndarray, ranges, target, batch_size: int) -> dict | None:
    """Power-of-two targets choose each activation scale by the MSE over the
    tensor's calibration histogram (``quant/pow2_select.py``): the observers'
    own histograms when the method keeps one, else one histogram pass over the
    calibration samples (also with ``--ranges``, so that it and ``--calib`` stay
    byte-identical). None for other targets."""
    if not target.numerics.pow2_scales:
        return None
    from .calibration.calibrate import calibrate
    obs = ranges.observers
    if all(hasattr(o, "counts") for o in obs.values()):
        return dict(obs)
    return dict(calibrate(g, x, method="mse", tensors=[t for t in obs if t in g.tensors], batch_size=batch_size,
                          progress=False).observers)


def _check_options(opts: QuantizeOptions) -> None:
    if opts.method not in METHODS:
        raise QDeployError(f"unknown calibration method '{opts.method}'; choose from {', '.join(METHODS)}")
    if opts.weight_rounding not in WEIGHT_ROUNDINGS:
        raise QDeployError(f"unknown weight rounding '{opts.weight_rounding}'; choose from "
                           f"{', '.join(WEIGHT_ROUNDINGS)}")
    for name in ("limit", "batch_size"):
        v = getattr(opts, name)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise QDeployError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")


def _check_out(out: Path, inputs: list[Path]) -> None:
    """Refuse an OUT that is not ours to replace (see the module docstring)."""
    refuse_cwd(out, "-o")
    if out.suffix.lower() in FILE_SUFFIXES:
        raise QDeployError(f"-o {out}: OUT is a folder (it receives {QGRAPH}, {RANGES}, ...), "
                           f"not a '{out.suffix}' file; give a folder name such as out/")
    if out.exists() and not out.is_dir():
        raise QDeployError(f"-o {out}: is an existing file; OUT must be a folder (absent, empty or "
                           "an earlier qdeploy output)")
    if out.is_dir() and any(out.iterdir()) and not is_output(out):   # any version: replacing it is the fix
        raise QDeployError(f"-o {out}: the folder holds other files and is not a qdeploy output "
                           f"(no qdeploy {MANIFEST}); qdeploy replaces OUT as a whole, so give a "
                           "new or empty folder")
    root = out.resolve()
    for p in inputs:
        if p.exists() and root in p.resolve().parents:
            raise QDeployError(f"{p} lies inside -o {out}, which is replaced as a whole; "
                               "write to another folder")


def _ranges_without_cle(opts: QuantizeOptions, given, cle: bool, warn: list[str]) -> bool:
    """CLE with --ranges (see the module docstring): the decision, or an error."""
    name = Path(opts.ranges).name
    if given.options.get("cle"):
        raise QDeployError(f"--ranges {name} was measured on a cross-layer-equalized graph and fits "
                           "only that graph; quantize with --calib instead (CLE is recomputed from it)")
    if cle and opts.cle:
        raise QDeployError("--ranges cannot be combined with --cle: equalization changes the activation "
                           "ranges (drop --ranges to calibrate the equalized graph, or pass --no-cle)")
    if cle:
        warn.append(f"cross-layer equalization skipped: the ranges of --ranges {name} describe the "
                    "unequalized graph (drop --ranges to equalize and recalibrate)")
    return False


def _manifest(model: Path, opts, target, g: Graph, ranges, samples: int, cle: bool,
              per_tensor: bool, warn: list[str], files: dict[str, bytes]) -> dict:
    calib = Path(opts.calib) if opts.calib else None
    return {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "qdeploy": __version__,
        "model": {"file": model.name, "sha256": _file_sha256(model)},
        "calibration": {"source": calib.name if calib else "bundled calib/",
                        "sha256": _file_sha256(calib) if calib and calib.is_file() else None,
                        "samples": samples, "method": ranges.method,
                        "ranges_file": Path(opts.ranges).name if opts.ranges else None},
        "target": target.summary(),
        "options": {**{k: v for k, v in asdict(opts).items()
                       if k not in ("calib", "ranges", "progress", "target", "emit", "eval", "labels",
                                    "verify", "report", "max_drop", "min_sqnr")},
                    "cle": cle, "per_tensor": per_tensor},
        "inputs": [{"name": n, "shape": list(g.shape(n)[1:])} for n in g.inputs],
        "outputs": _output_specs(g),
        "versions": _versions(),
        "passes": [f"{p}: {m}" for p, m in g.log],
        "shortcuts": [{k: r.get(k) for k in ("node", "op", "ratio", "max_bits_lost", "advice")}
                      for r in g.records.get("shortcut", [])],
        "warnings": warn,
        "artefacts": {name: {"bytes": len(data), "sha256": _sha256(data)} for name, data in sorted(files.items())},
    }


def _output_specs(g: Graph) -> list[dict]:
    """The model's outputs (name, per-sample shape); with a float tail (quant/float_tail.py)
    the tail's outputs, and ``manifest["float_tail"]`` says how the artefacts' outputs make them."""
    if not g.records.get("float_tail"):
        return [{"name": n, "shape": list(g.shape(n)[1:])} for n in g.outputs]
    return [{"name": o["name"], "shape": o["shape"][1:]} for o in g.records["float_tail"][0]["outputs"]]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    """A file's sha256 read 1 MiB at a time (a calibration set may be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict:
    import onnx
    import onnxruntime
    return {"numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


# ---------------------------------------------------------------- run
def is_output(out) -> bool:
    """``out`` holds a qdeploy manifest (of any version, fields unchecked): a
    qdeploy output folder, which quantize may replace."""
    return _load_manifest(out) is not None


def _load_manifest(out) -> dict | None:
    """OUT's manifest.json if it is a qdeploy manifest (any version, fields unchecked), else None."""
    try:
        m = json.loads((Path(out) / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return m if isinstance(m, dict) and m.get("format") == MANIFEST_FORMAT else None


def read_manifest(out, strict: bool = True) -> dict | None:
    """OUT's manifest; a folder without a qdeploy manifest is an error
    (``strict``) or None."""
    out = Path(out)
    m = _load_manifest(out)
    if m is None:
        if not strict:
            return None
        raise QDeployError(f"{out}: not a qdeploy output folder (no qdeploy {MANIFEST}); make one "
                           "with 'qdeploy quantize MODEL -o OUT'")
    if m.get("version") != MANIFEST_VERSION:
        raise QDeployError(f"{out}: written by another qdeploy (manifest version {m.get('version')}, this "
                           f"one reads {MANIFEST_VERSION}); quantize the model again")
    return _check_manifest(m, out)


# what `run` reads of manifest.json (qdeploy/schema.py); the rest is for people
_IO_SCHEMA = {"name": Key("str"), "shape": Key("ints")}
_MANIFEST_SCHEMA = {"inputs": Key("list"), "outputs": Key("list"), "emitted": Key("dict", required=False),
                    "artefacts": Key("dict", required=False), "float_tail": Key("dict", required=False)}
# the float tail (quant/float_tail.py) as apply_tail reads it
_TAIL_SCHEMA = {"branches": Key("list"), "nodes": Key("list"), "outputs": Key("list")}
_TAIL_NODE_SCHEMA = {"op": Key("str"), "inputs": Key("strs"), "outputs": Key("strs"), "attrs": Key("dict")}


def _check_manifest(m: dict, out: Path) -> dict:
    where, fix = f"{out / MANIFEST}", "quantize the model again"
    check(m, _MANIFEST_SCHEMA, where, extra=True, fix=fix)
    for io in ("inputs", "outputs"):
        if not m[io]:
            raise QDeployError(f"{where}: '{io}' is empty; {fix}")
        for k, spec in enumerate(m[io]):
            check(spec, _IO_SCHEMA, where, f"{io}[{k}]", extra=True, fix=fix)
    check(m.get("emitted", {}), {n: Key("str", required=False) for n in ARTEFACTS}, where, "emitted",
          fix=fix)
    for name, rec in m.get("artefacts", {}).items():
        check(rec, {"bytes": Key("int"), "sha256": Key("str")}, where, f"artefacts['{name}']", extra=True, fix=fix)
    if "float_tail" in m:
        tail = check(m["float_tail"], _TAIL_SCHEMA, where, "float_tail", extra=True, fix=fix)
        for part, schema in (("branches", _IO_SCHEMA), ("nodes", _TAIL_NODE_SCHEMA),
                             ("outputs", {"name": Key("str")})):
            for k, rec in enumerate(tail[part]):
                check(rec, schema, where, f"float_tail.{part}[{k}]", extra=True, fix=fix)
    return m


def _run_float(out: Path, inputs: dict[str, np.ndarray], manifest: dict) -> dict[str, np.ndarray]:
    from .float_run import run_samples
    from .onnx_import import import_onnx
    return run_samples(import_onnx(out / FLOAT, name="model"), inputs)   # a corrupt file: one line


def _run_ref(out: Path, inputs: dict[str, np.ndarray], manifest: dict) -> dict[str, np.ndarray]:
    from .quant.interpreter import run
    from .quant.qgraph import load_qgraph
    return run(load_qgraph(out / QGRAPH), inputs)


# backend -> runner(out, inputs, manifest); the artefact backends come from qdeploy/emit ARTEFACTS
BACKENDS = {"float": "qdeploy.pipeline:_run_float", "ref": "qdeploy.pipeline:_run_ref", **_artefact_backends()}


def run_artifact(out, backend: str, x: np.ndarray | dict) -> dict[str, np.ndarray]:
    """Run the artefact of ``backend`` in ``out`` on a batch of inputs (N
    samples of a batch-1 model along the first axis, in the model's own layout;
    one array, or a dict by input name); returns the outputs by name (in the
    model's order), stacked the same way."""
    out = Path(out)
    manifest = read_manifest(out)
    if backend not in BACKENDS:
        raise QDeployError(f"unknown backend '{backend}'; this qdeploy runs: {', '.join(BACKENDS)}")
    art = artefact_of(backend)
    if art is not None and art.name not in manifest.get("emitted", {}):
        raise QDeployError(f"{out}: has no {art.path} (backend '{backend}' runs the '{art.name}' "
                           f"artefact); quantize again with --emit {art.name}")
    check_files(out, manifest, {"float": FLOAT, "ref": QGRAPH}.get(backend) or art.path)
    if backend != "float":   # the artefacts take the QGraph's inputs: the manifest must name the same
        if backend != "ref":
            check_files(out, manifest, QGRAPH)
        check_inputs(out, manifest)
    tail = manifest.get("float_tail")
    # with a float tail the artefacts compute its branches; the model's outputs are assembled in float
    seen = manifest if tail is None else {
        **manifest, "outputs": [{"name": b["name"], "shape": b["shape"][1:]} for b in tail["branches"]]}
    res = load_runner(BACKENDS[backend])(out, _as_inputs(manifest["inputs"], x), seen)
    if tail is None:
        return res
    from .quant.float_tail import apply_tail
    try:
        return apply_tail(tail, res)
    except (KeyError, IndexError, TypeError, ValueError) as e:   # an edited manifest: its tail does not fit
        raise QDeployError(f"{out / MANIFEST}: float_tail does not assemble the model's outputs from the "
                           f"artefact's ({type(e).__name__}: {e}); quantize the model again") from None


def check_inputs(out: Path, manifest: dict, qg=None) -> None:
    """manifest.json's inputs (names, per-sample shapes) are model.qgraph's (``qg``: it, loaded)."""
    from .quant.qgraph import load_qgraph
    qg = qg or load_qgraph(out / QGRAPH)
    have = [(s["name"], list(s["shape"])) for s in manifest["inputs"]]
    want = [(n, list(qg.tensors[n].shape[1:])) for n in qg.inputs]
    if have != want:
        show = lambda io: ", ".join(f"'{n}' {'x'.join(map(str, s))}" for n, s in io)
        raise QDeployError(f"{out / MANIFEST}: inputs {show(have)} are not those of {out / QGRAPH} "
                           f"({show(want)}); quantize the model again")


def _under(name: str, path: str) -> bool:
    """File ``name`` of the manifest is ``path``, or lies under it when ``path`` is a folder ("c/")."""
    return name == path or (path.endswith("/") and name.startswith(path))


def check_files(out: Path, manifest: dict, path: str | None = None) -> None:
    """The files a backend reads (``path``, every file under a folder path
    ending in "/", or None: every file the manifest lists) are the ones quantize
    wrote: size and sha256 as in the manifest, so a truncated or edited artefact
    is one line, not a runtime's crash. Each file a backend reads must be listed
    (the backend's ``path``, or with None every emitted artefact, the QGraph and the
    float model): an edited manifest.json that drops one vouches for nothing."""
    listed = manifest.get("artefacts", {})
    emitted = [ARTEFACTS[a].path for a in manifest.get("emitted", {}) if a in ARTEFACTS]
    needed = [path] if path is not None else [QGRAPH, FLOAT, *emitted]
    for p in needed:
        if not any(_under(name, p) for name in listed):
            raise QDeployError(f"{out / MANIFEST}: lists no size and sha256 for {p}, so it cannot be checked "
                               "before it runs; quantize the model again to rewrite OUT")
    for name, rec in listed.items():
        if path is not None and not _under(name, path):
            continue
        f = out / name
        data = f.read_bytes() if f.is_file() else None
        if data is None or len(data) != rec.get("bytes") or _sha256(data) != rec.get("sha256"):
            state = "is missing" if data is None else "differs from what quantize wrote (size or sha256)"
            raise QDeployError(f"{f} {state}; quantize again to rewrite OUT")


def _as_inputs(specs: list[dict], x) -> dict[str, np.ndarray]:
    names = [s["name"] for s in specs]
    if isinstance(x, dict) and len(x) == 1 and len(names) == 1:
        x = next(iter(x.values()))
    if isinstance(x, dict):
        missing = [n for n in names if n not in x]
        if missing:
            raise QDeployError(f"the inputs lack the model input(s) {', '.join(missing)} (given: "
                               f"{', '.join(x) or 'none'}); name the arrays after the model's inputs")
    elif len(names) != 1:
        raise QDeployError(f"the model has {len(names)} inputs; give them as an .npz with arrays "
                           f"named {', '.join(names)}")
    else:
        x = {names[0]: x}
    inputs, sizes = {}, set()
    for s in specs:
        v = np.asarray(x[s["name"]])
        want = "x".join(map(str, s["shape"]))
        require_float(v, f"input '{s['name']}'")
        if v.ndim != len(s["shape"]) + 1 or list(v.shape[1:]) != s["shape"]:
            got = "x".join(map(str, v.shape)) if v.ndim else "a scalar"
            raise QDeployError(f"input '{s['name']}' is {got} {v.dtype}; the model takes N x {want} "
                               "(N samples along the first axis)")
        if len(v) == 0 or not np.isfinite(v).all():
            raise QDeployError(f"input '{s['name']}' " + ("has no samples" if len(v) == 0 else
                               "contains NaN or Inf") + f"; give N >= 1 finite samples of {want}")
        inputs[s["name"]] = np.ascontiguousarray(v, np.float32)
        sizes.add(len(v))
    if len(sizes) != 1:
        raise QDeployError(f"the inputs have different sample counts ({sorted(sizes)}); give the "
                           "same N for every input")
    return inputs
