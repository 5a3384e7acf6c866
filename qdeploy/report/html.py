"""report.html: report.json's numbers through one jinja2 template
(``templates/report.html.j2``) with the plots embedded (:mod:`.plots`)."""
from __future__ import annotations

from . import plots


def render(rep: dict) -> str:
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("qdeploy.report", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    figs = {"layers": plots.layer_sqnr(rep.get("layers", []), rep.get("worst_layers", [])),
            "weights": plots.weight_ranges(rep.get("weights", [])),
            "histograms": plots.histograms(rep.get("histograms", []))}
    by_node = {r["node"]: r for r in rep.get("layers", [])}
    worst = [by_node[n] for n in rep.get("worst_layers", []) if n in by_node]
    return env.get_template("report.html.j2").render(r=rep, figs=figs, worst=worst)


def _num(v, fmt: str = "{:.2f}", none: str = "—") -> str:
    import jinja2
    if v is None or isinstance(v, jinja2.Undefined):
        return none
    return fmt.format(v)
