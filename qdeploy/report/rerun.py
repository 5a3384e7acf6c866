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


def find_model(out: Path, manifest: dict, given=None) -> Path:
    want = manifest["model"]
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
    from ..pipeline import FLOAT, QGRAPH, RANGES, check_files, read_manifest
    from ..quant.qgraph import load_qgraph
    from .build import HTML_NAME, JSON_NAME, ReportOptions, build_report
    from .evalset import check_labels, load_eval
    from .html import render
    from .measure import classes
    from .progress import steps
    import onnx
    out = Path(out)
    manifest = read_manifest(out)
    check_files(out, manifest)   # a truncated or edited artefact: one line before anything runs
    src = find_model(out, manifest, model)
    qg = load_qgraph(out / QGRAPH)
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
            "keep_float": list(o.get("keep_float") or []), "eval": str(eval_set), "labels": labels, "out": str(out)}
    ropts = ropts or ReportOptions()
    with steps("verifying and evaluating", 4 + 2 * len(manifest.get("emitted", {})), progress) as step:
        rep = build_report(out, manifest, qg, g, src, ev, base, ev.x, "evaluation samples", ropts, progress=step)
    write_bytes(out / JSON_NAME, dumps_json(rep).encode())
    write_bytes(out / HTML_NAME, render(rep).encode())
    return rep
