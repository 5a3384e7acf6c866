"""``qdeploy calib build`` and ``qdeploy calib inspect`` (calibration sets).

Thin layer over :mod:`qdeploy.calibration.dataset`. Warnings go to stderr as
``warning: ...`` (also with ``--quiet``, which only hides the progress bar and
the summary); bad input is one ``error:`` line, exit 2, and no file written.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from ..calibration import dataset
from ..calibration.recipe import CHANNELS, DEFAULT_PAD, LAYOUTS, PRESETS, RESIZE_MODES
from ..errors import QDeployError
from ..fsutil import dumps_json
from .types import PIXEL, POSITIVE, SEED


def _floats(text: str | None, what: str):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise QDeployError(f"--{what} '{text}' is not a comma-separated list of finite numbers "
                           "(e.g. 0.485,0.456,0.406)")
    return values


@click.group()
def calib():
    """Calibration sets (build, inspect) and per-tensor ranges (ranges)."""


@calib.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGES...")
@click.option("-o", "--output", required=True, help="the set to write (.npz)")
@click.option("--size", help="HxW to resize images to (default: keep; then all must match)")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="imagenet", show_default=True,
              help="normalisation: imagenet mean/std, unit [0,1], symmetric [-1,1], raw 0..255")
@click.option("--mean", help="per-channel mean in the preset's units, output channel order")
@click.option("--std", help="per-channel std in the preset's units, output channel order")
@click.option("--layout", type=click.Choice(LAYOUTS), default="nchw", show_default=True)
@click.option("--channels", type=click.Choice(CHANNELS), default="rgb", show_default=True)
@click.option("--resize", type=click.Choice(RESIZE_MODES), default="crop", show_default=True,
              help="stretch | crop (shorter side + centre crop) | letterbox")
@click.option("--pad", type=PIXEL, default=DEFAULT_PAD, show_default=True,
              help="letterbox fill value (pixel units 0..255)")
@click.option("--limit", type=POSITIVE, help="use at most N inputs, chosen with --seed")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--strict", is_flag=True, help="unreadable images and a 1-sample set are errors")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar or summary")
def build(inputs, output, size, preset, mean, std, layout, channels, resize, pad, limit, seed,
          strict, quiet):
    """Preprocess IMAGES (files or folders; or .npy/.npz tensors) into a calibration set."""
    out = Path(output)
    if out.suffix.lower() != ".npz":
        raise QDeployError(f"output {out} must end in .npz (a calibration set is an .npz file)")
    warn = lambda msg: click.echo(f"warning: {msg}", err=True)
    kwargs = dict(size=size, preset=preset, mean=_floats(mean, "mean"), std=_floats(std, "std"),
                  layout=layout, channels=channels, resize=resize, pad=pad, limit=limit,
                  seed=seed, strict=strict, on_warning=warn, exclude=[out])
    if quiet or not sys.stderr.isatty():   # no bar remnants in logs, pipes and error output
        cs = dataset.build_set(inputs, **kwargs)
    else:
        from rich.progress import Progress
        with Progress(transient=True, console=_stderr_console()) as bar:
            task = bar.add_task("reading", total=None)
            cs = dataset.build_set(inputs, **kwargs,
                                   on_progress=lambda done, total: bar.update(task, completed=done,
                                                                              total=total))
    dataset.save_set(cs, out)
    if not quiet:
        click.echo(f"wrote {out}: {cs.count} x {'x'.join(map(str, cs.sample_shape))} float32 "
                   f"({dataset.describe(cs.recipe)})")


def _stderr_console():
    from rich.console import Console
    return Console(stderr=True)


@calib.command("inspect")
@click.argument("set_path", metavar="SET.npz")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def inspect_(set_path, as_json):
    """Count, shape, recipe, per-channel statistics, duplicates and warnings of a set."""
    report = dataset.inspect_set(dataset.load_set(set_path))
    if as_json:
        click.echo(dumps_json(report), nl=False)
        return
    from rich.console import Console
    from rich.table import Table
    con = Console()
    rec = report["recipe"]
    con.print(f"[bold]{set_path}[/bold]: {report['count']} samples, shape "
              f"{'x'.join(map(str, report['shape']))} {report['dtype']}")
    con.print(f"recipe: {report['summary']}")
    if rec.get("kind") == "images":
        con.print(f"  x = (pixel * {rec['scale']:.6g} - mean) / std, mean "
                  f"{[round(v, 4) for v in rec['mean']]}, std {[round(v, 4) for v in rec['std']]}")
    table = Table("channel", "mean", "std", "min", "max")
    for c in report["channels"]:
        table.add_row(str(c["channel"]), *(f"{c[k]:.4f}" for k in ("mean", "std", "min", "max")))
    con.print(table)
    for w in report["warnings"]:
        click.echo(f"warning: {w}", err=True)


from .calib_ranges import ranges  # noqa: E402  (qdeploy calib ranges)

calib.add_command(ranges)


# `qdeploy calib ranges` lives in its own module (the calibrator's command).
from .calib_ranges import ranges  # noqa: E402
calib.add_command(ranges)
