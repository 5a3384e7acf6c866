"""``qdeploy report OUT --eval SET.npz [--labels L.npy]``: evaluate a quantize OUT again, on
another set, into OUT/report.json + OUT/report.html (:func:`qdeploy.report.rerun.report_out`)."""
from __future__ import annotations

import click

from .types import DECIBELS, POINTS


@click.command("report")
@click.argument("out")
@click.option("--eval", "eval_set", required=True,
              help="Evaluation set (.npz from 'calib build', an .npz with x [and labels y], or .npy).")
@click.option("--labels", default=None, help="Class labels of --eval (.npy of integers), for accuracy.")
@click.option("--model", default=None,
              help="The original ONNX file (default: the manifest's model file name, beside OUT or in the "
                   "current folder; checked by sha256). The float reference of every metric.")
@click.option("--no-verify", is_flag=True, help="Do not run the emitted artefacts again.")
@click.option("--max-drop", type=POINTS, default=1.0, show_default=True,
              help="Verdict threshold: accuracy drop with labels, else top-1 disagreement (points). "
                   "A FAIL verdict exits with code 1 (the artefacts are still written).")
@click.option("--min-sqnr", type=DECIBELS, default=20.0, show_default=True,
              help="Verdict threshold (dB) for outputs that are not class scores. A FAIL verdict "
                   "exits with code 1.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def report(out, eval_set, labels, model, no_verify, max_drop, min_sqnr, quiet):
    """Re-run verification and the accuracy-drop report of OUT on an evaluation set."""
    import sys
    from pathlib import Path

    from ..pipeline import read_manifest
    from ..report.build import ReportOptions
    from ..report.rerun import report_out
    from ..report.summary import lines
    from . import exit_on_fail
    rep = report_out(out, eval_set, labels, model,
                     ReportOptions(verify=not no_verify, max_drop=max_drop, min_sqnr=min_sqnr),
                     progress=not quiet and sys.stderr.isatty())
    if not quiet:
        for line in lines(rep, read_manifest(out), Path(out)):
            click.echo(line)
    exit_on_fail(rep)
