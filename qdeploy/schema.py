"""Checking a file's fields against a schema, with one-line errors.

Every file qdeploy reads back (target TOML, a calibration set's recipe,
manifest.json, ranges.json) is a dict of plain values. A schema is a dict
``key -> Key(kind, allowed, required, nullable)``; :func:`check` refuses
unknown keys (unless ``extra=True``), missing required keys, values of the
wrong kind and values outside ``allowed``, naming the file and the key.

Kinds: ``str`` (non-empty), ``bool``, ``int`` (>= 0; a bool is not an int),
``num`` (a finite int or float), ``strs`` / ``ints`` / ``nums`` (lists of
those), ``dict``, ``list``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import QDeployError


@dataclass(frozen=True)
class Key:
    kind: str
    allowed: tuple | None = None
    required: bool = True
    nullable: bool = False


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


KINDS = {
    "str": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (_int, "a non-negative integer"),
    "num": (_num, "a finite number"),
    "strs": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "ints": (lambda v: isinstance(v, list) and all(_int(x) for x in v), "a list of non-negative integers"),
    "nums": (lambda v: isinstance(v, list) and all(_num(x) for x in v), "a list of finite numbers"),
    "dict": (lambda v: isinstance(v, dict), "a table/object"),
    "list": (lambda v: isinstance(v, list), "a list"),
}


def show(v) -> str:
    """A value as the user wrote it, shortened."""
    text = repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check(d, schema: dict[str, Key], where: str, section: str = "", extra: bool = False,
          fix: str = "") -> dict:
    """``d`` checked against ``schema``; returns ``d``. ``section`` names the
    part of the file (``[numerics]``, ``tensors.conv1``), ``fix`` what to do."""
    label = f"{section} " if section else ""
    todo = f"; {fix}" if fix else ""
    if not isinstance(d, dict):
        raise QDeployError(f"{where}: {section or 'the file'} must be a table/object, got {show(d)}{todo}")
    if not extra:
        unknown = sorted(set(d) - set(schema))
        if unknown:
            raise QDeployError(f"{where}: unknown {label}key(s) {', '.join(map(str, unknown))}; "
                               f"allowed: {', '.join(sorted(schema))}")
    for k, key in schema.items():
        if k not in d:
            if key.required:
                raise QDeployError(f"{where}: {label}key '{k}' is missing (must be "
                                   f"{KINDS[key.kind][1]}){todo}")
            continue
        v = d[k]
        if v is None and key.nullable:
            continue
        ok, what = KINDS[key.kind]
        if not ok(v):
            raise QDeployError(f"{where}: {label}{k} = {show(v)} must be {what}"
                               + (f" from {', '.join(map(str, key.allowed))}" if key.allowed else "") + todo)
        vals = v if key.kind in ("strs", "ints", "nums") else [v]
        bad = [x for x in vals if key.allowed is not None and x not in key.allowed]
        if bad:
            what = f"has {', '.join(map(show, bad))}" if v is vals else f"{show(v)} is not allowed"
            raise QDeployError(f"{where}: {label}{k} {what}; choose from {', '.join(map(str, key.allowed))}")
    return d
