"""Run a float :class:`~qdeploy.ir.Graph` on onnxruntime (ground truth, rung 1)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from . import ort_session
from .ir import Graph
from .onnx_export import export_bytes


def session(g: Graph, expose=(), threads: int = 0, optimize: bool = True):
    """An onnxruntime CPU session of the exported graph; ``expose`` lists
    intermediate tensors to return as extra outputs. ``optimize=False`` keeps
    the graph as written (QuantizeLinear/DequantizeLinear pairs stay float ops
    instead of being fused into int8 kernels). onnxruntime's log is silenced and
    a failure to load or run is one line naming the model (and node)."""
    what = f"model '{g.name}'"
    return Guarded(ort_session.session(export_bytes(g, expose), what, ort_session.options(threads, optimize)),
                   what)


class Guarded:
    """An onnxruntime session whose ``run`` fails as one line (ort_session.run)."""

    def __init__(self, sess, what: str):
        self.sess, self.what = sess, what

    def run(self, names, feeds):
        return ort_session.run(self.sess, names, feeds, self.what)

    def __getattr__(self, name):
        return getattr(self.sess, name)


def run_float(g: Graph, inputs: dict[str, np.ndarray] | np.ndarray, expose=()) -> dict[str, np.ndarray]:
    """Outputs (and exposed tensors) by name for one batch of inputs."""
    if isinstance(inputs, np.ndarray):
        inputs = {g.inputs[0]: inputs}
    sess = session(g, expose)
    names = list(g.outputs) + [e for e in expose if e not in g.outputs]
    return dict(zip(names, sess.run(names, inputs)))


def sample_runs(g: Graph, inputs: dict[str, np.ndarray] | np.ndarray, expose=()) -> Iterator[dict[str, np.ndarray]]:
    """The batch-1 graph on each of the N samples (axis 0) in turn, on one session:
    outputs (and exposed tensors) by name, one sample's at a time."""
    if isinstance(inputs, np.ndarray):
        inputs = {g.inputs[0]: inputs}
    sess = session(g, expose)
    names = list(g.outputs) + [e for e in expose if e not in g.outputs]
    n = len(next(iter(inputs.values())))
    for i in range(n):
        yield dict(zip(names, sess.run(names, {k: v[i:i + 1] for k, v in inputs.items()})))


def run_samples(g: Graph, inputs: dict[str, np.ndarray] | np.ndarray, expose=()) -> dict[str, np.ndarray]:
    """N samples of the batch-1 graph along axis 0, run one at a time on one
    session: outputs (and exposed tensors) by name, stacked the same way."""
    runs = list(sample_runs(g, inputs, expose))
    names = list(g.outputs) + [e for e in expose if e not in g.outputs]
    return {name: np.concatenate([r[name] for r in runs]) for name in names}


def each_sample(g: Graph, x: np.ndarray, tensors) -> Iterator[dict[str, np.ndarray]]:
    """``{tensor: value}`` of ``tensors`` (intermediates, or the graph input itself) for
    each sample of ``x`` in turn: the batch-1 graph on one session, one sample at a
    time, so memory does not grow with the sample count."""
    inner = [t for t in dict.fromkeys(tensors) if t not in g.inputs]
    runs = sample_runs(g, {g.inputs[0]: x}, inner) if inner else ({} for _ in range(len(x)))
    for i, vals in enumerate(runs):
        vals.update({t: x[i:i + 1] for t in tensors if t in g.inputs})
        yield vals


def channel_stats(g: Graph, inputs: np.ndarray, tensors: list[str]) -> dict[str, tuple]:
    """Per-channel (axis 1) ``(max, min, mean of squares)`` of ``tensors`` over
    the samples ``inputs`` (batch-1 graph, one sample at a time, so memory does
    not grow with the sample count); max/min are widened to contain 0."""
    acc: dict[str, list] = {}
    for vals in each_sample(g, inputs, tensors):
        for name in tensors:
            v = vals[name]
            v = np.moveaxis(np.asarray(v, np.float64), 1, 0).reshape(v.shape[1], -1)
            hi, lo, sq = v.max(axis=1), v.min(axis=1), (v ** 2).sum(axis=1)
            if name in acc:
                a = acc[name]
                a[0], a[1], a[2], a[3] = np.maximum(a[0], hi), np.minimum(a[1], lo), a[2] + sq, a[3] + v.shape[1]
            else:
                acc[name] = [hi, lo, sq, v.shape[1]]
    return {k: (np.maximum(hi, 0.0), np.minimum(lo, 0.0), sq / n) for k, (hi, lo, sq, n) in acc.items()}


def random_inputs(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i: rng.standard_normal(g.shape(i)).astype(g.tensor(i).dtype) for i in g.inputs}
