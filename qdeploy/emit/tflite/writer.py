"""A TFLite flatbuffer from tensors and operators: the schema's object API, packed once.

:class:`ModelWriter` collects tensors (runtime or constant), operators and the
model's inputs/outputs, and :meth:`ModelWriter.finish` packs them as the TFLite
converter lays a file out: buffer 0 the empty sentinel, constant data of 16
bytes or more (every weight, bias and table) 16-byte aligned, one operator code
per (builtin, version), a SignatureDef ``serving_default`` naming the inputs and
outputs, and a ``qdeploy`` metadata entry (JSON: producer, version, input
recipe). The same calls give the same bytes.

Small on purpose (bench/RESULTS.md "TFLite"; :mod:`.bytemap` shows where the
bytes go): equal constants are one tensor and equal bytes one buffer; shape
vectors, operator input/output vectors, builtin-options tables, quantization
tables and their vectors are written once per distinct content and shared by
offset; only the model's inputs and outputs carry names (``names=True`` writes
every tensor's, for debugging); the most used operator code gets index 0 (a
default, not written). Readers see exactly the values they would in an
unshared file.

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


ALIGN = 16        # weight data: the converter's ``force_align: 16`` (SIMD kernels may read it in place)
SMALL = 16        # buffers shorter than this (shapes, axes, scalars) keep the vector's own 4-byte alignment


class _Shared:
    """What one file packs once per distinct content: integer vectors (shapes, operator
    inputs), quantization tables and their vectors, builtin-options tables, strings.
    Flatbuffers address every object by offset, so tensors and operators with equal
    fields point at one copy; readers see the same values."""

    def __init__(self, builder: flatbuffers.Builder):
        self.b = builder
        self.memo: dict = {}

    def once(self, key, make):
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def ints(self, values) -> int:
        a = np.asarray(values, "<i4").reshape(-1)
        return self.once(("i32", a.tobytes()), lambda: self.b.CreateNumpyVector(a))

    def vector(self, kind: str, a: np.ndarray) -> int:
        return self.once((kind, a.tobytes()), lambda: self.b.CreateNumpyVector(a))

    def string(self, text) -> int:
        return self.once(("str", text), lambda: self.b.CreateString(text))

    def table(self, obj) -> int:
        """A builtin-options table (scalars, or ReshapeOptions' new_shape) once per content."""
        key = ("options", type(obj).__name__, repr(sorted(vars(obj).items())))
        return self.once(key, lambda: obj.Pack(self.b))


class _Buffer(fb.BufferT):
    """A buffer whose data vector starts on a 16-byte boundary when it holds at least
    ``SMALL`` bytes (every weight, bias and table); shorter constants keep the 4-byte
    alignment every flatbuffer vector has, enough for their int32/float32 elements."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), ALIGN if len(payload) >= SMALL else 4)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        fb.BufferStart(builder)
        if data is not None:
            fb.BufferAddData(builder, data)
        return fb.BufferEnd(builder)


class _Quant(fb.QuantizationParametersT):
    """Quantization parameters packed once per distinct content (every per-channel
    weight and bias with the same channel count shares one vector of int64 zero points)."""

    shared: _Shared | None = None

    def Pack(self, builder):
        scale = np.asarray(self.scale, "<f4")
        zp = np.asarray(self.zeroPoint, "<i8")
        dim = int(self.quantizedDimension)

        def make():
            sv, zv = self.shared.vector("f32", scale), self.shared.vector("i64", zp)
            fb.QuantizationParametersStart(builder)
            fb.QuantizationParametersAddScale(builder, sv)
            fb.QuantizationParametersAddZeroPoint(builder, zv)
            fb.QuantizationParametersAddQuantizedDimension(builder, dim)
            return fb.QuantizationParametersEnd(builder)
        return self.shared.once(("quant", scale.tobytes(), zp.tobytes(), dim), make)


class _Tensor(fb.TensorT):
    """A tensor whose shape vector is shared with every tensor of the same shape, and
    whose name is written only when it has one to show (the model's inputs/outputs)."""

    shared: _Shared | None = None
    show_name: bool = True

    def Pack(self, builder):
        shape = self.shared.ints(self.shape)
        name = self.shared.string(self.name) if self.show_name else None
        quant = self.quantization.Pack(builder) if self.quantization is not None else None
        fb.TensorStart(builder)
        fb.TensorAddShape(builder, shape)
        fb.TensorAddType(builder, self.type)
        fb.TensorAddBuffer(builder, self.buffer)
        if name is not None:
            fb.TensorAddName(builder, name)
        if quant is not None:
            fb.TensorAddQuantization(builder, quant)
        return fb.TensorEnd(builder)


class _Operator(fb.OperatorT):
    """An operator whose input/output vectors and options table are shared when equal."""

    shared: _Shared | None = None

    def Pack(self, builder):
        ins, outs = self.shared.ints(self.inputs), self.shared.ints(self.outputs)
        opts = self.shared.table(self.builtinOptions) if self.builtinOptions is not None else None
        fb.OperatorStart(builder)
        fb.OperatorAddOpcodeIndex(builder, self.opcodeIndex)
        fb.OperatorAddInputs(builder, ins)
        fb.OperatorAddOutputs(builder, outs)
        if opts is not None:
            fb.OperatorAddBuiltinOptionsType(builder, self.builtinOptionsType)
            fb.OperatorAddBuiltinOptions(builder, opts)
        return fb.OperatorEnd(builder)


class _TensorMap(fb.TensorMapT):
    """A SignatureDef entry whose name string is the tensor's own (written once)."""

    shared: _Shared | None = None

    def Pack(self, builder):
        name = self.shared.string(self.name)
        fb.TensorMapStart(builder)
        fb.TensorMapAddName(builder, name)
        fb.TensorMapAddTensorIndex(builder, self.tensorIndex)
        return fb.TensorMapEnd(builder)


class ModelWriter:
    """Collects one subgraph; :meth:`finish` returns the file's bytes."""

    def __init__(self, description: str = "", names: bool = False):
        self.description = description
        self.all_names = names          # True: every tensor's name in the file (debugging)
        self.buffers: list[fb.BufferT] = [_Buffer()]
        self.tensors: list[fb.TensorT] = []
        self.names: dict[str, int] = {}
        self._data: dict[bytes, int] = {}            # constant bytes -> buffer
        self._consts: dict[tuple, int] = {}          # (type, shape, bytes, quantization) -> tensor
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
        ``scale``/``zero_point``: one value (per tensor) or one per channel along ``axis``.
        A constant equal to an earlier one (type, shape, bytes, quantization) is that
        tensor; equal bytes share one buffer."""
        t = _Tensor()
        t.shape = [int(d) for d in shape]
        t.type = TYPES[dtype]
        t.buffer = 0
        if scale is not None:
            s = np.atleast_1d(np.asarray(scale, np.float32)).reshape(-1)
            zp = np.broadcast_to(np.asarray(0 if zero_point is None else zero_point, np.int64).reshape(-1),
                                 s.shape)
            q = _Quant()
            q.scale = [float(v) for v in s]
            q.zeroPoint = [int(v) for v in zp]
            q.quantizedDimension = int(axis) if len(s) > 1 else 0
            t.quantization = q
        if data is not None:
            raw = np.ascontiguousarray(np.asarray(data, dtype)).tobytes()
            q = t.quantization
            key = (t.type, tuple(t.shape), raw) + ((tuple(q.scale), tuple(q.zeroPoint), q.quantizedDimension)
                                                   if q is not None else ())
            if key in self._consts:
                return self._consts[key]
            if raw not in self._data:
                b = _Buffer()
                b.data = raw
                self.buffers.append(b)
                self._data[raw] = len(self.buffers) - 1
            t.buffer = self._data[raw]
            self._consts[key] = len(self.tensors)
        t.name = self.unique(name)
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
        o = _Operator()
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
        # the most used operator code first: index 0 is the field's default, not written
        uses = [0] * len(self.opcodes)
        for o in self.operators:
            uses[o.opcodeIndex] += 1
        order = sorted(range(len(uses)), key=lambda k: (-uses[k], k))
        new = {old: k for k, old in enumerate(order)}
        for o in self.operators:
            o.opcodeIndex = new[o.opcodeIndex]
        codes = []
        for (code, version), _ in sorted(self.opcodes.items(), key=lambda kv: new[kv[1]]):
            c = fb.OperatorCodeT()
            c.builtinCode = code
            c.deprecatedBuiltinCode = min(code, 127)
            c.version = version
            codes.append(c)
        model.operatorCodes = codes
        model.subgraphs = [sg]
        buffers = list(self.buffers)
        if metadata is not None:
            b = _Buffer()
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
        builder = flatbuffers.Builder(1 << 16)
        shared = _Shared(builder)
        io = set(inputs) | set(outputs)
        for k, t in enumerate(self.tensors):
            t.shared = shared
            t.show_name = self.all_names or k in io
            if t.quantization is not None:
                t.quantization.shared = shared
        for o in self.operators:
            o.shared = shared
        for m in sig.inputs + sig.outputs:
            m.shared = shared
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def _tensor_map(self, index: int):
        m = _TensorMap()
        m.name = self.tensors[index].name
        m.tensorIndex = int(index)
        return m
