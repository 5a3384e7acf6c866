"""Build a one-op int8 TFLite model and run it on TFLite Micro: the judge of the recipes.

``run_oneop(op, inputs, output, options)`` writes a flatbuffer with a single
operator (qdeploy's own writer, qdeploy/emit/tflite/writer.py), runs it on
the TFLite Micro Python interpreter (reference kernels, bit-exact with the
TFLite int8 specification; see /work/shared/TOOLCHAIN.md) and returns the output
array. Tensors are NHWC as TFLite wants them; callers transpose.

* an input is ``Tensor(array, scale, zp)`` (a runtime input; int8, or float32
  with ``scale=None``) or ``Const(array)`` (a constant int32 tensor such as
  MEAN's axes or RESIZE's size; with ``scale`` a quantized constant such as
  int8 weights or an int32 bias, per channel along ``axis`` when ``scale`` has
  several values);
* the output is ``Out(shape, scale, zp)`` (``scale=None``: a float32 output).

The judge packages (``tflite-micro``, optional ``ai-edge-litert``) are in the
``test`` extra; the tests using this module skip (importorskip) when TFLM is missing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qdeploy.emit.tflite import schema_py_generated as fb  # noqa: F401  (tests use its enums)
from qdeploy.emit.tflite.writer import ACT, PADDING, ModelWriter  # noqa: F401  (PADDING: re-exported)


@dataclass
class Tensor:
    data: np.ndarray
    scale: float | None = None
    zp: int = 0


@dataclass
class Const:
    data: np.ndarray
    scale: "float | list | None" = None
    zp: "int | list" = 0
    axis: int = 0


@dataclass
class Out:
    shape: tuple
    scale: float | None = None
    zp: int = 0
    dtype: type = np.int8


ACTIVATIONS = {None: ACT.NONE, "relu": ACT.RELU, "relu6": ACT.RELU6, "relu_n1_to_1": ACT.RELU_N1_TO_1}


def build_oneop(op: str, inputs: list, output: Out, options: dict | None = None) -> bytes:
    """The flatbuffer of a model with one ``op`` (a builtin name of the emitter's
    ``writer.OPS`` table), written by qdeploy's own TFLite writer."""
    w = ModelWriter(f"qdeploy one-op {op}")
    idx, runtime = [], []
    for i, spec in enumerate(inputs):
        data = np.asarray(spec.data)
        if isinstance(spec, Const):
            idx.append(w.tensor(f"const{i}", data.shape, str(data.dtype), spec.scale, spec.zp, spec.axis, data))
        else:
            idx.append(w.tensor(f"in{i}", data.shape, str(data.dtype), spec.scale, spec.zp))
            runtime.append(idx[-1])
    out = w.tensor("out", output.shape, str(np.dtype(output.dtype)), output.scale, output.zp)
    w.op(op, idx, [out], **(options or {}))
    return w.finish(runtime, [out])


def run_tflm(blob: bytes, arrays: list, arena_size: int = 1 << 16) -> np.ndarray:
    """Run a model on TFLite Micro (reference kernels) and return output 0."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(blob, arena_size=arena_size)
    for i, a in enumerate(arrays):
        interp.set_input(np.ascontiguousarray(a), i)
    interp.invoke()
    return np.array(interp.get_output(0))


def run_oneop(op: str, inputs: list, output: Out, options: dict | None = None) -> np.ndarray:
    """Build the one-op model and run it on TFLite Micro."""
    blob = build_oneop(op, inputs, output, options)
    arrays = [s.data for s in inputs if isinstance(s, Tensor)]
    tensor_bytes = sum(a.nbytes for a in arrays) + 4 * int(np.prod(output.shape))
    return run_tflm(blob, arrays, arena_size=(1 << 16) + 8 * tensor_bytes)
