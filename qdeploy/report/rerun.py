"""``qdeploy report OUT --eval SET``: verification and the report again, on another set.

The original model is found by the manifest's file name (``--model`` overrides), beside
OUT or in the current folder, and must have the manifest's sha256: the float reference
of the report is the model as it was quantized. The activation histograms come from the
evaluation samples (the calibration samples are not in OUT). report.json and report.html
are each replaced atomically; nothing else in OUT changes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import QDeployError
from ..pipeline import WEIGHT_ROUNDING, WEIGHT_ROUNDINGS
from ..schema import Key, check

# what the report reads of manifest.json beyond what `run` reads (pipeline._check_manifest)
_SCHEMA = {"model": Key("dict"), "options": Key("dict"), "target": Key("dict"),
           "calibration": Key("dict", required=False), "memory": Key("dict", required=False, nullable=True),
           "shortcuts": Key("list", required=False), "float_nodes": Key("list", required=False),
           "passes": Key("strs", required=False)}
_PARTS = {"model": {"file": Key("str"), "sha256": Key("str")},
          "options": {"per_tensor": Key("bool", required=False), "fold_gap": Key("bool", required=False),
                      "bias_correction": Key("bool", required=False, nullable=True),
                      "weight_rounding": Key("str", WEIGHT_ROUNDINGS, required=False),
                      "keep_float": Key("strs", required=False, nullable=True)},
          "target": {"name": Key("str", required=False), "profile": Key("str", required=False),
                     "numerics": Key("dict", required=False)},
          "calibration": {"source": Key("str", required=False, nullable=True),
                          "method": Key("str", required=False), "ranges_file": Key("str", required=False,
                                                                                     nullable=True)}}


def check_manifest(manifest: dict, out: Path) -> None:
    """The manifest fields the report reads, type-checked: one line, not a traceback."""
    where, fix = f"{out / 'manifest.json'}", "quantize the model again"
    check(manifest, _SCHEMA, where, extra=True, fix=fix)
    for part, schema in _PARTS.items():
        if part in manifest:
            check(manifest[part], schema, where, part, extra=True, fix=fix)


def find_model(out: Path, manifest: dict, given=None) -> Path:
    want = manifest["model"]
    if given and not Path(given).is_file():
        raise QDeployError(f"--model {given}: no such file (or not a file); give the ONNX file OUT was quantized from "
                           f"({want['file']})")
    cands = [Path(given)] if given else [out.parent / want["file"], Path.cwd() / want["file"]]
    for p in cands:
        if p.is_file():
            if hashlib.sha256(p.read_bytes()).hexdigest() == want["sha256"]:
                return p
            if given:
                raise QDeployError(f"--model {p}: not the model OUT was quantized from (sha256 differs "
                                   f"from manifest.json's {want['file']})")
    raise QDeployError(f"{out}: cannot find the original {want['file']} (looked beside OUT and in the current "
                       "folder, by sha256); give it with --model")


def report_out(out, eval_set, labels=None, model=None, ropts=None, progress: bool = False) -> dict:
    from ..calibration.ranges import load_ranges
    from ..fsutil import dumps_json, write_bytes
    from ..onnx_import import import_onnx
    from ..pipeline import FLOAT, QGRAPH, RANGES, check_files, check_inputs, read_manifest
    from ..quant.qgraph import load_qgraph
    from .build import HTML_NAME, JSON_NAME, ReportOptions, build_report
    from .evalset import check_labels, load_eval
    from .html import render
    from .measure import classes
    from .progress import steps
    import onnx
    out = Path(out)
    manifest = read_manifest(out)
    check_manifest(manifest, out)
    check_files(out, manifest)   # a truncated or edited artefact: one line before anything runs
    qg = load_qgraph(out / QGRAPH)
    check_inputs(out, manifest, qg)
    src = find_model(out, manifest, model)
    g = import_onnx(onnx.load(str(out / FLOAT)), name=qg.name)
    try:
        recipe = load_ranges(out / RANGES).recipe
    except QDeployError:
        recipe = None
    inp = manifest["inputs"][0]
    ev = load_eval(eval_set, labels, [1] + inp["shape"], inp["name"], recipe)
    check_labels(ev, classes(manifest["outputs"][0]["shape"]))
    o, cal = manifest["options"], manifest.get("calibration", {})
    base = {"model": str(src), "target": manifest["target"].get("name"),
            "calib": cal.get("source") if cal.get("source") != "bundled calib/" else None,
            "method": cal.get("method", "minmax"), "per_tensor": o.get("per_tensor"), "cle": None,
            "fold_gap": o.get("fold_gap"), "bias_correction": o.get("bias_correction"),
            "weight_rounding": o.get("weight_rounding", WEIGHT_ROUNDING),
            "keep_float": list(o.get("keep_float") or []), "eval": str(eval_set), "labels": labels, "out": str(out)}
    ropts = ropts or ReportOptions()
    with steps("verifying and evaluating", 4 + 2 * len(manifest.get("emitted", {})), progress) as step:
        rep = build_report(out, manifest, qg, g, src, ev, base, ev.x, "evaluation samples", ropts, progress=step)
    write_bytes(out / JSON_NAME, dumps_json(rep).encode())
    write_bytes(out / HTML_NAME, render(rep).encode())
    return rep
