"""``qdeploy calib ranges MODEL SET.npz -o ranges.json``: calibrate a model.

Thin layer over :func:`calibrate_model`: import, run the passes, check the set
against the model's input, calibrate with streaming observers, write
``ranges.json`` (format: :mod:`qdeploy.calibration.ranges`) and print the
widest and the most clipped tensors. When the model's input has dynamic
non-batch dims and no ``--input-shape`` is given, they are taken from the set.
"""
from __future__ import annotations

from pathlib import Path

import click

from ..calibration import dataset
from ..calibration.observers import METHODS
from ..calibration.ranges import Ranges, save_ranges
from ..errors import QDeployError
from ..fsutil import dumps_json
from .types import PERCENTILE, POSITIVE

TOP = 8


def calibrate_model(model, set_path, method: str = "tailclip", input_shape=None, batch_size: int = 8,
                    percentile: float = 99.99, progress: bool = True) -> Ranges:
    """The Python form of ``qdeploy calib ranges`` (without writing)."""
    from ..calibration.calibrate import calibrate   # here: it loads onnx (``qdeploy --help`` needs none)
    from ..onnx_import import check_batch_one, import_onnx, load_model
    from ..passes import run_passes
    cs = dataset.load_set(set_path, lazy=True)   # read a batch at a time: memory flat in the set size
    if input_shape is None:
        input_shape = _shape_from_set(load_model(model), cs)
    g = import_onnx(model, input_shapes=input_shape)
    check_batch_one(g)
    g = run_passes(g)
    if len(g.inputs) != 1:
        raise QDeployError(f"{model}: has {len(g.inputs)} inputs; calib ranges handles single-input models")
    dataset.check_against_model(cs, g.shape(g.inputs[0]), g.inputs[0])
    return calibrate(g, cs.x, method=method, batch_size=batch_size, progress=progress,
                     percentile=percentile, recipe=cs.recipe)


def _shape_from_set(proto, cs) -> list[int] | None:
    inits = {i.name for i in proto.graph.initializer}
    ins = [i for i in proto.graph.input if i.name not in inits]
    if len(ins) != 1:
        return None
    dims = ins[0].type.tensor_type.shape.dim
    dynamic = [not (d.HasField("dim_value") and d.dim_value > 0) for d in dims]
    if len(dims) == len(cs.sample_shape) + 1 and any(dynamic[1:]):
        return [1, *cs.sample_shape]
    return None


@click.command("ranges")
@click.argument("model", type=click.Path(path_type=str))
@click.argument("calib_set", metavar="SET.npz", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, help="ranges file to write (.json)")
@click.option("--method", type=click.Choice(list(METHODS) + ["auto"]), default="tailclip", show_default=True,
              help="auto: chosen by the output of the model quantized for the arm profile")
@click.option("--percentile", type=PERCENTILE, default=99.99, show_default=True,
              help="for --method percentile: keep [100-p, p] of the values")
@click.option("--input-shape", "input_shape", metavar="1x3xHxW", help="fix dynamic input dims")
@click.option("--batch-size", type=POSITIVE, default=8, show_default=True,
              help="samples per onnxruntime run (memory grows with it, not with the set)")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar or table")
@click.option("--json", "as_json", is_flag=True, help="print the per-tensor ranges as JSON only")
def ranges(model, calib_set, output, method, percentile, input_shape, batch_size, quiet, as_json):
    """Calibrate MODEL on SET.npz: per-tensor ranges (+ histograms) into a JSON file."""
    out = Path(output)
    if out.suffix.lower() != ".json":
        raise QDeployError(f"output {out} must end in .json (a ranges file is JSON)")
    if batch_size < 1:
        raise QDeployError(f"--batch-size must be at least 1, got {batch_size}")
    shape = None
    if input_shape:
        from ..onnx_import import parse_input_shape
        shape = parse_input_shape(input_shape)[1]
    r = calibrate_model(model, calib_set, method=method, input_shape=shape, batch_size=batch_size,
                        percentile=percentile, progress=not (quiet or as_json))
    save_ranges(r, out)
    if as_json:
        table = {n: {k: v for k, v in s.items() if k != "hist"} for n, s in r.table().items()}
        click.echo(dumps_json({"output": str(out), "model": r.model, "method": r.method,
                               "samples": r.samples, "tensors": table}), nl=False)
    elif not quiet:
        render(r, out)


def render(r: Ranges, out, console=None) -> None:
    from rich.console import Console
    from rich.table import Table
    con = console or Console()
    rows = r.table()
    con.print(f"wrote {out}: {len(rows)} tensors, method {r.method}, {r.samples} samples")
    for title, key in (("widest ranges", lambda s: s["hi"] - s["lo"]),
                       ("most clipped", lambda s: s["clipped"])):
        t = Table(title=title, title_justify="left")
        for col in ("tensor", "min", "max", "lo", "hi", "clipped %"):
            t.add_column(col, justify="left" if col == "tensor" else "right")
        top = sorted(rows.items(), key=lambda kv: -key(kv[1]))[:TOP]
        if title == "most clipped":
            top = [kv for kv in top if kv[1]["clipped"] > 0]
            if not top:
                con.print("nothing clipped (method minmax keeps every value)" if r.method == "minmax"
                          else "nothing clipped")
                continue
        for name, s in top:
            t.add_row(name, f"{s['min']:.4g}", f"{s['max']:.4g}", f"{s['lo']:.4g}", f"{s['hi']:.4g}",
                      f"{100 * s['clipped']:.3f}")
        con.print(t)
