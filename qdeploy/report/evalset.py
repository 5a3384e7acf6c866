"""The evaluation samples of a quantize run.

``--eval SET [--labels L.npy]``: a set from ``qdeploy calib build`` (.npz with a
recipe), an .npz with ``x`` (and optionally integer labels ``y`` or ``labels``)
or an .npy of samples; ``--labels`` overrides labels stored in the set.

Without ``--eval``, a **held-out split** of the calibration samples: 20 % of them
(rounded, at least 1, at most 100), chosen by a permutation seeded with 0, are
set aside and never calibrated on; calibration uses the rest in their original
order (so it stays deterministic and a given set always splits the same way; a
set streamed from disk stays there, read through :class:`KeptRows`).
One sample cannot be split: then nothing is evaluated (a warning and the verdict
say so), and the artefacts are verified on that sample (report/build.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..calibration.stream import LazyRows
from ..errors import QDeployError

HOLDOUT_FRACTION, HOLDOUT_MAX, HOLDOUT_SEED = 0.2, 100, 0
# recipe keys that describe where the samples came from, not how they were preprocessed
_PROVENANCE = ("sources", "limit", "seed", "count", "sample_shape")


@dataclass
class EvalSet:
    x: np.ndarray                  # N samples of the batch-1 model, float32
    y: np.ndarray | None           # N integer labels, or None
    source: str                    # "held-out 20% of the calibration samples" or the file name
    held_out: bool


def holdout_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration indices, evaluation indices), both ascending."""
    if n < 2:
        return np.arange(n), np.arange(0)
    k = min(HOLDOUT_MAX, max(1, int(round(n * HOLDOUT_FRACTION))))
    perm = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def split_calibration(x) -> tuple[np.ndarray, EvalSet]:
    """(calibration samples, the held-out EvalSet). A set streamed from disk
    (calibration/stream.py) stays there: the calibration part is a :class:`KeptRows` view."""
    cal, ev = holdout_split(len(x))
    held = EvalSet(np.ascontiguousarray(x[ev], np.float32).reshape((len(ev),) + tuple(x.shape[1:])), None,
                   f"held out: {len(ev)} of the {len(x)} calibration samples (seed {HOLDOUT_SEED})", True)
    if hasattr(x, "head"):
        return KeptRows(x, cal), held
    return np.ascontiguousarray(x[cal]), held


class KeptRows(LazyRows):
    """Rows ``keep`` (ascending) of a streamed set, read on demand, as the
    calibration code reads samples (calibration/stream.py :class:`LazyRows`)."""

    def __init__(self, base, keep: np.ndarray):
        self.base, self.keep = base, np.asarray(keep, np.int64)
        self.dtype = base.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.keep),) + tuple(self.base.shape[1:])

    def rows(self, i: int, j: int) -> np.ndarray:
        idx = self.keep[max(0, i):max(0, j)]
        if len(idx) == 0:
            return np.zeros((0,) + self.shape[1:], self.dtype)
        runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1)   # contiguous reads
        return np.concatenate([self.base.rows(int(r[0]), int(r[-1]) + 1) for r in runs])

    def head(self, n: int) -> "KeptRows":
        return KeptRows(self.base, self.keep[:max(0, int(n))])


def load_eval(path, labels=None, input_shape=None, input_name: str = "input",
              calib_recipe: dict | None = None) -> EvalSet:
    """Read and check an evaluation set (see the module docstring)."""
    from ..calibration.dataset import CalibSet, check_against_model
    from ..calibration.sources import require_float
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".npz", ".npy"):
        raise QDeployError(f"--eval {p}: no such .npz/.npy file; give a set from 'qdeploy calib build' "
                           "or an .npz with 'x' (and labels 'y')")
    recipe, y = None, None
    try:
        if p.suffix.lower() == ".npy":
            x = np.load(p, allow_pickle=False)
        else:
            with np.load(p, allow_pickle=False) as z:
                keys = z.files
                xk = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if xk is None:
                    raise QDeployError(f"--eval {p}: has arrays {', '.join(keys)}; name the samples 'x' "
                                       "(and the labels 'y')")
                x = z[xk]
                for lk in ("y", "labels"):
                    if lk in keys:
                        y = z[lk]
                        break
                if "recipe" in keys:
                    recipe = json.loads(str(z["recipe"].reshape(-1)[0]))
    except QDeployError:
        raise
    except Exception as e:
        raise QDeployError(f"--eval {p}: not a readable .npz/.npy ({type(e).__name__})") from None
    require_float(x, f"--eval {p}")
    if x.ndim < 2 or len(x) == 0:
        raise QDeployError(f"--eval {p}: samples must be a non-empty N x ... array, got "
                           f"{x.dtype} {tuple(x.shape)}")
    x = np.ascontiguousarray(x, np.float32)
    if not np.isfinite(x).all():
        raise QDeployError(f"--eval {p}: contains NaN or Inf; give finite samples")
    if input_shape is not None:
        try:
            check_against_model(CalibSet(x, recipe or {"kind": "tensors"}), input_shape, input_name)
        except QDeployError as e:
            msg = str(e).replace("calibration samples", "evaluation samples").replace("calibration set",
                                                                                     "evaluation set")
            raise QDeployError(f"--eval {p}: {msg}") from None
    if recipe is not None and calib_recipe is not None and _prep(recipe) != _prep(calib_recipe):
        diff = sorted(k for k in set(_prep(recipe)) | set(_prep(calib_recipe))
                      if _prep(recipe).get(k) != _prep(calib_recipe).get(k))
        raise QDeployError(f"--eval {p}: preprocessed differently from the calibration set "
                           f"({', '.join(diff)} differ); build both with the same 'calib build' options")
    if labels is not None:
        y = _load_labels(labels)
        where = f"--labels {Path(labels).name}"
    else:
        where = f"--eval {p.name} labels"
    if y is not None:
        y = np.asarray(y)
        if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
            raise QDeployError(f"{where}: need {len(x)} integer class labels (one per sample), got "
                               f"{y.dtype} {tuple(y.shape)}")
        y = y.astype(np.int64)
    return EvalSet(x, y, p.name, False)


def check_labels(ev: EvalSet, classes: int | None) -> None:
    """Labels must index the first output's classes."""
    if ev.y is None:
        return
    if classes is None:
        raise QDeployError("labels given, but the model's first output is not a class-score vector; "
                           "drop --labels (accuracy needs one score per class)")
    if len(ev.y) and (ev.y.min() < 0 or ev.y.max() >= classes):
        raise QDeployError(f"labels range {ev.y.min()}..{ev.y.max()}, but the model's first output has "
                           f"{classes} classes (0..{classes - 1}); give labels that index its classes")


def _load_labels(path) -> np.ndarray:
    p = Path(path)
    if not p.is_file() or p.suffix.lower() != ".npy":
        raise QDeployError(f"--labels {p}: no such .npy file; give the class labels as an .npy of integers")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as e:
        raise QDeployError(f"--labels {p}: not a readable .npy ({type(e).__name__})") from None


def _prep(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if k not in _PROVENANCE}
