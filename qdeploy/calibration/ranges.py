"""``ranges.json``: the calibration result, reusable with ``quantize --ranges``.

Format ``qdeploy-ranges``, version 1 (stable JSON: sorted keys, 2-space indent)::

    {
      "format": "qdeploy-ranges", "version": 1,
      "model": "<graph name>",
      "fingerprint": "<sha256 hex of the graph's activation tensors>",
      "method": "tailclip" | "minmax" | "percentile" | "entropy" | "mse" | "auto",
      "options": {"percentile": 99.99},          # method options ({} for most; auto:
                                                 # choices per tensor, scores)
      "samples": <number of calibration samples>,
      "recipe": {...} | null,                    # the calibration set's recipe
      "order": ["<tensor name>", ...],           # the tensors in graph order
      "tensors": {
        "<tensor name>": {
          "lo": float, "hi": float,              # the range to quantize with (contains 0)
          "min": float, "max": float,            # observed extremes
          "clipped": float,                      # fraction of values outside [lo, hi]
          "count": int,                          # values observed
          "hist": {"edges": [...], "counts": [...]} | null,   # <= 32 bins, for reports
          "state": {...}                         # the observer's full state (see below)
        }, ...
      }
    }

``fingerprint`` is the sha256 of the lines ``name:dtype:d0xd1x...`` of every
activation tensor of the (pass-processed, batch-1) graph, sorted: a ranges file
made for another model, or for the same model before other passes, is refused
with one line. ``state`` is the observer's dict (:mod:`.observers`), so shards
calibrated separately are reduced exactly by :func:`merge_ranges`; a file whose
``lo``/``hi`` were edited by hand keeps the edited values (``lo``/``hi`` are
what ``quantize`` reads; ``state`` is only used for merging).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import QDeployError
from ..fsutil import write_json
from ..schema import Key, check
from ..ir import Graph
from . import observers as obs

FORMAT, VERSION = "qdeploy-ranges", 1


def fingerprint(g: Graph) -> str:
    lines = sorted(f"{t}:{g.tensor(t).dtype}:{'x'.join(map(str, g.shape(t)))}" for t in g.activations())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass
class Ranges:
    """Per-tensor observers of one calibration run, in graph order."""
    model: str
    fingerprint: str
    method: str
    samples: int
    observers: dict[str, obs.MinMax]
    recipe: dict | None = None
    options: dict = field(default_factory=dict)
    # explicit (lo, hi) that override the observers' choice (hand-edited files)
    fixed: dict[str, tuple[float, float]] = field(default_factory=dict)

    def range(self, name: str) -> tuple[float, float]:
        if name in self.fixed:
            return self.fixed[name]
        return self.observers[name].range()

    def __getitem__(self, name: str) -> tuple[float, float]:
        return self.range(name)

    def __contains__(self, name: str) -> bool:
        return name in self.observers

    def names(self) -> list[str]:
        return list(self.observers)

    def bounds(self) -> dict[str, tuple[float, float]]:
        """``{tensor: (lo, hi)}`` for every tensor, in graph order (what
        ``quantize_graph`` and ``check_shortcuts`` take)."""
        return {name: self.range(name) for name in self.observers}

    def table(self) -> dict[str, dict]:
        """Per tensor: the observer's summary with the effective lo/hi."""
        out = {}
        for name, o in self.observers.items():
            s = o.summary()
            s["lo"], s["hi"] = self.range(name)
            if name in self.fixed:
                s["clipped"] = o.clipped(self.fixed[name])
            out[name] = s
        return out

    def to_dict(self) -> dict:
        tensors = {}
        for name, s in self.table().items():
            tensors[name] = {**s, "state": self.observers[name].to_dict()}
        return {"format": FORMAT, "version": VERSION, "model": self.model,
                "fingerprint": self.fingerprint, "method": self.method, "options": self.options,
                "samples": self.samples, "recipe": self.recipe, "order": list(self.observers),
                "tensors": tensors}


def save_ranges(r: Ranges, path) -> None:
    """Write ``r`` atomically with stable bytes."""
    write_json(path, r.to_dict())


# the fields quantize reads (qdeploy/schema.py); a tensor's "state" is checked by its observer
_SCHEMA = {"model": Key("str"), "fingerprint": Key("str"), "method": Key("str", tuple(obs.METHODS) + ("auto",)),
           "samples": Key("int"), "tensors": Key("dict"), "order": Key("strs", required=False),
           "options": Key("dict", required=False, nullable=True),
           "recipe": Key("dict", required=False, nullable=True)}
_TENSOR_SCHEMA = {"lo": Key("num"), "hi": Key("num"), "state": Key("dict")}


def load_ranges(path, graph: Graph | None = None) -> Ranges:
    """Read a ranges file; with ``graph``, refuse one made for another model."""
    path = Path(path)
    hint = "make one with: qdeploy calib ranges MODEL SET.npz -o ranges.json"
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise QDeployError(f"no such ranges file: {path}; {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise QDeployError(f"{path} is not a readable ranges JSON file ({type(e).__name__}); {hint}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise QDeployError(f"{path} is not a qdeploy ranges file (format '{d.get('format') if isinstance(d, dict) else '?'}'); {hint}")
    if d.get("version") != VERSION:
        raise QDeployError(f"{path} has ranges format version {d.get('version')}; this qdeploy reads "
                           f"version {VERSION}: recalibrate with this qdeploy ({hint})")
    check(d, _SCHEMA, str(path), extra=True, fix=hint)
    for name, t in d["tensors"].items():
        check(t, _TENSOR_SCHEMA, str(path), f"tensors['{name}']", extra=True, fix=hint)
    if graph is not None and d.get("fingerprint") != fingerprint(graph):
        raise QDeployError(f"{path} was made for model '{d.get('model')}' (fingerprint "
                           f"{str(d.get('fingerprint'))[:12]}), not for '{graph.name}' (fingerprint "
                           f"{fingerprint(graph)[:12]}); recalibrate this model: {hint}")
    try:
        observers, fixed = {}, {}
        order = d.get("order") or sorted(d["tensors"])
        if sorted(order) != sorted(d["tensors"]):
            raise ValueError("'order' does not list the tensors")
        for name in order:
            t = d["tensors"][name]
            o = obs.from_dict(t["state"])
            observers[name] = o
            lo, hi = float(t["lo"]), float(t["hi"])
            if (lo, hi) != o.range():
                if not lo <= 0.0 <= hi:
                    raise ValueError(f"tensor '{name}': range [{lo}, {hi}] must contain 0")
                fixed[name] = (lo, hi)
        return Ranges(model=d["model"], fingerprint=d["fingerprint"], method=d["method"],
                      samples=int(d["samples"]), observers=observers, recipe=d.get("recipe"),
                      options=dict(d.get("options") or {}), fixed=fixed)
    except (KeyError, TypeError, ValueError) as e:
        raise QDeployError(f"{path}: malformed ranges file ({type(e).__name__}: {e}); {hint}") from None


def merge_ranges(files) -> Ranges:
    """Reduce ranges files of shards of one calibration set (same model, method
    and options) into one, exactly, through the observers' saved states. The
    recipe is kept when all shards agree, else it becomes ``{"shards": [...]}``.
    Hand-edited lo/hi values are not merged (the observers' states are)."""
    rs = [load_ranges(f) for f in files]
    if not rs:
        raise QDeployError("merge_ranges: no ranges files given")
    first = rs[0]
    if first.method == "auto":
        raise QDeployError(f"{files[0]}: 'auto' ranges are chosen on the whole set and do not merge; "
                           "merge shards calibrated with --method mse, or run auto on the whole set")
    for f, r in zip(files, rs):
        for key in ("fingerprint", "method", "options"):
            if getattr(r, key) != getattr(first, key):
                raise QDeployError(f"{f}: its {key} ({getattr(r, key)}) differs from {files[0]}'s "
                                   f"({getattr(first, key)}); only shards of one model calibrated "
                                   "with one method merge")
        if set(r.observers) != set(first.observers):
            raise QDeployError(f"{f}: holds other tensors than {files[0]}; recalibrate the shard")
    merged = {n: o for n, o in first.observers.items()}
    for r in rs[1:]:
        merged = {n: obs.merge(o, r.observers[n]) for n, o in merged.items()}
    recipes = [r.recipe for r in rs]
    recipe = recipes[0] if all(x == recipes[0] for x in recipes) else {"shards": recipes}
    return Ranges(model=first.model, fingerprint=first.fingerprint, method=first.method,
                  samples=sum(r.samples for r in rs), observers=merged, recipe=recipe,
                  options=first.options)
