"""Verification: every emitted artefact's backends against the reference interpreter.

Each backend of each artefact in ``manifest["emitted"]`` (the ``ARTEFACTS`` table
of :mod:`qdeploy.emit`, so an emitter is verified the moment its row exists) runs
on the evaluation samples, and so does the reference interpreter. Both results are
put back on each output's int grid (``q = round(y / scale) + zero_point`` with the
output's scale and zero point from the QGraph) and compared element by element:

- ``bit-exact``: every integer equal;
- ``within 1 LSB``: no element off by more than one step (the share that is off is
  stated): rounding-tie differences, expected of onnxruntime's QDQ kernels and
  LiteRT's optimized kernels (../shared/DESIGN.md §5);
- ``differs``: some element off by 2 or more: the artefact does not compute the
  QGraph, and :func:`verify` raises a :class:`~qdeploy.errors.QDeployError` naming
  the backend and the output.

A backend whose runtime is not installed (its module cannot be imported) is
recorded as ``not run`` with the reason, and the caller warns.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..emit import ARTEFACTS, load_runner
from ..errors import QDeployError


def output_grids(qg) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of each graph output's int tensor (the input of its Dequantize)."""
    deq = {n.outputs[0]: n for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] in qg.outputs}
    grids = {}
    for o in qg.outputs:
        t = qg.tensors[deq[o].inputs[0]] if o in deq else qg.tensors[o]
        grids[o] = (t.s, t.zp) if t.scale is not None else (None, None)
    return grids


def on_grid(y: np.ndarray, grid: tuple[float, int]) -> np.ndarray:
    s, zp = grid
    return np.round(np.asarray(y, np.float64) / s).astype(np.int64) + zp


def compare(ref: dict, got: dict, grids: dict) -> dict:
    """Per output: ``status``, ``max_lsb``, ``off_by_one_pct`` (share of elements 1 LSB off)."""
    rows = {}
    for o, r in ref.items():
        if o not in got:
            raise QDeployError(f"output '{o}' missing")
        g = np.asarray(got[o])
        if g.shape != np.shape(r):
            rows[o] = {"status": "differs", "max_lsb": None, "off_by_one_pct": None,
                       "detail": f"shape {tuple(g.shape)}, reference {tuple(np.shape(r))}"}
            continue
        if grids[o][0] is None:      # a float output: compare values
            d = np.abs(np.asarray(r, np.float64) - g)
            rows[o] = {"status": "bit-exact" if not d.any() else "differs", "max_lsb": None,
                       "off_by_one_pct": None, "detail": f"max abs {float(d.max()):.3g}"}
            continue
        d = np.abs(on_grid(r, grids[o]) - on_grid(g, grids[o]))
        m = int(d.max()) if d.size else 0
        pct = 100.0 * float(np.mean(d == 1)) if d.size else 0.0
        status = "bit-exact" if m == 0 else "within 1 LSB" if m == 1 else "differs"
        rows[o] = {"status": status, "max_lsb": m, "off_by_one_pct": pct,
                   "detail": f"{100.0 * float(np.mean(d > 1)):.2f}% of elements off by 2+ LSB" if m > 1 else ""}
    return rows


def artefact_backends(manifest: dict) -> list[tuple[str, str, str]]:
    """(artefact name, backend, "module:function") of every emitted artefact, in table order."""
    emitted = manifest.get("emitted", {})
    return [(a.name, b, fn) for a in ARTEFACTS.values() if a.name in emitted for b, fn in a.backends.items()]


def run_backend(out: Path, spec: str, inputs: dict, manifest: dict) -> tuple[dict | None, str | None]:
    """The backend's outputs, or (None, why) when its runtime is not installed."""
    try:
        runner = load_runner(spec)
    except ImportError as e:
        return None, f"runtime not installed ({e})"
    try:
        return runner(Path(out), inputs, manifest), None
    except ImportError as e:
        return None, f"runtime not installed ({e})"


def verify(out: Path, manifest: dict, qg, inputs: dict, ref: dict, outputs: dict | None = None,
           on_step=None) -> tuple[list[dict], dict]:
    """Run and compare every artefact backend (see the module docstring).
    ``ref``: the reference interpreter's outputs on ``inputs``. Returns (one
    record per backend: artefact, backend, status, outputs{name: comparison},
    reason; the backends' outputs by backend name). ``on_step(backend)`` is
    called after each backend (progress)."""
    grids = output_grids(qg)
    records, results = [], {} if outputs is None else outputs
    for art, backend, spec in artefact_backends(manifest):
        got, why = run_backend(out, spec, inputs, manifest)
        if got is None:
            records.append({"artefact": art, "backend": backend, "status": "not run", "reason": why,
                            "outputs": {}})
        else:
            rows = compare(ref, got, grids)
            worst = max((r["status"] for r in rows.values()), key=_RANK.index)
            records.append({"artefact": art, "backend": backend, "status": worst, "reason": None,
                            "outputs": rows})
            results[backend] = got
            bad = [(o, r) for o, r in rows.items() if r["status"] == "differs"]
            if bad:
                o, r = bad[0]
                lsb = f"by up to {r['max_lsb']} LSB ({r['detail']})" if r["max_lsb"] is not None else f"({r['detail']})"
                raise QDeployError(
                    f"verification failed: backend '{backend}' ({ARTEFACTS[art].path}) output '{o}' differs "
                    f"from the reference interpreter {lsb} on the {len(next(iter(inputs.values())))} "
                    f"evaluation samples; nothing was written (a qdeploy bug: report it; --no-verify "
                    f"writes the artefacts unchecked, or --emit without '{art}' leaves it out)")
        if on_step:
            on_step(backend)
    return records, results


_RANK = ["bit-exact", "within 1 LSB", "differs"]
