"""Emitters: pure functions QGraph -> files. One module per artefact.

Every emitter module defines ``emit(qg, ctx) -> dict[str, bytes]``: the files
of its artefact, by path relative to OUT (``"model.qdq.onnx"``, or
``"c/model.h"``, ``"c/model.c"``, ... for a folder artefact). It reads the
QGraph's integers and never re-decides numerics; identical inputs give
identical bytes (no times, no absolute paths). An emitter that cannot express
a node (an op, a profile's arithmetic) raises :class:`~qdeploy.errors.QDeployError`
naming the node and what to do, before anything is written.

``ARTEFACTS`` is the one table of what exists: the ``--emit`` name, where it
lands in OUT, which target profiles' arithmetic it can express, and which
``qdeploy run`` backends execute it (each backend is ``module:function`` with
the signature ``run(out: Path, inputs: dict[str, ndarray], manifest: dict) ->
dict[str, ndarray]``: N samples of the batch-1 model in the model's own layout,
float in and out, like every backend). Adding an artefact is one row here plus
its module.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import QDeployError


@dataclass(frozen=True)
class Artefact:
    name: str                       # the --emit name
    path: str                       # file (or folder, ending in "/") in OUT
    module: str                     # defines emit(qg, ctx) -> dict[str, bytes]
    profiles: tuple[str, ...]       # target profiles whose arithmetic it expresses
    backends: dict[str, str]        # qdeploy run backend -> "module:function"
    what: str                       # one line for help texts and the report
    limits: str = ""                # "module:TABLE" of attribute limits (qdeploy inspect reads it too)


ARTEFACTS: dict[str, Artefact] = {
    "qdq": Artefact("qdq", "model.qdq.onnx", "qdeploy.emit.qdq", ("arm", "ort"),
                    {"qdq": "qdeploy.emit.qdq:run"},
                    "onnxruntime QDQ model (int8 kernels through onnxruntime's QDQ fusion)"),
    "tflite": Artefact("tflite", "model.int8.tflite", "qdeploy.emit.tflite", ("arm",),
                       {"tflm": "qdeploy.emit.tflite:run_tflm", "tflite": "qdeploy.emit.tflite:run_tflite"},
                       "fully-integer TFLite flatbuffer (TFLite, TFLite Micro)",
                       "qdeploy.emit.tflite.ops:LIMITS"),
    "c": Artefact("c", "c/", "qdeploy.emit.c", ("arm", "fpga"),
                  {"c": "qdeploy.emit.c:run"},
                  "C99 bundle: const int8 weights, static arena, portable integer kernels"),
}


@dataclass
class EmitContext:
    """What an emitter may know besides the QGraph."""
    target: Any                                  # qdeploy.quant.targets.Target
    recipe: dict | None = None                   # the calibration set's preprocessing recipe
    model_name: str = "model"                    # the user's model file stem (comments, metadata)
    version: str = ""                            # qdeploy's version (every generated file says it)
    options: dict = field(default_factory=dict)  # artefact options (e.g. {"io": "float"})
    report: dict = field(default_factory=dict)   # facts emitters record for manifest.json (key -> JSON)


def parse_emit(spec: "str | list | tuple | None", target) -> tuple[str, ...]:
    """The artefacts to write: ``--emit qdq,tflite,c`` (or a list), or the target's
    default ``emit``; each checked against the table and the target's profile."""
    if spec is None:
        names = list(target.emit)
    elif isinstance(spec, str):
        names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = list(spec)
    unknown = [n for n in names if n not in ARTEFACTS]
    if unknown:
        raise QDeployError(f"--emit: unknown artefact(s) {', '.join(map(repr, unknown))}; "
                           f"choose from {', '.join(ARTEFACTS)} (comma-separated)")
    for n in names:
        a = ARTEFACTS[n]
        if target.profile not in a.profiles:
            raise QDeployError(f"--emit {n}: the '{target.name}' target's {target.profile} arithmetic "
                               f"cannot be expressed as {a.what.split(' (')[0]} (it serves the "
                               f"{', '.join(a.profiles)} profiles); drop '{n}' from --emit or choose "
                               "another target")
    return tuple(dict.fromkeys(names))   # de-duplicated, order kept


def emit_all(qg, ctx: EmitContext, names: tuple[str, ...]) -> dict[str, bytes]:
    """Every file of the named artefacts, by path relative to OUT."""
    files: dict[str, bytes] = {}
    for n in names:
        mod = _import(ARTEFACTS[n].module, f"--emit {n}")
        files.update(mod.emit(qg, ctx))
    return files


def _import(module: str, what: str):
    """An emitter or runner module; one missing (not in this qdeploy yet) or
    missing a package it needs is one line."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise QDeployError(f"{what}: this qdeploy has no {module} yet; choose another artefact "
                               "or backend") from None
        raise QDeployError(f"{what}: needs the Python package '{e.name}', which is not installed "
                           f"(pip install {str(e.name).split('.')[0]})") from None


def backends() -> dict[str, str]:
    """Every artefact backend: name -> "module:function"."""
    return {b: fn for a in ARTEFACTS.values() for b, fn in a.backends.items()}


def artefact_of(backend: str) -> Artefact | None:
    for a in ARTEFACTS.values():
        if backend in a.backends:
            return a
    return None


def limit_rows(names) -> list[tuple[str, str, Any]]:
    """(artefact name, ONNX op, check(attrs) -> reason or None) for the attribute limits
    of the named artefacts (their ``limits`` tables): what ``inspect`` reports as what
    ``quantize`` would refuse, from the emitters' own checks."""
    rows = []
    for n in names:
        if ARTEFACTS[n].limits:
            mod, table = ARTEFACTS[n].limits.split(":")
            rows += [(n, onnx_op, check) for onnx_op, check in getattr(_import(mod, f"--emit {n}"), table).values()]
    return rows


def load_runner(spec: str):
    mod, fn = spec.split(":")
    return getattr(_import(mod, f"backend runner {spec}"), fn)
