"""``qdeploy inspect MODEL``: the analysis of :func:`qdeploy.inspect.inspect_model`
as rich tables (readable at 100 columns) or, with ``--json``, as JSON only."""
from __future__ import annotations

import click

TOP_LAYERS = 10


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("--target", default=None, metavar="T",
              help="target whose limits are checked: a bundled name (see 'qdeploy targets') or a .toml file")
@click.option("--input-shape", "input_shape", multiple=True, metavar="[NAME:]1x3xHxW",
              help="fix dynamic input dims (repeat as name:dims for several inputs)")
@click.option("--json", "as_json", is_flag=True, help="print only the JSON analysis")
def inspect(model, target, input_shape, as_json):
    """Ops, parameters, MACs, receptive field per stage, passes, shortcuts and deploy lint."""
    from ..fsutil import dumps_json
    from ..inspect import inspect_model
    from ..onnx_import import parse_input_shapes
    report = inspect_model(model, target=target, input_shape=parse_input_shapes(input_shape))
    if as_json:
        click.echo(dumps_json(report), nl=False)
        return
    render(report)


def _n(x: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return str(x)


def _hw(v) -> str:
    return "-" if v is None else "x".join(str(x) for x in v)


def render(r: dict, console=None) -> None:
    """Print the report as tables."""
    from rich.console import Console
    from rich.table import Table
    con = console or Console()

    def table(title, *cols):
        t = Table(title=title, title_justify="left", title_style="bold")
        for c in cols:
            t.add_column(c, overflow="fold", justify="right" if c in ("MACs", "share", "params", "count",
                                                                       "layers") else "left")
        return t

    m, p = r["model"], r["params"]
    t = table(f"{m['name']}  (opset {m['opset']}, target {r['target'] or 'none'})", "what", "value")
    for io in ("inputs", "outputs"):
        t.add_row(io, ", ".join(f"{x['name']} {_hw(x['shape'])} {x['dtype']}" for x in r[io]))
    t.add_row("nodes", str(r["nodes"]))
    t.add_row("parameters", f"{_n(p['count'])} ({_n(p['fp32_bytes'])}B fp32; {_n(p['int8_bytes'])}B int8 "
                            f"{p['int8_counted_on']})")
    mc = r["macs"]
    t.add_row("MACs", f"{_n(mc['total'])} (conv {_n(mc['conv'])}, transposed {_n(mc['conv_transpose'])}, "
                      f"fc {_n(mc['fc'])})")
    t.add_row("", mc["note"])
    con.print(t)

    t = table("op histogram", "op", "count", "op", "count", "op", "count")
    ops = list(r["ops"].items())
    for k in range(0, len(ops), 3):
        row = [x for op, c in ops[k:k + 3] for x in (op, str(c))]
        t.add_row(*(row + [""] * (6 - len(row))))
    con.print(t)

    t = table("stages (layers between downsamplings)", "#", "resolution", "stride", "layers",
              "channels", "RF at end", "MACs", "share")
    for s in r["stages"]:
        t.add_row(str(s["index"]), _hw(s["resolution"]), _hw(s["jump"]), str(s["layers"]),
                  str(s["channels"]), _hw(s["rf_end"]), _n(s["macs"]), f"{s['macs_share']:.1%}")
    con.print(t)

    t = table(f"top {TOP_LAYERS} layers by MACs", "layer", "op", "kernel/stride", "out", "RF", "MACs", "share")
    for l in sorted(r["layers"], key=lambda l: -l["macs"])[:TOP_LAYERS]:
        ks = "-" if l["kernel"] is None else f"{_hw(l['kernel'])}/{_hw(l['stride'])}" + (
            f" g{l['group']}" if (l["group"] or 1) > 1 else "")
        t.add_row(l["name"], l["op"], ks, _hw(l["out_shape"]), _hw(l["rf"]), _n(l["macs"]),
                  f"{l['macs_share']:.1%}")
    con.print(t)

    ps = r["passes"]
    t = table(f"passes that would apply ({ps['changes']} changes)", "pass", "count", "changes")
    for name, msgs in ps["by_pass"].items():
        shown = "; ".join(msgs[:3]) + (f"; ... {len(msgs) - 3} more" if len(msgs) > 3 else "")
        t.add_row(name, str(len(msgs)), shown or "-")
    con.print(t)

    if r["shortcuts"]:
        t = table(f"shortcut merges ({len(r['shortcuts'])})", "merge", "branches (producer)", "advice")
        for s in r["shortcuts"]:
            branches = ", ".join(b.get("producer") or b.get("tensor", "?") for b in s.get("branches", []))
            t.add_row(f"{s.get('node', '?')} ({s.get('op', '?')})", branches,
                      s.get("advice") or "ranges known after calibration")
        con.print(t)

    if r["unsupported"]:
        t = table(f"unsupported on {r['target'] or 'any int8 target'} ({len(r['unsupported'])} nodes)",
                  "node", "op", "why")
        for u in r["unsupported"]:
            t.add_row(u["node"], u["op"], u["reason"])
        con.print(t)
    else:
        con.print(f"[bold]unsupported ops[/bold]: none for {r['target'] or 'int8 CNN scope'}")

    if r["advice"]:
        t = table("deploy advice", "topic", "advice")
        for a in r["advice"]:
            t.add_row(a["code"], a["message"])
        con.print(t)
