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
- ``drifts``: only for the backends in ``DRIFTING``, whose runtime rounds each op its
  own way (onnxruntime's float requantisation of QDQ, LiteRT's XNNPACK ties: 1 LSB per
  op, DESIGN.md §5) so that deep nets accumulate several LSB end to end. Accepted only
  when the per-op contract is checked: ``"sibling"``: another backend of the same
  artefact file is within 1 LSB end to end (TFLite Micro on the same .tflite: the file
  is right, the runtime's rounding drifts); a ``module:function`` returns the largest
  per-op difference in LSB with every op fed the reference's integer inputs
  (QDQ: :func:`qdeploy.emit.qdq_compare.per_op`, on ``PER_OP_SAMPLES`` samples), which
  must be at most 1. The largest end-to-end difference, its share and both SQNRs
  against the original model are stated;
- ``differs``: anything else off by 2 or more: the artefact does not compute the
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
from ..quant.error import sqnr_db
from ..quant.qgraph import on_grid, output_grids

# backends within 1 LSB per op only -> how that is checked (see the module docstring); every
# other backend (tflm, c, and any new one until its contract is known) must stay within 1 LSB
# end to end
DRIFTING = {"qdq": "qdeploy.report.verify:qdq_per_op", "tflite": "sibling"}
PER_OP_SAMPLES = 4


def compare(ref: dict, got: dict, grids: dict, flt: dict | None = None, drifting: bool = False) -> dict:
    """Per output: ``status``, ``max_lsb``, ``off_by_one_pct`` (share of elements 1 LSB off),
    ``detail``; ``flt`` (the original model's outputs) judges a ``drifting`` backend."""
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
        detail = f"{100.0 * float(np.mean(d > 1)):.2f}% of elements off by 2+ LSB" if m > 1 else ""
        if status == "differs" and drifting and flt is not None:
            detail += (f"; SQNR vs the original {sqnr_db(flt[o], g):.1f} dB, reference interpreter "
                       f"{sqnr_db(flt[o], r):.1f} dB")
        rows[o] = {"status": status, "max_lsb": m, "off_by_one_pct": pct, "detail": detail}
    return rows


def artefact_backends(manifest: dict) -> list[tuple[str, str, str]]:
    """(artefact name, backend, "module:function") of every emitted artefact, in table order."""
    emitted = manifest.get("emitted", {})
    return [(a.name, b, fn) for a in ARTEFACTS.values() if a.name in emitted for b, fn in a.backends.items()]


def run_backend(out: Path, spec: str, inputs: dict, manifest: dict, backend: str = "") -> tuple[dict | None, str | None]:
    """The backend's outputs, or (None, why) when its runtime is not installed."""
    try:
        runner = load_runner(spec)
    except ImportError as e:
        return None, f"runtime not installed ({e})"
    try:
        return runner(Path(out), inputs, manifest), None
    except ImportError as e:
        return None, f"runtime not installed ({e})"
    except QDeployError:
        raise
    except Exception as e:     # the runtime refused or crashed on the artefact: that is a failure
        raise QDeployError(f"verification failed: backend '{backend or spec}' could not run the artefact "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); nothing was "
                           "written (a qdeploy bug: report it; --no-verify writes the artefacts unchecked)") from None


def verify(out: Path, manifest: dict, qg, inputs: dict, ref: dict, outputs: dict | None = None,
           on_step=None, flt: dict | None = None) -> tuple[list[dict], dict]:
    """Run and compare every artefact backend (see the module docstring).
    ``ref``: the reference interpreter's outputs on ``inputs``, ``flt``: the original
    model's (stated for drifting backends). Returns (one record per backend:
    artefact, backend, status, outputs{name: comparison}, reason; the backends'
    outputs by backend name). ``on_step(backend)`` is called after each backend."""
    grids = output_grids(qg)
    records, results = [], {} if outputs is None else outputs
    for art, backend, spec in artefact_backends(manifest):
        got, why = run_backend(out, spec, inputs, manifest, backend)
        rec = {"artefact": art, "backend": backend, "status": "not run", "reason": why, "outputs": {}}
        if got is not None:
            rec["outputs"] = compare(ref, got, grids, flt, backend in DRIFTING)
            results[backend] = got
        records.append(rec)
        if on_step:
            on_step(backend)
    for rec in records:
        checked = None                  # the per-op check runs once per backend
        for o, row in rec["outputs"].items():
            if row["status"] == "differs" and rec["backend"] in DRIFTING:
                checked = checked or _per_op_ok(DRIFTING[rec["backend"]], rec, records, out, inputs, manifest, qg)
                ok, how = checked
                row["detail"] = f"{how}; {row['detail']}"
                if ok:
                    row["status"] = "drifts"
        if rec["outputs"]:
            rec["status"] = max((r["status"] for r in rec["outputs"].values()), key=_RANK.index)
        bad = [(o, r) for o, r in rec["outputs"].items() if r["status"] == "differs"]
        if bad:
            o, r = bad[0]
            lsb = f"by up to {r['max_lsb']} LSB ({r['detail']})" if r["max_lsb"] is not None else f"({r['detail']})"
            raise QDeployError(
                f"verification failed: backend '{rec['backend']}' ({ARTEFACTS[rec['artefact']].path}) output "
                f"'{o}' differs from the reference interpreter {lsb} on the "
                f"{len(next(iter(inputs.values())))} evaluation samples; nothing was written "
                f"({_cause(rec['artefact'], qg)}; --no-verify writes the artefacts unchecked, or --emit without "
                f"'{rec['artefact']}' leaves it out)")
    return records, results


def _cause(artefact: str, qg) -> str:
    """What a failed comparison most likely means: a qdeploy bug, or (int8 weights in the
    QDQ model of the ort profile, on a CPU whose uint8 x int8 kernels saturate) the CPU."""
    from ..emit.qdq import saturating_cpu
    if artefact == "qdq" and qg.profile == "ort" and qg.metadata.get("weight_dtype", "int8") == "int8" \
            and saturating_cpu():
        return ("this CPU has no VNNI, and onnxruntime's uint8 x int8 kernels saturate on it: set "
                "weight_dtype = \"uint8\" in the target file, as targets/ort.toml does")
    return "a qdeploy bug: report it"


def _per_op_ok(how: str, rec: dict, records: list[dict], out, inputs, manifest, qg) -> tuple[bool, str]:
    if how == "sibling":
        sib = [r for r in records if r["artefact"] == rec["artefact"] and r is not rec and r["outputs"]
               and all(x["status"] in ("bit-exact", "within 1 LSB") for x in r["outputs"].values())]
        if sib:
            return True, f"the same file is within 1 LSB on '{sib[0]['backend']}': this runtime's rounding drifts"
        return False, "no other runtime of the same file agrees"
    worst = load_runner(how)(out, inputs, manifest, qg)
    return worst <= 1, f"per op (each op fed the reference's integers) at most {worst} LSB"


def qdq_per_op(out, inputs: dict, manifest: dict, qg) -> int:
    """Largest per-op difference of the QDQ model (qdeploy.emit.qdq_compare.per_op)."""
    import onnx
    from ..emit.qdq_compare import per_op
    model = onnx.load(str(Path(out) / ARTEFACTS["qdq"].path))
    few = {k: v[:PER_OP_SAMPLES] for k, v in inputs.items()}
    return max((d.max for d in per_op(qg, model, few)), default=0)


_RANK = ["bit-exact", "within 1 LSB", "drifts", "differs"]
