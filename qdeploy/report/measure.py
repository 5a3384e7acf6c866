"""Metrics of a quantized model against the user's ORIGINAL ONNX file.

The float reference of every accuracy number is the model file as given, run on
onnxruntime one sample at a time (not ``model.float.onnx``: a pass that changed
the function would then go unseen). Per output and per backend:

- ``sqnr_db``, ``cosine``, ``max_abs`` (:mod:`qdeploy.quant.error`; ``sqnr_db`` is
  null when the two are identical);
- for a class-score output (one vector per sample, >= 2 entries):
  ``top1_agreement`` (% of samples whose int8 top-1 class is the float one) and
  ``topk_agreement`` (% whose float top-1 class is among the int8 top k, k = min(5, C));
- with labels, on the first output: ``accuracy`` (%) of float and of each backend and
  ``drop`` = float - int8 accuracy, in points.

Per layer (:func:`qdeploy.quant.error.layer_errors`, on the pass-processed float
graph whose tensor names the QGraph keeps): accumulated and layer-local SQNR, on at
most ``LAYER_SAMPLES`` evaluation samples (the reference interpreter is numpy), fewer
when every activation of that many samples (float and int) would exceed ``LAYER_BYTES``
(a bound on the table's time on large models; its memory is one sample's tensors).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import QDeployError
from ..quant.error import metrics

LAYER_SAMPLES = 16
LAYER_BYTES = 1 << 30
RUN_BYTES = 64 << 20   # the reference interpreter's batch outside the table: about this much activation
TOPK = 5


def run_original(model: Path, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The original model's outputs (named after the QGraph's outputs, in order)
    for N samples along axis 0, one sample at a time."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        # by path: onnxruntime finds external data (weights in model.onnx.data) beside the model
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise QDeployError(f"{model}: onnxruntime cannot run the original model ({type(e).__name__}); "
                           "the float reference of the report is the model as given") from None
    inp = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]
    if len(outs) != len(names):
        raise QDeployError(f"{model}: has {len(outs)} outputs, the quantized model {len(names)}")
    runs = [sess.run(outs, {inp: x[i:i + 1]}) for i in range(len(x))]
    return {n: np.concatenate([np.asarray(r[j], np.float32) for r in runs]) for j, n in enumerate(names)}


def classes(shape) -> int | None:
    """Class count of an output whose per-sample shape is one score vector, else None."""
    size = int(np.prod(shape)) if len(shape) else 1
    return size if size >= 2 and max(shape) == size else None


def output_metrics(ref: np.ndarray, got: np.ndarray) -> dict:
    m = {k: _finite(v) for k, v in metrics(ref, got).items()}
    c = classes(ref.shape[1:])
    if c is not None:
        r, g = ref.reshape(len(ref), c), got.reshape(len(got), c)
        k = min(TOPK, c)
        top1 = r.argmax(1)
        m["top1_agreement"] = 100.0 * float(np.mean(g.argmax(1) == top1))
        topk = np.argsort(-g, axis=1, kind="stable")[:, :k]
        m["topk_agreement"] = 100.0 * float(np.mean((topk == top1[:, None]).any(1)))
        m["k"] = k
    return m


def accuracy(out: np.ndarray, y: np.ndarray) -> float:
    return 100.0 * float(np.mean(out.reshape(len(out), -1).argmax(1) == y))


def evaluate(float_out: dict, backends: dict[str, dict], y: np.ndarray | None) -> dict:
    """{"float": {"accuracy"}, backend: {"outputs": {name: metrics}, "accuracy", "drop"}}."""
    first = next(iter(float_out))
    res: dict = {"float": {"accuracy": accuracy(float_out[first], y) if y is not None else None}}
    for b, outs in backends.items():
        row = {"outputs": {o: output_metrics(float_out[o], outs[o]) for o in float_out}}
        if y is not None:
            row["accuracy"] = accuracy(outs[first], y)
            row["drop"] = res["float"]["accuracy"] - row["accuracy"]
        res[b] = row
    return res


def layer_samples(qg, budget: int = LAYER_BYTES) -> int:
    """How many samples the per-layer table runs on (see the module docstring), or with
    another ``budget`` how many samples' activations fit in it (at most ``LAYER_SAMPLES``)."""
    per = sum(int(np.prod(t.shape[1:])) for t in qg.tensors.values() if not t.is_const)
    return int(max(1, min(LAYER_SAMPLES, budget // max(1, per * 13))))   # f32 + int8 + f64 pair


def reference_outputs(g, qg, x: np.ndarray, layers: bool = True) -> tuple[dict, list[dict] | None]:
    """(the reference interpreter's outputs on all of ``x``, the per-layer table on the
    first :func:`layer_samples` samples, or None without ``layers``), with one
    interpreter pass over each sample. Memory holds a few samples' tensors whatever
    ``len(x)``: the table streams its samples one at a time (quant/error.layer_errors),
    and the other samples run in batches of about ``RUN_BYTES`` of activations (the
    interpreter's intermediates, im2col columns in float64, grow with its batch: one
    batch of every held-out sample took quantize's peak memory from 0.3 to 2.5 GiB on
    mobilenet_v2 at 224x224, bench/rss_calib_set.py)."""
    from ..quant.error import layer_errors
    from ..quant.interpreter import run
    n = min(len(x), layer_samples(qg)) if layers else 0
    head: dict = {}
    rows = layer_errors(g, qg, x[:n], outputs=head) if layers else None
    for r in rows or []:
        r.update({k: _finite(v) for k, v in r.items() if isinstance(v, float)})
    batch = layer_samples(qg, RUN_BYTES)
    parts = [head] * bool(head) + [run(qg, {qg.inputs[0]: x[i:i + batch]}) for i in range(n, len(x), batch)]
    return {o: np.concatenate([p[o] for p in parts]) for o in qg.outputs}, rows


def _finite(v):
    return None if isinstance(v, float) and math.isinf(v) else v
