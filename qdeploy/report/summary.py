"""The one-screen terminal summary at the end of ``qdeploy quantize`` (and ``qdeploy report``):
verdict, artefacts with sizes (the float model vs each int8 artefact; arena/flash when the
manifest records them), per backend its verification status, output SQNR and top-1
agreement (and accuracy with labels), the three layers that cost most, a note when the float
model itself amplifies small errors (:mod:`.sensitivity`) or when the rounding of int8
activations is the cost (:func:`.advice.rounding_note`), advice (or, on a sensitive model,
which advice was withheld and why: :func:`.advice.bound_by_sensitivity`), where the report is."""
from __future__ import annotations

from pathlib import Path


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def memory(manifest: dict) -> dict[str, int]:
    """The C bundle's arena, RAM and flash bytes (manifest ``memory``, written by the C
    emitter), when present."""
    mem = manifest.get("memory") or {}
    names = {"arena_bytes": "arena", "ram_bytes": "RAM", "flash_bytes": "flash"}
    return {label: mem[k] for k, label in names.items() if isinstance(mem.get(k), int)}


def artefact_sizes(manifest: dict) -> list[tuple[str, int]]:
    """(artefact path in OUT, bytes): a folder artefact sums its files."""
    files = manifest.get("artefacts", {})
    rows = []
    for path in manifest.get("emitted", {}).values():
        if path.endswith("/"):
            rows.append((path, sum(v["bytes"] for f, v in files.items() if f.startswith(path))))
        elif path in files:
            rows.append((path, files[path]["bytes"]))
    return rows


def _status(v: dict) -> str:
    if v.get("reason"):
        return f"{v['status']} ({v['reason']})"
    if v["status"] == "within 1 LSB":
        pct = max(o["off_by_one_pct"] or 0.0 for o in v["outputs"].values())
        return f"1 LSB on {pct:.2f}%"
    if v["status"] == "drifts":
        return f"drifts (<= {max(o['max_lsb'] or 0 for o in v['outputs'].values())} LSB)"
    return v["status"]


def lines(rep: dict, manifest: dict, out: Path) -> list[str]:
    first = next(iter(manifest["outputs"]))["name"] if manifest.get("outputs") else None
    res = [rep["verdict"]["text"]]
    res.append(f"  model {rep['model']} (float): {_kb(rep['model_bytes'])}" + "".join(
        f"; {p}{' sources' if p.endswith('/') else ''}: {_kb(n)}" for p, n in artefact_sizes(manifest)) + "".join(
        f"; C {k}: {_kb(v)}" for k, v in memory(manifest).items()))
    status = {v["backend"]: _status(v) for v in rep.get("verification", [])}
    res.append(f"  {'backend':8} {'verification':22} {'SQNR dB':>8} {'top-1 agree':>11}"
               + (f" {'accuracy':>9}" if rep["eval"]["labels"] else ""))
    metrics = rep.get("metrics", {})
    for b in ["ref"] + [v["backend"] for v in rep.get("verification", [])]:
        m = metrics.get(b)
        if m is None:
            res.append(f"  {b:8} {status.get(b, ''):22}")
            continue
        o = m["outputs"].get(first, {})
        sq = "inf" if o.get("sqnr_db") is None else f"{o['sqnr_db']:.1f}"
        t1 = f"{o['top1_agreement']:.2f}%" if "top1_agreement" in o else "-"
        acc = f" {m['accuracy']:8.2f}%" if m.get("accuracy") is not None else ""
        res.append(f"  {b:8} {status.get(b, 'the reference' if b == 'ref' else ''):22} {sq:>8} {t1:>11}{acc}")
    if metrics.get("float", {}).get("accuracy") is not None:
        res.append(f"  {'float':8} {'(original model)':22} {'':>8} {'':>11} {metrics['float']['accuracy']:8.2f}%")
    if rep.get("float_nodes"):
        res.append("  kept in float: " + ", ".join(f"{f['node']} ({f['op']}, {f.get('by', '--keep-float')})"
                                                   for f in rep["float_nodes"]))
    by = {r["node"]: r for r in rep.get("layers", [])}
    if rep.get("worst_layers"):
        gain = rep.get("weight_gain") or {}
        res.append("  layers that cost most (layer-local SQNR): " + ", ".join(
            f"{n} {by[n]['local_sqnr_db']:.1f} dB" + (f" (float weights {gain[n]:+.1f})" if n in gain else "")
            for n in rep["worst_layers"]))
    if (rep.get("sensitivity") or {}).get("note"):
        res.append(f"  note: {rep['sensitivity']['note']}")
    if rep.get("rounding_note"):
        res.append(f"  note: {rep['rounding_note']}")
    if rep.get("advice_withheld"):
        w = rep["advice_withheld"]
        res.append(f"  advice withheld ({', '.join(w['options'])}): {w['why']}")
    for a in rep.get("advice", []):
        res.append(f"  advice: {a['why']}; try {a['option']}:")
        res.append(f"    {a['command']}")
    res.append(f"  report: {out / 'report.html'} (numbers: report.json)")
    return res
