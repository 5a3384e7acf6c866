"""A TFLite flatbuffer from tensors and operators: the schema's object API, packed once.

:class:`ModelWriter` collects tensors (runtime or constant), operators and the
model's inputs/outputs, and :meth:`ModelWriter.finish` packs them as the TFLite
converter lays a file out: buffer 0 the empty sentinel, every constant's data
16-byte aligned, one operator code per (builtin, version), a SignatureDef
``serving_default`` naming the inputs and outputs, and a ``qdeploy`` metadata
entry (JSON: producer, version, input recipe). The same calls give the same
bytes.

``OPS`` is the table builtin name -> (BuiltinOperator, options union type,
options class, version). Versions are the ones the TFLite converter writes for
int8 (per-channel) operators (tensorflow/lite/tools/versioning/op_version.cc),
so that LiteRT's op resolver, tflite-runtime and TFLite Micro accept the file;
the few that depend on the operator's parameters (MUL with a rescale >= 1,
RESIZE with align_corners / half_pixel_centers, 5-D TRANSPOSE / STRIDED_SLICE /
PAD) are passed to :meth:`ModelWriter.op` by the lowering.
"""
from __future__ import annotations

import json

import flatbuffers
import numpy as np

from . import schema_py_generated as fb

_B, _O = fb.BuiltinOperator, fb.BuiltinOptions

# name -> (builtin code, options union type, options class, version written for int8)
OPS = {
    "CONV_2D": (_B.CONV_2D, _O.Conv2DOptions, fb.Conv2DOptionsT, 3),
    "CONV_2D_GROUPED": (_B.CONV_2D, _O.Conv2DOptions, fb.Conv2DOptionsT, 6),   # version 6: groups
    "DEPTHWISE_CONV_2D": (_B.DEPTHWISE_CONV_2D, _O.DepthwiseConv2DOptions, fb.DepthwiseConv2DOptionsT, 3),
    "TRANSPOSE_CONV": (_B.TRANSPOSE_CONV, _O.TransposeConvOptions, fb.TransposeConvOptionsT, 3),
    "FULLY_CONNECTED": (_B.FULLY_CONNECTED, _O.FullyConnectedOptions, fb.FullyConnectedOptionsT, 4),
    "ADD": (_B.ADD, _O.AddOptions, fb.AddOptionsT, 2),
    "SUB": (_B.SUB, _O.SubOptions, fb.SubOptionsT, 2),
    "MUL": (_B.MUL, _O.MulOptions, fb.MulOptionsT, 2),
    "MAXIMUM": (_B.MAXIMUM, _O.MaximumMinimumOptions, fb.MaximumMinimumOptionsT, 2),
    "MINIMUM": (_B.MINIMUM, _O.MaximumMinimumOptions, fb.MaximumMinimumOptionsT, 2),
    "PRELU": (_B.PRELU, 0, None, 1),
    "AVERAGE_POOL_2D": (_B.AVERAGE_POOL_2D, _O.Pool2DOptions, fb.Pool2DOptionsT, 2),
    "MAX_POOL_2D": (_B.MAX_POOL_2D, _O.Pool2DOptions, fb.Pool2DOptionsT, 2),
    "MEAN": (_B.MEAN, _O.ReducerOptions, fb.ReducerOptionsT, 2),
    "CONCATENATION": (_B.CONCATENATION, _O.ConcatenationOptions, fb.ConcatenationOptionsT, 2),
    "RESHAPE": (_B.RESHAPE, _O.ReshapeOptions, fb.ReshapeOptionsT, 1),
    "TRANSPOSE": (_B.TRANSPOSE, _O.TransposeOptions, fb.TransposeOptionsT, 2),
    "PAD": (_B.PAD, _O.PadOptions, fb.PadOptionsT, 2),
    "PADV2": (_B.PADV2, _O.PadV2Options, fb.PadV2OptionsT, 2),
    "MIRROR_PAD": (_B.MIRROR_PAD, _O.MirrorPadOptions, fb.MirrorPadOptionsT, 2),
    "STRIDED_SLICE": (_B.STRIDED_SLICE, _O.StridedSliceOptions, fb.StridedSliceOptionsT, 2),
    "SPLIT": (_B.SPLIT, _O.SplitOptions, fb.SplitOptionsT, 2),
    "SPLIT_V": (_B.SPLIT_V, _O.SplitVOptions, fb.SplitVOptionsT, 2),
    "RESIZE_NEAREST_NEIGHBOR": (_B.RESIZE_NEAREST_NEIGHBOR, _O.ResizeNearestNeighborOptions,
                                fb.ResizeNearestNeighborOptionsT, 2),
    "RESIZE_BILINEAR": (_B.RESIZE_BILINEAR, _O.ResizeBilinearOptions, fb.ResizeBilinearOptionsT, 2),
    # the converter writes 2 for int8; tflite-runtime 2.14's reference resolver only has 1 (same kernel)
    "DEPTH_TO_SPACE": (_B.DEPTH_TO_SPACE, _O.DepthToSpaceOptions, fb.DepthToSpaceOptionsT, 1),
    "SPACE_TO_DEPTH": (_B.SPACE_TO_DEPTH, _O.SpaceToDepthOptions, fb.SpaceToDepthOptionsT, 2),
    "LOGISTIC": (_B.LOGISTIC, 0, None, 2),
    "TANH": (_B.TANH, 0, None, 2),
    "HARD_SWISH": (_B.HARD_SWISH, 0, None, 1),
    "LEAKY_RELU": (_B.LEAKY_RELU, _O.LeakyReluOptions, fb.LeakyReluOptionsT, 1),
    "SOFTMAX": (_B.SOFTMAX, _O.SoftmaxOptions, fb.SoftmaxOptionsT, 2),
    "QUANTIZE": (_B.QUANTIZE, 0, None, 1),
    "DEQUANTIZE": (_B.DEQUANTIZE, 0, None, 2),
    "GATHER": (_B.GATHER, _O.GatherOptions, fb.GatherOptionsT, 2),
    "CAST": (_B.CAST, 0, None, 3),
}

TYPES = {"int8": fb.TensorType.INT8, "uint8": fb.TensorType.UINT8, "int32": fb.TensorType.INT32,
         "float32": fb.TensorType.FLOAT32, "int64": fb.TensorType.INT64, "int16": fb.TensorType.INT16}

ACT = fb.ActivationFunctionType
PADDING = {"same": fb.Padding.SAME, "valid": fb.Padding.VALID}


class _AlignedBuffer(fb.BufferT):
    """A buffer whose data vector starts on a 16-byte boundary (the converter's
    ``force_align: 16``; SIMD kernels may read constants in place)."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), 16)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        fb.BufferStart(builder)
        if data is not None:
            fb.BufferAddData(builder, data)
        return fb.BufferEnd(builder)


class _SharedQuant(fb.QuantizationParametersT):
    """Quantization parameters packed once per distinct content: tensors with the same
    scales and zero points (every per-channel weight and bias has a vector of int64
    zero points) point at one table. Readers see the same values; the file shrinks
    by ~12 bytes per output channel."""

    cache: dict | None = None

    def Pack(self, builder):
        scale = np.asarray(self.scale, "<f4")
        zp = np.asarray(self.zeroPoint, "<i8")
        key = ("table", scale.tobytes(), zp.tobytes(), int(self.quantizedDimension))
        if key in self.cache:
            return self.cache[key]

        def vec(kind, a):
            k = (kind, a.tobytes())
            if k not in self.cache:
                self.cache[k] = builder.CreateNumpyVector(a)
            return self.cache[k]
        sv, zv = vec("scale", scale), vec("zero_point", zp)
        fb.QuantizationParametersStart(builder)
        fb.QuantizationParametersAddScale(builder, sv)
        fb.QuantizationParametersAddZeroPoint(builder, zv)
        fb.QuantizationParametersAddQuantizedDimension(builder, int(self.quantizedDimension))
        self.cache[key] = fb.QuantizationParametersEnd(builder)
        return self.cache[key]


class ModelWriter:
    """Collects one subgraph; :meth:`finish` returns the file's bytes."""

    def __init__(self, description: str = ""):
        self.description = description
        self.buffers: list[fb.BufferT] = [_AlignedBuffer()]
        self.tensors: list[fb.TensorT] = []
        self.names: dict[str, int] = {}
        self.operators: list[fb.OperatorT] = []
        self.opcodes: dict[tuple[int, int], int] = {}

    # -------------------------------------------------------------- tensors
    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        return name

    def tensor(self, name: str, shape, dtype: str, scale=None, zero_point=None, axis: int = 0,
               data: np.ndarray | None = None) -> int:
        """Add a tensor (constant when ``data`` is given); returns its index.
        ``scale``/``zero_point``: one value (per tensor) or one per channel along ``axis``."""
        t = fb.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = TYPES[dtype]
        t.name = self.unique(name)
        t.buffer = 0
        if data is not None:
            b = _AlignedBuffer()
            b.data = np.ascontiguousarray(np.asarray(data, dtype)).tobytes()
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            s = np.atleast_1d(np.asarray(scale, np.float32)).reshape(-1)
            zp = np.broadcast_to(np.asarray(0 if zero_point is None else zero_point, np.int64).reshape(-1),
                                 s.shape)
            q = _SharedQuant()
            q.scale = [float(v) for v in s]
            q.zeroPoint = [int(v) for v in zp]
            q.quantizedDimension = int(axis) if len(s) > 1 else 0
            t.quantization = q
        self.tensors.append(t)
        self.names[t.name] = len(self.tensors) - 1
        return len(self.tensors) - 1

    def const(self, name: str, data, dtype: str | None = None, scale=None, zero_point=None,
              axis: int = 0) -> int:
        data = np.asarray(data) if dtype is None else np.asarray(data, dtype)
        return self.tensor(name, data.shape, str(data.dtype), scale, zero_point, axis, data)

    def shape(self, index: int) -> list[int]:
        return list(self.tensors[index].shape)

    def quant(self, index: int) -> tuple[list[float], list[int]]:
        q = self.tensors[index].quantization
        return (list(q.scale), list(q.zeroPoint)) if q is not None else ([], [])

    # -------------------------------------------------------------- operators
    def op(self, name: str, inputs: list[int], outputs: list[int], version: int | None = None,
           **options) -> None:
        code, opt_type, opt_cls, default = OPS[name]
        version = version or default
        key = (code, version)
        if key not in self.opcodes:
            self.opcodes[key] = len(self.opcodes)
        o = fb.OperatorT()
        o.opcodeIndex = self.opcodes[key]
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        if opt_cls is not None:
            opts = opt_cls()
            for k, v in options.items():
                if not hasattr(opts, k):
                    raise TypeError(f"{name} has no option {k}")
                setattr(opts, k, v)
            o.builtinOptionsType = opt_type
            o.builtinOptions = opts
        elif options:
            raise TypeError(f"{name} takes no options")
        self.operators.append(o)

    # -------------------------------------------------------------- file
    def finish(self, inputs: list[int], outputs: list[int], metadata: dict | None = None) -> bytes:
        sg = fb.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        sg.operators = self.operators
        sg.name = "main"
        model = fb.ModelT()
        model.version = 3
        model.description = self.description
        codes = []
        for (code, version), _ in sorted(self.opcodes.items(), key=lambda kv: kv[1]):
            c = fb.OperatorCodeT()
            c.builtinCode = code
            c.deprecatedBuiltinCode = min(code, 127)
            c.version = version
            codes.append(c)
        model.operatorCodes = codes
        model.subgraphs = [sg]
        buffers = list(self.buffers)
        if metadata is not None:
            b = _AlignedBuffer()
            b.data = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
            buffers.append(b)
            m = fb.MetadataT()
            m.name = "qdeploy"
            m.buffer = len(buffers) - 1
            model.metadata = [m]
        model.buffers = buffers
        sig = fb.SignatureDefT()
        sig.signatureKey = "serving_default"
        sig.subgraphIndex = 0
        sig.inputs = [self._tensor_map(i) for i in inputs]
        sig.outputs = [self._tensor_map(i) for i in outputs]
        model.signatureDefs = [sig]
        cache: dict = {}
        for t in self.tensors:
            if t.quantization is not None:
                t.quantization.cache = cache
        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def _tensor_map(self, index: int):
        m = fb.TensorMapT()
        m.name = self.tensors[index].name
        m.tensorIndex = int(index)
        return m
