"""``qdeploy targets``: the bundled target profiles and their constraints."""
from __future__ import annotations

import json

import click

from ..quant.targets import list_targets, load_target


@click.command("targets")
@click.argument("extra", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def targets(extra, as_json):
    """List the bundled targets (and any EXTRA .toml target files given)."""
    ts = list_targets() + [load_target(p) for p in extra]
    if as_json:
        click.echo(json.dumps([dict(t.summary(), path=t.path) for t in ts], indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title="qdeploy targets")
    for col in ("target", "profile", "activations", "weights", "requant", "memory", "emits"):
        table.add_column(col)
    for t in ts:
        n = t.numerics
        acts = f"{n.activation_dtype} {'sym' if n.activation_symmetric else 'asym'}"
        weights = (f"{'int8' if n.weight_bits == 8 else f'{n.weight_bits}-bit'} "
                   f"per-{'channel' if n.weight_per_channel else 'tensor'}"
                   + (" (QDQ: as uint8)" if n.weight_dtype == "uint8" else ""))
        requant = ("pow2 shift" if n.pow2_scales else n.requant) + (", leaky shift" if n.leaky == "shift" else "")
        mem = " / ".join(f"{k} {v} KiB" for k, v in (("flash", t.flash_kib), ("RAM", t.ram_kib)) if v) or "-"
        table.add_row(t.name, t.profile, acts, weights, requant, mem, ", ".join(t.emit))
    con = Console()
    con.print(table)
    for t in ts:
        extra = f" Unsupported ops: {', '.join(t.unsupported)}." if t.unsupported else ""
        con.print(f"[bold]{t.name}[/bold]: {t.description}.{extra} LUT activations: "
                  f"{', '.join(t.numerics.luts) or 'none'}. ({t.path})", highlight=False)
