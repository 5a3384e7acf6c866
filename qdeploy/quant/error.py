"""Quantization error metrics and the per-layer error table.

Metrics (``ref`` = float reference, ``test`` = dequantized result; both are
flattened, computed in float64):

* ``sqnr_db``: ``10 log10(sum ref^2 / sum (ref - test)^2)``; ``inf`` when the
  two are identical, ``-inf`` when ``ref`` is all zero and ``test`` is not.
* ``cosine``: ``<ref, test> / (|ref| |test|)``; 1 when both are all zero, 0
  when exactly one is.
* ``max_abs``: ``max |ref - test|``.

:func:`layer_errors` measures every quantized activation tensor of a QGraph
that has a float counterpart of the same name (the quantizer keeps the float
graph's tensor names; tensors it adds, such as a requantized Concat branch,
have no counterpart and are not listed) in two ways:

* **accumulated**: the reference interpreter runs the whole QGraph; each
  intermediate is dequantized and compared with the float graph's tensor
  (onnxruntime, every tensor exposed). This is the error a deployed model has
  at that point.
* **local**: each quantized node is run alone (the interpreter's per-op
  kernel) on the *float* reference inputs quantized with that node's input
  parameters, so only this layer's own quantization error shows (its weights,
  its output scale, its requantisation, its clamp, its LUT). An input with no
  float counterpart (a tensor the quantizer added, such as a Concat branch's
  ``Requantize``) is computed the same way from its own producer's local
  inputs, recursively, so that a requantized branch counts as part of the
  layer that reads it and not as the accumulated error upstream; a tensor no
  node produces takes the interpreter's own value.
"""
from __future__ import annotations

import numpy as np


def sqnr_db(ref, test) -> float:
    r = np.asarray(ref, np.float64).ravel()
    t = np.asarray(test, np.float64).ravel()
    noise = float(np.sum((r - t) ** 2))
    signal = float(np.sum(r ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine(ref, test) -> float:
    r = np.asarray(ref, np.float64).ravel()
    t = np.asarray(test, np.float64).ravel()
    nr, nt = float(np.linalg.norm(r)), float(np.linalg.norm(t))
    if nr == 0.0 and nt == 0.0:
        return 1.0
    if nr == 0.0 or nt == 0.0:
        return 0.0
    return float(np.dot(r, t) / (nr * nt))


def max_abs(ref, test) -> float:
    r = np.asarray(ref, np.float64).ravel()
    t = np.asarray(test, np.float64).ravel()
    return float(np.max(np.abs(r - t))) if r.size else 0.0


def metrics(ref, test) -> dict[str, float]:
    return {"sqnr_db": sqnr_db(ref, test), "cosine": cosine(ref, test), "max_abs": max_abs(ref, test)}


# ------------------------------------------------------------------ per-layer table
_INT = ("int8", "uint8", "int16")


class _Sums:
    """The sums :func:`metrics` needs, accumulated over chunks of samples."""

    def __init__(self):
        self.signal = self.noise = self.dot = self.test = self.worst = 0.0

    def add(self, ref, test) -> None:
        r = np.asarray(ref, np.float64).ravel()
        t = np.asarray(test, np.float64).ravel()
        d = r - t
        self.signal += float(np.dot(r, r))
        self.noise += float(np.dot(d, d))
        self.dot += float(np.dot(r, t))
        self.test += float(np.dot(t, t))
        self.worst = max(self.worst, float(np.max(np.abs(d))) if d.size else 0.0)

    def metrics(self) -> dict[str, float]:
        """:func:`metrics` of everything added (the same conventions for zeros)."""
        if self.noise == 0.0:
            sqnr = float("inf")
        elif self.signal == 0.0:
            sqnr = float("-inf")
        else:
            sqnr = 10.0 * float(np.log10(self.signal / self.noise))
        nr, nt = float(np.sqrt(self.signal)), float(np.sqrt(self.test))
        cos = 1.0 if nr == 0.0 and nt == 0.0 else 0.0 if nr == 0.0 or nt == 0.0 else self.dot / (nr * nt)
        return {"sqnr_db": sqnr, "cosine": float(cos), "max_abs": self.worst}


def layer_errors(float_graph, qg, inputs, got: dict | None = None, outputs: dict | None = None) -> list[dict]:
    """One row per quantized activation tensor with a float counterpart, in
    execution order: ``tensor``, ``node``, ``op`` (QGraph op), ``source``
    (float node names), accumulated ``sqnr_db``/``cosine``/``max_abs`` and
    layer-local ``local_sqnr_db``/``local_cosine``/``local_max_abs``.
    ``inputs``: an array (N samples along axis 0, single-input models) or a
    dict by input name. The samples are measured one at a time (the metrics from
    sums over them), so memory holds one sample's tensors, not N. ``got``: the
    interpreter's ``run(qg, inputs, keep=True)`` when the caller already has it
    (then all at once). ``outputs``: a dict that receives the interpreter's
    float outputs on ``inputs`` (by output name, N along axis 0)."""
    from ..float_run import sample_runs
    from .interpreter import run
    if not isinstance(inputs, dict):
        inputs = {qg.inputs[0]: inputs}
    inputs = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    def one_at_a_time():   # one float session, one sample at a time
        exposed = [t for t in float_graph.activations() if t not in float_graph.inputs]
        for i, ref in enumerate(sample_runs(float_graph, inputs, exposed)):
            one = {k: v[i:i + 1] for k, v in inputs.items()}
            yield one, {**ref, **one}, None
    chunks = [(inputs, float_tensors(float_graph, inputs), got)] if got is not None else one_at_a_time()
    sums: dict = {}
    rows: list[dict] = []
    outs: dict = {o: [] for o in qg.outputs}
    for chunk, ref, kept in chunks:
        kept = run(qg, chunk, keep=True) if kept is None else kept
        for o in qg.outputs:
            outs[o].append(kept[o])
        rows = _layer_rows(qg, ref, kept, sums)
    if outputs is not None:
        outputs.update({o: np.concatenate(v) for o, v in outs.items() if v})
    for r in rows:
        r.update(sums[r["tensor"], ""].metrics())
        r.update({"local_" + k: v for k, v in sums[r["tensor"], "local"].metrics().items()})
    return rows


def _layer_rows(qg, ref: dict, got: dict, sums: dict) -> list[dict]:
    """The rows of :func:`layer_errors` for one chunk of samples (``ref``: the float
    graph's tensors and inputs, ``got``: the interpreter's), their errors added to
    ``sums`` ({(tensor, "" | "local"): _Sums})."""
    from .interpreter import run_node
    producers = {o: n for n in qg.nodes for o in n.outputs}
    memo: dict = {}
    rows = []
    for n in qg.nodes:
        outs = [o for o in n.outputs if qg.tensors[o].dtype in _INT and float_name(qg, ref, o)]
        if not outs:
            continue
        local_in = [_local_input(qg, i, ref, got, producers, memo) for i in n.inputs]
        local_out = dict(zip(n.outputs, run_node(qg, n, local_in)))
        for o in outs:
            fo = ref[float_name(qg, ref, o)]
            sums.setdefault((o, ""), _Sums()).add(fo, dequantize(qg, o, got[o]))
            sums.setdefault((o, "local"), _Sums()).add(fo, dequantize(qg, o, local_out[o]))
            rows.append({"tensor": o, "node": n.name, "op": n.op, "source": list(n.source)})
    return rows


def float_tensors(g, inputs: dict) -> dict:
    """Every activation of the float graph on onnxruntime (one sample at a time:
    the imported graph has batch 1), stacked along axis 0."""
    from ..float_run import run_samples
    out = run_samples(g, inputs, expose=[t for t in g.activations() if t not in g.inputs])
    out.update(inputs)
    return out


def dequantize(qg, name: str, q) -> np.ndarray:
    t = qg.tensors[name]
    return (np.asarray(q, np.float64) - t.zp) * t.s


def float_name(qg, ref, name: str) -> str | None:
    """The float tensor (a key of ``ref``) of QGraph tensor ``name``: the same
    name, or the one the quantizer recorded in ``metadata["float_names"]``
    (graph inputs and outputs: ``<name>_q`` is the int tensor of ``<name>``)."""
    fn = qg.metadata.get("float_names", {}).get(name, name)
    return fn if fn in ref else None


def _local_input(qg, name: str, ref: dict, got: dict, producers: dict, memo: dict):
    """The float reference value quantized with the tensor's own parameters
    (the interpreter's Quantize kernel, so rounding is the contract's); where
    there is no float counterpart, its producer run on local inputs (memoised
    in ``memo``), or the interpreter's value when nothing produces it; None
    for a constant (read from the QGraph)."""
    from .interpreter import run_node
    from .qgraph import QNode
    t = qg.tensors[name]
    if t.is_const:
        return None
    fn = float_name(qg, ref, name)
    if fn is None:
        p = producers.get(name)
        if p is None:
            return got[name]
        if name not in memo:
            ins = [_local_input(qg, i, ref, got, producers, memo) for i in p.inputs]
            memo.update(zip(p.outputs, run_node(qg, p, ins)))
        return memo[name]
    if t.dtype not in _INT:
        return ref[fn]
    return run_node(qg, QNode("Quantize", "local_quantize", [fn], [name]), [ref[fn]])[0]
