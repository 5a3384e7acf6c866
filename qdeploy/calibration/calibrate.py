"""The calibrator: run the float graph on onnxruntime and feed streaming observers.

``calibrate(graph, calib_x, method=...)`` exports the (pass-processed) float
graph with the tensors that will be quantized exposed as outputs -- by default
the graph inputs and every non-constant float node output; for a node with a
fused clamp (``q_clamp``) the exporter gives the clamped value the node's
output name, so the observed range is the clamped one -- and runs it batch by
batch. Each batch's outputs go straight into one observer per tensor and are
dropped: memory is one batch of activations plus the observers' fixed-size
state, whatever the number of samples.

Batching (decision): the imported graph has batch 1 and static shapes
(Reshape/Resize carry their full target shape). When every activation has
batch 1 on axis 0 and no op touches axis 0 (see :func:`batched`), a copy of the
graph with batch ``batch_size`` is exported and run; the samples left over at
the end go through the batch-1 graph one at a time (no padding, which would
bias the statistics). On the first batch, sample 0 is also run through the
batch-1 graph and compared; if the batched graph disagrees, calibration falls
back to one sample at a time (and says so). Graphs that cannot be batched run
one sample at a time from the start.

Only single-input graphs are calibrated here (the CNN scope); ranges are
widened to contain 0 by the observers.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import QDeployError
from ..float_run import session
from ..ir import Graph
from . import observers as obs
from .ranges import Ranges, fingerprint

# ops that act on each sample independently when axis 0 is left alone
_PER_SAMPLE = {
    "Conv", "ConvTranspose", "Gemm", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Max", "Min",
    "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "SiLU", "Tanh",
    "Elu", "Selu", "Softplus", "Mish", "Gelu", "Exp", "Log", "Sqrt", "Pow", "Erf", "Neg", "Abs",
    "Reciprocal", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN",
    "InstanceNormalization", "DepthToSpace", "SpaceToDepth", "Cast", "DeformConv",
    "Reshape", "Resize", "Pad", "Transpose", "Concat", "Split", "Slice", "Softmax", "Gather",
    "ReduceMean", "ReduceMax", "ReduceSum", "LayerNormalization",
}


def _touches_batch_axis(g: Graph, n) -> bool:
    rank = len(g.shape(n.inputs[0])) if n.inputs and n.inputs[0] else 0
    a = n.attrs
    if n.op in ("Concat", "Split", "Gather", "Softmax", "LayerNormalization"):
        default = -1 if n.op in ("Softmax", "LayerNormalization") else 0
        return a.get("axis", default) % max(rank, 1) == 0
    if n.op in ("Slice", "ReduceMean", "ReduceMax", "ReduceSum"):
        axes = a.get("axes")
        return axes is None or any(ax % max(rank, 1) == 0 for ax in axes)
    if n.op == "Transpose":
        return list(a.get("perm", []))[:1] != [0]
    if n.op == "Pad":
        pads = list(a.get("pads", []))
        return bool(pads) and (pads[0] != 0 or pads[len(pads) // 2] != 0)
    if n.op in ("Reshape", "Resize"):
        key = "shape" if n.op == "Reshape" else "sizes"
        return list(a.get(key, [0]))[:1] != [1]
    if n.op == "Gemm":
        return len(g.shape(n.inputs[0])) != 2
    return False


def batched(g: Graph, n: int) -> Graph | None:
    """A copy of ``g`` that runs ``n`` samples at once, or None when ``g``
    cannot be batched safely (an activation without batch 1 on axis 0, an op
    outside :data:`_PER_SAMPLE`, or an op that acts along axis 0)."""
    acts = g.activations()
    if any(len(g.shape(t)) == 0 or g.shape(t)[0] != 1 for t in acts):
        return None
    if any(nd.op not in _PER_SAMPLE or _touches_batch_axis(g, nd) for nd in g.nodes):
        return None
    if any(len(g.shape(c)) == len(g.shape(nd.inputs[0])) and g.shape(c)[0] != 1
           for nd in g.nodes for c in nd.inputs[1:] if c and g.tensor(c).is_const
           and nd.op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu")):
        return None
    b = g.copy()
    for t in acts:
        b.tensors[t].shape = (n,) + tuple(b.tensors[t].shape[1:])
    for nd in b.nodes:
        if nd.op == "Reshape":
            nd.attrs["shape"] = [n] + list(nd.attrs["shape"])[1:]
        elif nd.op == "Resize":
            nd.attrs["sizes"] = [n] + list(nd.attrs["sizes"])[1:]
    return b


def default_tensors(g: Graph) -> list[str]:
    """The tensors that will be quantized: graph inputs and every non-constant
    float node output, in graph order."""
    return [t for t in g.activations() if np.dtype(g.tensor(t).dtype).kind == "f"]


def unclipped(g: Graph, names, target) -> list[str]:
    """The tensors of ``names`` whose range ``tailclip`` leaves covering: graph
    outputs (their error is the model's, and samples beyond the calibration set
    reach further: calibration/tails.py widens them instead) and tensors whose
    scale does not come from their own range (tied to an input, fixed by the
    op, shared by a Concat: ``prepare.out_rule``)."""
    from ..quant.prepare import out_rule
    from ..quant.targets import load_target
    target = load_target(target)
    keep = []
    for t in names:
        p = g.producer(t)
        if t in g.outputs or (t not in g.inputs and (p is None or out_rule(p.op, target) != "range")):
            keep.append(t)
    return keep


def _batches(calib_x, batch_size: int) -> Iterable[np.ndarray]:
    if hasattr(calib_x, "shape"):   # an array, or samples streamed from disk (stream.py)
        for i in range(0, len(calib_x), batch_size):
            yield calib_x[i:i + batch_size]
    else:
        yield from calib_x


def calibrate(graph: Graph, calib_x, method: str = "tailclip", tensors=None, batch_size: int = 8,
              progress: bool = True, percentile: float = 99.99, recipe: dict | None = None,
              threads: int = 0, target="arm", per_tensor: bool = False) -> Ranges:
    """Observe ``tensors`` (default :func:`default_tensors`) of the float
    ``graph`` over the samples ``calib_x`` (an N x <sample shape> array, or an
    iterable of such batches) and return their :class:`Ranges`. Method
    ``auto`` (:mod:`.auto`) chooses by the output of the model quantized for
    ``target`` (with ``per_tensor`` weights) and needs an array."""
    if method == "auto":
        from .auto import auto_ranges
        if not hasattr(calib_x, "shape"):
            calib_x = np.concatenate(list(_batches(calib_x, batch_size)))
        return auto_ranges(graph, calib_x, target=target, per_tensor=per_tensor, batch_size=batch_size,
                           progress=progress, recipe=recipe, tensors=tensors)
    if len(graph.inputs) != 1:
        raise QDeployError(f"model '{graph.name}' has {len(graph.inputs)} inputs; the calibrator "
                           "handles single-input models")
    obs.make(method, percentile)   # validates method and percentile
    inp = graph.inputs[0]
    sample_shape = tuple(graph.shape(inp)[1:])
    names = list(tensors) if tensors is not None else default_tensors(graph)
    missing = [t for t in names if t not in graph.tensors]
    if missing:
        raise QDeployError(f"model '{graph.name}' has no tensor(s) {', '.join(missing[:5])} to calibrate")
    observers = {t: obs.make(method, percentile) for t in names}
    if method == "tailclip":
        for t in unclipped(graph, names, target):
            observers[t].may_clip = False
    batch_size = max(1, int(batch_size))
    total = len(calib_x) if hasattr(calib_x, "shape") else None

    one = session(graph, names, threads)
    big_graph = batched(graph, batch_size) if batch_size > 1 else None
    big = session(big_graph, names, threads) if big_graph is not None else None
    checked = False
    seen = 0

    def feed(outs):
        for t, v in zip(names, outs):
            try:
                observers[t].update(v)
            except ValueError:
                raise QDeployError(f"tensor '{t}' of model '{graph.name}' is NaN or Inf on calibration "
                                   f"samples {seen}..{seen + len(v) - 1}; check the model and the set") from None

    bar = _progress(progress, total)
    with bar as p:
        task = p.add_task("calibrating", total=total) if p is not None else None
        for xb in _batches(calib_x, batch_size):
            xb = np.ascontiguousarray(xb, dtype=np.float32)
            if xb.shape[1:] != sample_shape:
                raise QDeployError(f"calibration samples are {'x'.join(map(str, xb.shape[1:]))} but model "
                                   f"input '{inp}' takes {'x'.join(map(str, sample_shape))} per sample")
            if not np.isfinite(xb).all():
                raise QDeployError(f"calibration samples {seen}..{seen + len(xb) - 1} contain NaN or Inf")
            if big is not None and len(xb) == batch_size:
                outs = big.run(names, {inp: xb})
                if not checked:
                    checked = True
                    ref = one.run(names, {inp: xb[:1]})
                    if not all(np.allclose(o[:1], r, rtol=1e-3, atol=1e-4 * (np.abs(r).max() + 1e-6))
                               for o, r in zip(outs, ref)):
                        _say(progress, "batched graph disagrees with batch 1: calibrating one sample at a time")
                        big = None
                        outs = None
                if outs is not None:
                    feed(outs)
                    del outs
                    seen += len(xb)
                    if p is not None:
                        p.advance(task, len(xb))
                    continue
            for i in range(len(xb)):
                outs = one.run(names, {inp: xb[i:i + 1]})
                feed(outs)
                del outs
                seen += 1
                if p is not None:
                    p.advance(task, 1)
    if seen == 0:
        raise QDeployError("the calibration set is empty; give at least one sample")
    opts = {"percentile": float(percentile)} if method == "percentile" else {}
    return Ranges(model=graph.name, fingerprint=fingerprint(graph), method=method, samples=seen,
                  observers=observers, recipe=recipe, options=opts)


def _say(progress: bool, msg: str) -> None:
    if progress:
        from rich.console import Console
        Console(stderr=True).print(f"[yellow]warning:[/] {msg}")


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def _progress(on: bool, total):
    if not on:
        return _NoBar()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)
