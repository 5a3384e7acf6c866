"""``qdeploy quantize MODEL --target T -o OUT``: the main job (:func:`qdeploy.pipeline.quantize_model`).

Output: one summary line on stdout (``--json``: a JSON object and nothing else;
``--quiet``: nothing), warnings on stderr; the progress bar goes to stderr and
only when stderr is a terminal (so logs and pipes get no bar remnants). Exit code 1 after
a FAIL verdict (:func:`qdeploy.cli.exit_on_fail`, also for ``qdeploy report``), with OUT complete.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..pipeline import METHODS, WEIGHT_ROUNDING, WEIGHT_ROUNDINGS, QuantizeOptions, quantize_model
from ..quant.float_island import float_nodes, split_names
from . import exit_on_fail
from .types import DECIBELS, POINTS, POSITIVE


def shortcut_advice(graph, min_bits: float = 1.0) -> list[dict]:
    """Merges whose shared int8 scale costs at least ``min_bits`` bits on a branch, except
    the concats cut into the float tail: its own note explains them (quant/float_tail.py)."""
    return [r for r in graph.records.get("shortcut", [])
            if (r.get("max_bits_lost") or 0.0) >= min_bits and r.get("advice") and not r.get("float_tail")]


@click.command("quantize")
@click.argument("model")
@click.option("--target", "-t", default="arm", show_default=True,
              help="Target name (see 'qdeploy targets') or the path of a target .toml.")
@click.option("--calib", default=None,
              help="Calibration set (.npz from 'qdeploy calib build', or .npy tensors) or a folder of "
                   "images. Default: the bundled calib/ photographs, preprocessed for the model's input.")
@click.option("--ranges", "ranges_file", default=None,
              help="Reuse a ranges.json ('qdeploy calib ranges') instead of measuring ranges; "
                   "--calib still feeds bias correction.")
@click.option("--method", type=click.Choice(METHODS), default="tailclip", show_default=True,
              help="Calibration method (tailclip: min/max ranges, the heavy tails of a tensor "
                   "clipped where that lowers its int8 error by more than 2 dB).")
@click.option("--per-tensor", is_flag=True, help="One weight scale per tensor instead of per channel.")
@click.option("--preset", type=click.Choice(["imagenet", "unit", "symmetric", "raw"]), default="imagenet",
              show_default=True, help="Preprocessing of calibration images (folder or bundled).")
@click.option("--input-shape", "shapes", multiple=True,
              help="Fix dynamic input dims: 1x3x224x224 or name:1x3x224x224 (repeatable).")
@click.option("--cle/--no-cle", default=None,
              help="Cross-layer equalization (default: automatic: for per-tensor weights every layer "
                   "pair whose first layer has one reader; for per-channel weights the pairs, also with "
                   "several readers (fire modules, SE blocks), where it evens out the activations; "
                   "off with --ranges). --cle: every pair with one reader.")
@click.option("--bias-correction/--no-bias-correction", default=False, show_default=True,
              help="Empirical bias correction from the calibration set (see bench/RESULTS.md).")
@click.option("--weight-rounding", type=click.Choice(WEIGHT_ROUNDINGS), default=WEIGHT_ROUNDING,
              show_default=True,
              help="How the int8 weights are rounded: nearest, or gptq (each conv/FC layer's rounding "
                   "errors compensated on its calibration inputs: helps models whose weights cost most, "
                   "loses on most; compare the two reports, see bench/RESULTS.md).")
@click.option("--fold-gap", is_flag=True,
              help="Fold each GlobalAveragePool into the 1x1 conv after it (SE blocks, conv heads): "
                   "more precise, but H*W times that conv's weights and MACs.")
@click.option("--keep-float", "keep_float", multiple=True, metavar="NODE",
              help="ort target only: run this Conv/ConvTranspose/Gemm layer in float (its input "
                   "dequantized, its output quantized at its calibrated scale); names as 'qdeploy inspect' "
                   "and the report show them; repeatable or comma-separated.")
@click.option("--limit", type=POSITIVE, default=None, help="Use the first N calibration samples.")
@click.option("--batch-size", type=POSITIVE, default=8, show_default=True, help="Calibration batch size.")
@click.option("--emit", default=None,
              help="Artefacts to write, comma-separated: qdq, tflite, c (default: the target's 'emit').")
@click.option("--io", type=click.Choice(["int8", "float"]), default="int8", show_default=True,
              help="Inputs/outputs of model.int8.tflite: int8 (what firmware feeds), or float32 with "
                   "QUANTIZE/DEQUANTIZE added at the edges (refused when no TFLite file is emitted).")
@click.option("--eval", "eval_set", default=None,
              help="Evaluation set (.npz from 'calib build', an .npz with x [and labels y], or .npy). "
                   "Default: a seeded held-out 20% of the calibration samples, never calibrated on.")
@click.option("--labels", default=None, help="Class labels of --eval (.npy of integers), for accuracy.")
@click.option("--no-verify", is_flag=True,
              help="Do not run the emitted artefacts against the reference interpreter.")
@click.option("--max-drop", type=POINTS, default=1.0, show_default=True,
              help="Verdict threshold: accuracy drop with labels, else top-1 disagreement (points). "
                   "A FAIL verdict exits with code 1 (the artefacts are still written).")
@click.option("--min-sqnr", type=DECIBELS, default=20.0, show_default=True,
              help="Verdict threshold (dB) for outputs that are not class scores. A FAIL verdict "
                   "exits with code 1.")
@click.option("-o", "--out", default=None,
              help="Output folder (replaced as a whole, atomically). Default: <model>_<target>/ in the "
                   "current folder.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout (nothing else).")
def quantize(model, target, calib, ranges_file, method, per_tensor, preset, shapes, cle,
             bias_correction, weight_rounding, fold_gap, keep_float, limit, batch_size, emit, io, eval_set, labels,
             no_verify, max_drop, min_sqnr, out, quiet, as_json):
    """Quantize MODEL (ONNX) for a target; writes OUT/ atomically, verifies every emitted
    artefact against the reference interpreter and writes the accuracy-drop report
    (OUT/report.html, OUT/report.json)."""
    from ..onnx_import import parse_input_shapes
    if out is None:
        out = default_out(model, target)
    opts = QuantizeOptions(target=target, calib=calib, ranges=ranges_file, method=method,
                           per_tensor=per_tensor, preset=preset, input_shape=parse_input_shapes(shapes),
                           cle=cle, bias_correction=bias_correction, weight_rounding=weight_rounding,
                           fold_gap=fold_gap,
                           keep_float=split_names(keep_float), limit=limit,
                           batch_size=batch_size, emit=emit, emit_options={"io": io}, eval=eval_set,
                           labels=labels,
                           verify=not no_verify, report=True, max_drop=max_drop, min_sqnr=min_sqnr,
                           progress=not (quiet or as_json) and sys.stderr.isatty())
    res = quantize_model(model, out, opts)
    summary = {"out": str(res.out), "target": res.qgraph.target, "samples": int(len(res.calib_x)),
               "method": res.ranges.method, "nodes": len(res.qgraph.nodes),
               "ops": res.qgraph.op_counts(), "files": sorted(p.name for p in res.out.iterdir()),
               "equalized_pairs": sum(1 for kind, msg in res.log if kind == "cle"
                                      and msg.startswith(("CLE equalized", "CLE fitted"))),
               "widened_outputs": sum(1 for kind, _ in res.log if kind == "output_range"),
               "folded_pools": sum(1 for kind, _ in res.log if kind == "fold_gap"),
               "clip_check": res.ranges.options.get("clip_check"),
               "warnings": res.warnings,
               "float_nodes": [f["node"] for f in float_nodes(res.qgraph)],
               "verdict": res.report["verdict"] if res.report else None,
               "verification": {v["backend"]: v["status"] for v in (res.report or {}).get("verification", [])}}
    memory = json.loads((res.out / "manifest.json").read_text()).get("memory")
    if memory:
        summary["memory"] = memory
    if as_json:
        from ..fsutil import dumps_json
        click.echo(dumps_json(summary), nl=False)
    elif not quiet:
        _print_summary(res, summary, model, fold_gap, memory)
    exit_on_fail(res.report)


def _print_summary(res, summary: dict, model, fold_gap: bool, memory) -> None:
    for w in res.warnings:
        click.echo(f"warning: {w}", err=True)
    for r in shortcut_advice(res.graph):
        click.echo(f"note: {r['op']} '{r['node']}': {r['advice']}", err=True)
    for kind, msg in res.log:   # what runs in float after dequantization, and why (quant/float_tail.py)
        if kind == "float_tail":
            click.echo(f"note: float tail: {msg}", err=True)
        elif kind == "clip_check":   # tailclip clipped every tail (calibration/clip_check.py)
            click.echo(f"note: calibration: {msg}", err=True)
    click.echo(f"quantized {model} for '{summary['target']}' ({summary['nodes']} int8 nodes, "
               f"{summary['samples']} calibration samples, {summary['method']}, "
               f"{summary['equalized_pairs']} layer pairs equalized, {summary['widened_outputs']} "
               f"output ranges widened" + (f", {summary['folded_pools']} pools folded" if fold_gap else "")
               + (f"; C bundle: arena {memory['arena_bytes']} B (lower bound {memory['arena_lower_bound']} B), "
                  f"flash {memory['flash_bytes']} B ({memory['weights_bytes']} B const data + about "
                  f"{memory['code_bytes']} B code)" if memory else "")
               + f"; details in manifest.json) -> {res.out}/: "
               + ", ".join(summary["files"]))
    if res.report:
        from ..pipeline import read_manifest
        from ..report.summary import lines
        for line in lines(res.report, read_manifest(res.out), res.out):
            click.echo(line)


def default_out(model, target) -> str:
    """``<model stem>_<target name>`` in the current folder (a target .toml: its stem)."""
    return f"{Path(model).stem}_{Path(target).stem if target.endswith('.toml') else target}"
