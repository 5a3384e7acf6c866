"""Build a one-op int8 TFLite model and run it on TFLite Micro: the judge of the recipes.

``run_oneop(op, inputs, output, options)`` writes a flatbuffer with a single
operator (object API of the TFLite schema: ``ModelT`` ... ``Pack``), runs it on
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
``test`` extra; tests importing this module skip when TFLM is missing.
"""
from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np

try:  # the object API ships inside both judge packages
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
except ImportError:  # pragma: no cover - depends on what is installed
    from ai_edge_litert import schema_py_generated as fb


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


_TYPES = {np.dtype(np.int8): fb.TensorType.INT8, np.dtype(np.float32): fb.TensorType.FLOAT32,
          np.dtype(np.int32): fb.TensorType.INT32}

# op name -> (BuiltinOperator, BuiltinOptions union type, options class or None)
_OPS = {
    "ADD": (fb.BuiltinOperator.ADD, fb.BuiltinOptions.AddOptions, fb.AddOptionsT),
    "SUB": (fb.BuiltinOperator.SUB, fb.BuiltinOptions.SubOptions, fb.SubOptionsT),
    "MUL": (fb.BuiltinOperator.MUL, fb.BuiltinOptions.MulOptions, fb.MulOptionsT),
    "LOGISTIC": (fb.BuiltinOperator.LOGISTIC, 0, None),
    "TANH": (fb.BuiltinOperator.TANH, 0, None),
    "HARD_SWISH": (fb.BuiltinOperator.HARD_SWISH, 0, None),
    "LEAKY_RELU": (fb.BuiltinOperator.LEAKY_RELU, fb.BuiltinOptions.LeakyReluOptions,
                   fb.LeakyReluOptionsT),
    "AVERAGE_POOL_2D": (fb.BuiltinOperator.AVERAGE_POOL_2D, fb.BuiltinOptions.Pool2DOptions,
                        fb.Pool2DOptionsT),
    "MEAN": (fb.BuiltinOperator.MEAN, fb.BuiltinOptions.ReducerOptions, fb.ReducerOptionsT),
    "SOFTMAX": (fb.BuiltinOperator.SOFTMAX, fb.BuiltinOptions.SoftmaxOptions, fb.SoftmaxOptionsT),
    "RESIZE_BILINEAR": (fb.BuiltinOperator.RESIZE_BILINEAR, fb.BuiltinOptions.ResizeBilinearOptions,
                        fb.ResizeBilinearOptionsT),
    "RESIZE_NEAREST_NEIGHBOR": (fb.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR,
                                fb.BuiltinOptions.ResizeNearestNeighborOptions,
                                fb.ResizeNearestNeighborOptionsT),
    "QUANTIZE": (fb.BuiltinOperator.QUANTIZE, 0, None),
    "PRELU": (fb.BuiltinOperator.PRELU, 0, None),
    "MAXIMUM": (fb.BuiltinOperator.MAXIMUM, 0, None),
    "MINIMUM": (fb.BuiltinOperator.MINIMUM, 0, None),
    "TRANSPOSE_CONV": (fb.BuiltinOperator.TRANSPOSE_CONV, fb.BuiltinOptions.TransposeConvOptions,
                       fb.TransposeConvOptionsT),
}

ACTIVATIONS = {None: fb.ActivationFunctionType.NONE, "relu": fb.ActivationFunctionType.RELU,
               "relu6": fb.ActivationFunctionType.RELU6,
               "relu_n1_to_1": fb.ActivationFunctionType.RELU_N1_TO_1}
PADDING = {"same": fb.Padding.SAME, "valid": fb.Padding.VALID}


def _tensor(shape, dtype, scale, zp, buffer, name, axis=0):
    t = fb.TensorT()
    t.shape = [int(d) for d in shape]
    t.type = _TYPES[np.dtype(dtype)]
    t.buffer = buffer
    t.name = name
    if scale is not None:
        scales = np.atleast_1d(np.asarray(scale, np.float32))
        q = fb.QuantizationParametersT()
        q.scale = [float(v) for v in scales]
        q.zeroPoint = [int(v) for v in np.broadcast_to(np.asarray(zp, np.int64), scales.shape)]
        q.quantizedDimension = int(axis)
        t.quantization = q
    return t


def build_oneop(op: str, inputs: list, output: Out, options: dict | None = None) -> bytes:
    """The flatbuffer of a model with one ``op`` (a key of ``_OPS``)."""
    code, opt_type, opt_cls = _OPS[op]
    buffers = [fb.BufferT()]  # buffer 0: the empty sentinel
    tensors, runtime_inputs = [], []
    for i, spec in enumerate(inputs):
        if isinstance(spec, Const):
            b = fb.BufferT()
            b.data = list(np.ascontiguousarray(spec.data).tobytes())
            buffers.append(b)
            tensors.append(_tensor(spec.data.shape, spec.data.dtype, spec.scale, spec.zp,
                                   len(buffers) - 1, f"const{i}", spec.axis))
        else:
            tensors.append(_tensor(spec.data.shape, spec.data.dtype, spec.scale, spec.zp, 0,
                                   f"in{i}"))
            runtime_inputs.append(i)
    tensors.append(_tensor(output.shape, output.dtype, output.scale, output.zp, 0, "out"))

    opcode = fb.OperatorCodeT()
    opcode.builtinCode = code
    opcode.deprecatedBuiltinCode = min(code, 127)
    opcode.version = 1
    operator = fb.OperatorT()
    operator.opcodeIndex = 0
    operator.inputs = list(range(len(inputs)))
    operator.outputs = [len(inputs)]
    if opt_cls is not None:
        opts = opt_cls()
        for k, v in (options or {}).items():
            setattr(opts, k, v)
        operator.builtinOptionsType = opt_type
        operator.builtinOptions = opts
    elif options:
        raise ValueError(f"{op} takes no options")

    sg = fb.SubGraphT()
    sg.tensors = tensors
    sg.inputs = runtime_inputs
    sg.outputs = [len(inputs)]
    sg.operators = [operator]
    model = fb.ModelT()
    model.version = 3
    model.operatorCodes = [opcode]
    model.subgraphs = [sg]
    model.buffers = buffers
    model.description = f"qdeploy one-op {op}"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


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
