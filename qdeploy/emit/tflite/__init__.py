"""Emitter: the QGraph as a fully-integer TFLite flatbuffer (``model.int8.tflite``).

Written without TensorFlow: the TFLite schema's object API (vendored,
:mod:`.schema_py_generated`) packed by the ``flatbuffers`` runtime
(:mod:`.writer`). The file is NHWC (weights OHWI, depthwise 1HWC, a Flatten
before a FullyConnected keeps the model's element order by permuting the FC's
weight columns, axes remapped; :mod:`.layout`), one lowering per QGraph op
(:mod:`.ops` ``LOWER``), int8 input and output by default (what firmware
feeds; 4-D inputs and outputs are NHWC), or float32 at the edges with
``options["io"] == "float"`` (QUANTIZE / DEQUANTIZE added). TFLite recomputes
every multiplier from the float scales written here, so running the file on
TFLite Micro also judges the quantizer (tests/emit/).

Backends (:mod:`.runners`): ``run_tflm`` (TFLite Micro, bit-exact with the
reference interpreter) and ``run_tflite`` (LiteRT or tflite-runtime).
"""
from __future__ import annotations

import numpy as np

from ...errors import QDeployError
from ...quant.qgraph import QGraph
from .layout import Placed
from .ops import LOWER, Unsupported, limit
from .runners import run_tflite, run_tflm  # noqa: F401  (the ARTEFACTS backends)
from .writer import TYPES, ModelWriter

FILE = "model.int8.tflite"
IO = ("int8", "float")


def emit(qg: QGraph, ctx) -> dict[str, bytes]:
    io = (ctx.options or {}).get("io", "int8")
    meta = {"producer": "qdeploy", "version": ctx.version, "model": ctx.model_name,
            "target": getattr(ctx.target, "name", str(ctx.target)), "recipe": _recipe(ctx.recipe)}
    return {FILE: build(qg, io=io, metadata=meta)}


def build(qg: QGraph, io: str = "int8", metadata: dict | None = None, names: bool = False) -> bytes:
    """The flatbuffer of ``qg``. A QGraph whose inputs are integer tensors (a
    fragment, e.g. one node) gets those as its int8 inputs. ``names``: every
    tensor named after its QGraph tensor (debugging, e.g. in Netron); by default
    only the inputs and outputs are, which keeps ~20 bytes per tensor out of the file."""
    if io not in IO:
        raise QDeployError(f"--io {io}: the TFLite file's inputs/outputs are 'int8' or 'float'")
    if qg.profile != "arm":
        raise QDeployError(f"'{qg.name}' was quantized for the {qg.profile} profile, whose arithmetic "
                           "is not TFLite's; quantize for the arm or cortex-m target to emit TFLite")
    bad = sorted({f"{n.name} ({n.op})" for n in qg.nodes if n.op not in LOWER and n.op not in
                  ("Quantize", "Dequantize")})
    if bad:
        raise QDeployError(f"no TFLite mapping for: {', '.join(bad)}; quantize without --emit tflite")
    w = ModelWriter(f"qdeploy {metadata.get('version', '') if metadata else ''}: "
                    f"{qg.name}, int8, NHWC (io {io})".replace("  ", " "), names=names)
    p = Placed(qg, w)
    inputs = _inputs(qg, p, io)
    problems = []
    for n in qg.nodes:
        if n.op == "Quantize" and n.inputs[0] in qg.inputs:
            continue
        if n.op == "Dequantize" and n.outputs[0] in qg.outputs:
            continue
        if n.name in p.skip:
            continue
        if n.op in ("Quantize", "Dequantize"):
            problems.append(f"node '{n.name}' ({n.op}): float inside the graph has no int8 TFLite form")
            continue
        if problems and any(i not in p.at and not qg.tensors[i].is_const for i in n.inputs):
            continue   # downstream of a node already reported
        try:
            limit(n)
            LOWER[n.op](p, n)
        except Unsupported as e:
            problems.append(f"node '{n.name}' ({n.op}): {e}")
    if problems:
        raise QDeployError(f"cannot write {FILE}: " + "; ".join(problems) +
                           " (or leave tflite out of --emit)")
    outputs = _outputs(qg, p, io)
    meta = dict(metadata or {})
    meta.update({"layout": "NHWC", "io": io,
                 "inputs": [_io_spec(qg, w, name, i) for name, i in zip(qg.inputs, inputs)],
                 "outputs": [_io_spec(qg, w, name, i) for name, i in zip(qg.outputs, outputs)]})
    return w.finish(inputs, outputs, meta)


def _int_of_input(qg: QGraph, name: str) -> str:
    for n in qg.nodes:
        if n.op == "Quantize" and n.inputs[0] == name:
            return n.outputs[0]
    return name   # a fragment: the input is already an integer tensor


def _int_of_output(qg: QGraph, name: str) -> str:
    for n in qg.nodes:
        if n.op == "Dequantize" and n.outputs[0] == name:
            return n.inputs[0]
    return name


def _inputs(qg: QGraph, p: Placed, io: str) -> list[int]:
    out = []
    for name in qg.inputs:
        q = _int_of_input(qg, name)
        lay = "nhwc" if len(qg.tensors[q].shape) == 4 else "native"
        if io == "float" and q != name:
            f = p.w.tensor(name, p.shape_in(q, lay), "float32")
            p.w.op("QUANTIZE", [f], [p.output(q, lay)])
            out.append(f)
        else:
            out.append(p.output(q, lay, tflite_name=name))
    return out


def _outputs(qg: QGraph, p: Placed, io: str) -> list[int]:
    out = []
    for name in qg.outputs:
        q = _int_of_output(qg, name)
        idx = p.get(q, "nhwc" if len(qg.tensors[q].shape) == 4 else "native")
        if io == "float" and q != name:
            f = p.w.tensor(name, p.w.shape(idx), "float32")
            p.w.op("DEQUANTIZE", [idx], [f])
            idx = f
        else:
            p.w.tensors[idx].name = p.w.unique(name) if p.w.tensors[idx].name != name else name
        out.append(idx)
    return out


def _io_spec(qg: QGraph, w: ModelWriter, name: str, idx: int) -> dict:
    """Name and layout of an input/output (its type, shape, scale and zero point are
    the tensor's own, in the file)."""
    return {"name": name, "layout": "NHWC" if len(w.tensors[idx].shape) == 4 else "model"}


# calibration-set bookkeeping, not preprocessing: manifest.json and the report keep it
_NOT_RECIPE = ("sources", "format", "version", "seed", "limit")


def _recipe(recipe):
    """The input recipe firmware needs to preprocess as calibration did (size, layout,
    resize, mean/std, ...); the calibration files' names and digests were most of the
    metadata's bytes."""
    r = _plain(recipe)
    return {k: v for k, v in r.items() if k not in _NOT_RECIPE} if isinstance(r, dict) else r


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v
