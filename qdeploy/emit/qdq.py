"""QDQ emitter: the QGraph as an ONNX model of QuantizeLinear/DequantizeLinear
pairs around float ops, the form onnxruntime's graph transformers fuse into
its int8 kernels (QLinearConv, QLinearAdd, QLinearMul, QLinearConcat,
QLinearGlobalAveragePool, QGemm, ...).

Every integer comes from the QGraph, nothing is re-decided:

* every int tensor ``T`` of the QGraph is a uint8/int8 ONNX tensor ``T`` made
  by a ``QuantizeLinear`` with exactly ``T``'s scale and zero point; every
  reader gets its own ``DequantizeLinear`` (onnxruntime's selectors want one
  DQ per node unit);
* weights: the QGraph's int8 data, per-channel on the output-channel axis
  (ConvTranspose: ONNX's axis 1, groups of one), zero point 0; biases: the
  int32 data with scale ``s_x * s_w`` and zero point 0;
* a fused ReLU/clamp is the output ``QuantizeLinear``'s saturation when the
  clamp is the whole dtype range (the usual case: calibration puts the zero
  point at qmin after a ReLU); a narrower clamp is an integer ``Clip`` on the
  quantized tensor (exact, and it leaves the Q -> DQ pattern fusable);
* ``Lut`` (h-swish, h-sigmoid, SiLU, sigmoid, tanh, leaky ReLU tables), chosen
  by measurement (bench/RESULTS.md "QDQ speed", tests/emit/test_qdq_oneop.py):
  ``ort`` profile: the float activation between DQ and Q. onnxruntime fuses
  Sigmoid and LeakyRelu into its QLinearSigmoid/QLinearLeakyRelu tables and
  runs the others as vectorised float; on the corpus it gives the QGraph's
  table entries on 100 % of the elements (the ort tables are built from the
  float function) and ran mobilenet_v3_small 2.2x faster than the lookup
  (Gather on uint8 is a per-element copy in onnxruntime, 40 % of the time).
  ``arm`` profile: ``Gather`` on the QGraph's own 256-entry table (the TFLite
  recipe's integers, which the float function misses by 1 LSB on up to 5 % of
  the elements), indexed by the quantized input cast to int32 (int8 inputs
  index a table rotated by 128, so that Gather's negative indices land on the
  right entry): bit-exact, and speed is not what the arm QDQ model is for.
  ``options["lut"] = "gather" | "float"`` overrides;
* ``Float`` (a layer kept in float, ``quantize --keep-float``): DQ -> the float
  Conv/ConvTranspose/Gemm with its float32 weights and bias as plain initializers
  (no DQ, so onnxruntime's QDQ selectors leave it a float op) -> Q; the input DQ
  is per axis (see ``_Builder.dq_float_input``: else onnxruntime quantizes the
  weights itself);
* ``Requantize`` is DQ -> Max (of one input, a no-op) -> Q with the two
  tensors' parameters (a bare DQ -> Q would be merged by onnxruntime's
  DoubleQDQPairsRemover into one Q with other parameters). On the ``ort``
  profile a Requantize read only by Concat nodes (the quantizer's
  concat-branch requantisation) is not emitted: the Concat reads the branch's
  own tensor through its own DequantizeLinear, and onnxruntime's QLinearConcat
  requantises that input inside the kernel, by a 256-entry table built as
  ``QuantizeLinear(float32(s_in * (q - zp_in)))`` with the Concat's output
  parameters: the same float32 DQ -> Q the reference's ``requant = "float32"``
  Requantize computes (bit-exact; :func:`concat_requantizes`);
* weights stored as uint8 (target key ``weight_dtype = "uint8"``, the ``ort``
  default, recorded in the QGraph's metadata): the QGraph's int8 weights + 128
  with zero point 128, the same float values, so onnxruntime fuses its uint8 x
  uint8 kernels. With int8 weights it runs uint8 x int8 kernels, which on x86
  CPUs without VNNI (AMD Zen 1-3, Intel before Cascade Lake / Ice Lake) add pairs
  of products in int16 (``vpmaddubsw``) and saturate: measured on an AMD EPYC
  (Zen 3) with onnxruntime 1.32, the digits CNN's logits were up to 42 LSB off
  the reference and every corpus model's output failed 1 LSB; with uint8
  weights all are bit-exact there (tests/emit/test_qdq_oneop.py, _corpus.py).
  Speed: bench/RESULTS.md "QDQ on a CPU without VNNI";
* 7-bit weights (onnxruntime's ``reduce_range``) are the quantizer's decision
  (target key ``weight_bits = 7``, recorded in the QGraph's metadata); the
  emitter writes the weights it is given.

Numerics: onnxruntime requantises with a float32 scale and rounds half to
even. The ``ort`` profile's QGraph says the same (``requant = "float32"``:
QLinearConv/QGemm, QLinearMul, QLinearGlobalAveragePool, Quantize/
DequantizeLinear), so ``--backend ref`` predicts this model bit for bit; its
bilinear ``Resize`` (the reference keeps TFLite's Q10 recipe, onnxruntime's
uint8 Resize interpolates its own way: 2.4 % of seg_head's elements were 1 LSB
off) is the exact subgraph of qdeploy.emit.qdq_exact. All 11 corpus models
bit-exact end to end.

The ``arm`` profile (``arm`` and ``cortex-m`` targets) is TFLite's arithmetic:
Q31 multipliers with *double* rounding and TFLite's Add/Mul/Mean/AvgPool/Resize
recipes, which no onnxruntime int8 kernel follows. Fused into QLinearConv &
co., 0.06-0.4 % of every conv's elements (where the first rounding lands on a
tie of the second) and 13 % of Mean's were 1 LSB off, and through the
random-weight corpus nets that grew to 27-100 % within 1 LSB end to end (max
21 LSB). Design decision: the arm QDQ model is the portable *check* of the
TFLite/C numerics (the fast onnxruntime path is the ``ort`` target), so on arm
every op with its own rounding is an integer-exact subgraph
(:mod:`qdeploy.emit.qdq_exact`: exact integer sums by float32 Conv /
MatMulInteger, the Q31 requantisation in float64, ReduceSum) that ends in the
QGraph's int8 tensor: bit-exact end to end on all 11 corpus models (and on
the real ppocr_v5_cls, ppocr_v5_det, ddddocr_det, measured once), at 1.3-5.3x
the fused form's latency at 1 thread (bench/RESULTS.md "QDQ speed:
integer-exact subgraphs"; the ort bilinear Resize costs about 0.12 ms on
seg_head).
``options["exact"] = "0"``
(``build(exact=False)``) gives the fused form back.

The model has batch 1 (like the TFLite artefact); :func:`run` feeds N samples
one by one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import QDeployError

OPSET = 17
FILE = "model.qdq.onnx"
_NP = {"int8": np.int8, "uint8": np.uint8, "int32": np.int32, "float32": np.float32}


class _Builder:
    """Collects nodes and initializers; knows the QGraph's tensors."""

    def __init__(self, qg, lut: str):
        self.qg, self.lut = qg, lut
        self.nodes, self.inits, self.names = [], {}, set(qg.tensors) | set(qg.inputs) | set(qg.outputs)
        self.edge = 0
        self.alias: dict[str, str] = {}   # Requantize output -> its input (read through QLinearConcat)

    def unique(self, base: str) -> str:
        name, k = base, 0
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def const(self, base: str, value) -> str:
        # a QGraph constant keeps its own name (the first time it is written)
        name = base if base in self.qg.tensors and base not in self.inits else self.unique(base)
        self.inits[name] = np.asarray(value)
        return name

    def node(self, op: str, inputs, outputs, name: str, domain: str = "", **attrs):
        from onnx import helper
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=self.unique(name),
                                           domain=domain, **attrs))

    def qparams(self, t, as_uint8: bool = False) -> tuple[str, str]:
        """Scale and zero-point initializers of QTensor ``t`` (scalars per tensor);
        ``as_uint8``: an int8 tensor's zero point + 128, as uint8 (:meth:`const_dq`)."""
        z = np.asarray(t.zero_point).reshape(-1)
        z = (z.astype(np.int16) + 128).astype(np.uint8) if as_uint8 else z.astype(_NP[t.dtype])
        if t.axis is None or np.asarray(t.scale).size == 1:
            s, z = np.float32(np.asarray(t.scale).reshape(-1)[0]), z[0]
        else:
            s = np.asarray(t.scale, np.float32).reshape(-1)
            z = np.broadcast_to(z, s.shape).copy()
        return self.const(t.name + "_scale", s), self.const(t.name + "_zero_point", z)

    def dq(self, name: str, reader: str) -> str:
        """A float view of QGraph tensor ``name`` for one reader (its own DQ)."""
        name = self.alias.get(name, name)
        t = self.qg.tensors[name]
        if t.dtype == "float32":
            return name
        if t.is_const:
            return self.const_dq(t, t.data, reader)
        s, z = self.qparams(t)
        out = self.unique(f"{name}_dq_{reader}")
        self.node("DequantizeLinear", [name, s, z], [out], f"{name}_dq_{reader}")
        return out

    def dq_float_input(self, name: str, reader: str) -> str:
        """The input of a layer kept in float: a DequantizeLinear along axis 1 with the
        tensor's one scale and zero point repeated per channel (the same values as the
        per-tensor DQ). onnxruntime's WeightBiasQuantization quantizes the float weights
        of a Conv/Gemm whose input comes from a *per-tensor* DQ (symmetric, per tensor:
        up to 2 LSB off, measured on digits) and then fuses it into QLinearConv; a
        per-axis DQ leaves the layer in float."""
        t = self.qg.tensors[name]
        c = int(t.shape[1])
        s = self.const(f"{name}_scale_per_channel", np.full(c, np.float32(t.s), np.float32))
        z = self.const(f"{name}_zero_point_per_channel", np.full(c, t.zp, _NP[t.dtype]))
        out = self.unique(f"{name}_dq_{reader}")
        self.node("DequantizeLinear", [name, s, z], [out], f"{name}_dq_{reader}", axis=1)
        return out

    def const_dq(self, t, data, reader: str, axis: int | None = None, as_uint8: bool = False) -> str:
        """A constant int tensor behind its DequantizeLinear; ``as_uint8``: int8 data
        stored as uint8, the same integers + 128 with the zero point + 128 (the same
        float values: weights for onnxruntime's uint8 x uint8 kernels, :meth:`weight`)."""
        data = np.asarray(data)
        data = (data.astype(np.int16) + 128).astype(np.uint8) if as_uint8 else data.astype(_NP[t.dtype])
        q = self.const(t.name, data)
        s, z = self.qparams(t, as_uint8)
        out = self.unique(f"{t.name}_dq")
        per_channel = t.axis is not None and np.asarray(t.scale).size > 1
        attrs = {"axis": int(t.axis if axis is None else axis)} if per_channel else {}
        self.node("DequantizeLinear", [q, s, z], [out], f"{t.name}_dq", **attrs)
        return out

    def layer_input(self, n) -> str:
        """The float view of a conv/FC node's input (per axis for a ``Float`` node)."""
        return self.dq_float_input(n.inputs[0], n.name) if n.op == "Float" else self.dq(n.inputs[0], n.name)

    def weight(self, t, data, reader: str, axis: int | None = None) -> str:
        """A conv/FC weight or bias as the float op reads it: the int data behind a
        DequantizeLinear, or (a ``Float`` node's float32 constant) a plain initializer,
        which onnxruntime cannot fuse into QLinearConv/QGemm."""
        if t.dtype == "float32":
            return self.const(t.name, np.asarray(data, np.float32))
        # weight_dtype = "uint8" (the ort default): onnxruntime's uint8 x uint8 kernels (module docstring)
        as_uint8 = t.dtype == "int8" and self.qg.metadata.get("weight_dtype") == "uint8"
        return self.const_dq(t, data, reader, axis, as_uint8)

    def q(self, n, float_out: str, k: int = 0) -> None:
        """``QuantizeLinear`` of a node's float result into its QGraph output,
        then the integer clamp when the node's act range is narrower than the dtype's."""
        name = n.outputs[k]
        t = self.qg.tensors[name]
        info = np.iinfo(_NP[t.dtype])
        lo = int(n.params.get("act_min", info.min))
        hi = int(n.params.get("act_max", info.max))
        s, z = self.qparams(t)
        if (lo, hi) == (info.min, info.max):
            self.node("QuantizeLinear", [float_out, s, z], [name], f"{name}_q")
            return
        sat = self.unique(f"{name}_saturated")
        self.node("QuantizeLinear", [float_out, s, z], [sat], f"{name}_q")
        dt = _NP[t.dtype]
        self.node("Clip", [sat, self.const(f"{name}_act_min", dt(lo)), self.const(f"{name}_act_max", dt(hi))],
                  [name], f"{name}_clamp")

    def f(self, n, k: int = 0) -> str:
        """A fresh name for node ``n``'s k-th float result."""
        return self.unique(f"{n.outputs[k]}_float")


# ------------------------------------------------------------------ op handlers
def _conv(b: _Builder, n) -> None:
    a = n.attrs
    w = b.qg.tensors[n.inputs[1]]
    x = b.layer_input(n)
    wf = b.weight(w, w.data, n.name)
    bias = b.weight(b.qg.tensors[n.inputs[2]], b.qg.tensors[n.inputs[2]].data, n.name)
    y = b.f(n)
    b.node("Conv", [x, wf, bias], [y], n.name, kernel_shape=list(w.shape[2:]), strides=list(a["strides"]),
           pads=list(a["pads"]), dilations=list(a["dilations"]), group=int(a["group"]))
    b.q(n, y)


def _conv_transpose(b: _Builder, n) -> None:
    a = n.attrs
    w = b.qg.tensors[n.inputs[1]]
    o, cg, kh, kw = w.data.shape
    g = int(a["group"])
    per_channel = w.axis is not None and w.scale is not None and np.asarray(w.scale).size > 1
    if g != 1 and per_channel:
        raise QDeployError(f"node '{n.name}' (TransposeConv2D, group {g}): per-channel weights of a grouped "
                           "transposed convolution have no QDQ form (DequantizeLinear's axis 1 spans one "
                           "group); quantize with --per-tensor or drop 'qdq' from --emit")
    # back to ONNX's [C_in, C_out/g, kh, kw]; the output channel is axis 1
    onnx_w = w.data.reshape(g, o // g, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(g * cg, o // g, kh, kw)
    x = b.layer_input(n)
    wf = b.weight(w, onnx_w, n.name, axis=1)
    bias = b.weight(b.qg.tensors[n.inputs[2]], b.qg.tensors[n.inputs[2]].data, n.name)
    y = b.f(n)
    b.node("ConvTranspose", [x, wf, bias], [y], n.name, kernel_shape=[kh, kw], strides=list(a["strides"]),
           pads=list(a["pads"]), dilations=list(a["dilations"]), group=g,
           output_padding=list(a.get("output_padding", [0, 0])))
    b.q(n, y)


def _fully_connected(b: _Builder, n) -> None:
    w = b.qg.tensors[n.inputs[1]]
    x = b.layer_input(n)
    wf = b.weight(w, w.data, n.name)
    bias = b.weight(b.qg.tensors[n.inputs[2]], b.qg.tensors[n.inputs[2]].data, n.name)
    y = b.f(n)
    b.node("Gemm", [x, wf, bias], [y], n.name, transB=1)
    b.q(n, y)


_ELEMENTWISE = {"Add": "Add", "Sub": "Sub", "Mul": "Mul", "Maximum": "Max", "Minimum": "Min",
                "PRelu": "PRelu", "Concat": "Concat", "Softmax": "Softmax"}


def _elementwise(b: _Builder, n) -> None:
    xs = [b.dq(i, n.name) for i in n.inputs]
    y = b.f(n)
    attrs = {"axis": int(n.attrs["axis"])} if n.op in ("Concat", "Softmax") else {}
    b.node(_ELEMENTWISE[n.op], xs, [y], n.name, **attrs)
    b.q(n, y)


def _pool(b: _Builder, n) -> None:
    a = n.attrs
    if n.params.get("requant") == "shift":
        raise QDeployError(f"node '{n.name}' ({n.op}): the fpga shift average has no QDQ form; "
                           "drop 'qdq' from --emit")
    x = b.dq(n.inputs[0], n.name)
    y = b.f(n)
    geo = dict(kernel_shape=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]))
    if n.op == "MaxPool":
        b.node("MaxPool", [x], [y], n.name, dilations=list(a.get("dilations", [1, 1])), **geo)
    else:
        b.node("AveragePool", [x], [y], n.name, count_include_pad=0, **geo)
    b.q(n, y)


def _mean(b: _Builder, n) -> None:
    if n.params.get("requant") == "shift":
        raise QDeployError(f"node '{n.name}' (Mean): the fpga shift mean has no QDQ form; drop 'qdq' from --emit")
    x = b.dq(n.inputs[0], n.name)
    y = b.f(n)
    axes, keep = list(n.attrs.get("axes", [2, 3])), int(bool(n.attrs.get("keepdims", True)))
    if axes != [2, 3] or len(b.qg.tensors[n.inputs[0]].shape) != 4:
        b.node("ReduceMean", [x], [y], n.name, axes=axes, keepdims=keep)
    elif keep:
        b.node("GlobalAveragePool", [x], [y], n.name)
    else:   # GlobalAveragePool (fuses to QLinearGlobalAveragePool), then an int8 Reshape on the same grid
        t = b.qg.tensors[n.outputs[0]]
        s, z = b.qparams(t)
        pooled, q, d = (b.unique(f"{n.outputs[0]}_{k}") for k in ("pooled", "pooled_q", "pooled_dq"))
        b.node("GlobalAveragePool", [x], [pooled], n.name)
        b.node("QuantizeLinear", [pooled, s, z], [q], q)
        b.node("DequantizeLinear", [q, s, z], [d], d)
        b.node("Reshape", [d, b.const(n.name + "_shape", _i64(t.shape))], [y], n.name + "_reshape")
    b.q(n, y)


def _i64(v) -> np.ndarray:
    return np.asarray(v, np.int64).reshape(-1)


def _movement(b: _Builder, n) -> None:
    a = n.attrs
    x = b.dq(n.inputs[0], n.name)
    ys = [b.f(n, k) for k in range(len(n.outputs))]
    op = n.op
    if op == "Reshape":
        b.node("Reshape", [x, b.const(n.name + "_shape", _i64(a["shape"]))], ys, n.name)
    elif op == "Transpose":
        b.node("Transpose", [x], ys, n.name, perm=list(a["perm"]))
    elif op == "Pad":
        t = b.qg.tensors[n.inputs[0]]
        ins = [x, b.const(n.name + "_pads", _i64(a["pads"]))]
        mode = a.get("mode", "constant")
        if mode == "constant":
            ins.append(b.const(n.name + "_value", np.float32(t.s * (int(n.params["value"]) - t.zp))))
        b.node("Pad", ins, ys, n.name, mode=mode)
    elif op == "Slice":
        b.node("Slice", [x] + [b.const(f"{n.name}_{k}", _i64(a[k])) for k in ("starts", "ends", "axes", "steps")],
               ys, n.name)
    elif op == "Split":
        b.node("Split", [x, b.const(n.name + "_split", _i64(a["split"]))], ys, n.name, axis=int(a["axis"]))
    elif op == "DepthToSpace":
        b.node("DepthToSpace", [x], ys, n.name, blocksize=int(a["blocksize"]), mode=a.get("mode", "DCR"))
    elif op == "SpaceToDepth":
        b.node("SpaceToDepth", [x], ys, n.name, blocksize=int(a["blocksize"]))
    elif op == "Resize":
        attrs = dict(mode=a["mode"], coordinate_transformation_mode=a.get("coordinate_transformation_mode",
                                                                           "half_pixel"))
        if a["mode"] == "nearest":
            attrs["nearest_mode"] = a.get("nearest_mode", "round_prefer_floor")
        sizes = b.const(n.name + "_sizes", _i64(b.qg.tensors[n.outputs[0]].shape))
        b.node("Resize", [x, "", "", sizes], ys, n.name, **attrs)
    for k, y in enumerate(ys):
        b.q(n, y, k)


def concat_requantizes(qg) -> dict[str, str]:
    """The ort profile's Requantize nodes that QLinearConcat does itself:
    ``requant = "float32"``, full dtype range, output read only by Concat
    nodes and not a graph output. Returns {Requantize output: its input}."""
    if qg.profile != "ort":
        return {}
    readers = qg.readers()
    out = {}
    for n in qg.nodes:
        if n.op != "Requantize" or n.params.get("requant") != "float32":
            continue
        y = n.outputs[0]
        t = qg.tensors[y]
        full = (n.params.get("act_min", np.iinfo(t.dtype).min) == np.iinfo(t.dtype).min
                and n.params.get("act_max", np.iinfo(t.dtype).max) == np.iinfo(t.dtype).max)
        if full and y not in qg.outputs and {r.op for r in readers.get(y, ())} == {"Concat"} \
                and qg.tensors[n.inputs[0]].dtype == t.dtype:
            out[y] = n.inputs[0]
    return out


def _requantize(b: _Builder, n) -> None:
    if n.outputs[0] in b.alias:   # QLinearConcat requantises this input itself (concat_requantizes)
        return
    if n.params.get("requant") == "shift":
        raise QDeployError(f"node '{n.name}' (Requantize): fpga shift requantisation has no QDQ form; "
                           "drop 'qdq' from --emit")
    # DQ -> Max (of the one input: a no-op) -> Q: a bare DQ -> Q between two other QDQ pairs is
    # merged by onnxruntime's DoubleQDQPairsRemover into one Q with *other* parameters (the
    # intersection of both ranges); the no-op keeps the QGraph's two roundings, and being
    # element-wise it lets onnxruntime's NHWC layout pass through (a Reshape there costs Transposes)
    y = b.f(n)
    b.node("Max", [b.dq(n.inputs[0], n.name)], [y], n.name)
    b.q(n, y)


# float activations for options["lut"] = "float" (the measured alternative to Gather)
def _float_activation(b: _Builder, n, x: str, y: str) -> None:
    func, a = n.attrs["func"], n.attrs
    need = {"leaky_relu": ("alpha",), "hardsigmoid": ("alpha", "beta")}.get(func, ())
    if any(k not in a for k in need):
        raise QDeployError(f"node '{n.name}' (Lut '{func}') does not record its {'/'.join(need)} (a QGraph "
                           "from an older qdeploy); quantize again, or emit with lut='gather'")
    if func == "sigmoid":
        b.node("Sigmoid", [x], [y], n.name)
    elif func == "tanh":
        b.node("Tanh", [x], [y], n.name)
    elif func == "hardswish":
        b.node("HardSwish", [x], [y], n.name)
    elif func == "hardsigmoid":
        b.node("HardSigmoid", [x], [y], n.name, alpha=float(a["alpha"]), beta=float(a["beta"]))
    elif func == "leaky_relu":
        b.node("LeakyRelu", [x], [y], n.name, alpha=float(a["alpha"]))
    elif func == "silu":
        s = b.unique(n.name + "_sigmoid")
        b.node("Sigmoid", [x], [s], n.name + "_sigmoid")
        b.node("Mul", [x, s], [y], n.name)
    else:
        raise QDeployError(f"node '{n.name}' (Lut '{func}'): no float ONNX activation for it; "
                           "emit with lut='gather'")


def _lut(b: _Builder, n) -> None:
    if b.lut == "float":
        y = b.f(n)
        _float_activation(b, n, b.dq(n.inputs[0], n.name), y)
        b.q(n, y)
        return
    t_in, t_out = b.qg.tensors[n.inputs[0]], b.qg.tensors[n.outputs[0]]
    table = np.asarray(n.params["table"]).astype(_NP[t_out.dtype]).reshape(-1)
    if t_in.dtype == "int8":   # index q - qmin = q + 128: q >= 0 -> table[q + 128], q < 0 -> table[256 + q]
        table = np.roll(table, -128)
    idx = b.unique(n.inputs[0] + "_index_" + n.name)
    b.node("Cast", [n.inputs[0]], [idx], n.name + "_index", to=6)   # INT32
    b.node("Gather", [b.const(n.name + "_table", table), idx], [n.outputs[0]], n.name, axis=0)


def _float(b: _Builder, n) -> None:
    """A layer kept in float: the op it stands for, with float weights (``_Builder.weight``)
    and a per-axis input DQ (``_Builder.dq_float_input``)."""
    HANDLERS[n.attrs["op"]](b, n)


def _quantize(b: _Builder, n) -> None:
    b.q(n, n.inputs[0])


def _dequantize(b: _Builder, n) -> None:
    t = b.qg.tensors[n.inputs[0]]
    s, z = b.qparams(t)
    b.node("DequantizeLinear", [n.inputs[0], s, z], [n.outputs[0]], n.name)


def _refuse(b: _Builder, n) -> None:
    raise QDeployError(f"node '{n.name}' ({n.op}) has no QDQ form (fpga shift arithmetic); "
                       "drop 'qdq' from --emit or choose the arm/ort target")


# QGraph op -> handler (the emit column of the op table; the QGraph docstring is the contract)
HANDLERS = {
    "Quantize": _quantize, "Dequantize": _dequantize,
    "Conv2D": _conv, "TransposeConv2D": _conv_transpose, "FullyConnected": _fully_connected,
    **{op: _elementwise for op in _ELEMENTWISE},
    "AvgPool": _pool, "MaxPool": _pool, "Mean": _mean,
    **{op: _movement for op in ("Reshape", "Transpose", "Pad", "Slice", "Split", "DepthToSpace",
                                "SpaceToDepth", "Resize")},
    "Lut": _lut, "Requantize": _requantize, "LeakyShift": _refuse, "Float": _float,
}
LUT_MODES = ("gather", "float")


def default_lut(profile: str) -> str:
    """How Lut nodes are emitted unless asked otherwise (see the module docstring)."""
    return "float" if profile == "ort" else "gather"


def exact_ops(profile: str, exact: bool | None = None) -> frozenset:
    """The QGraph ops emitted as integer-exact subgraphs (qdeploy.emit.qdq_exact):
    ``exact=None`` the profile's default (arm: every op with its own rounding,
    whose double-rounding requantisation onnxruntime's kernels do not follow;
    ort: the bilinear Resize only), True all of them, False none (the fused form)."""
    from . import qdq_exact
    every = frozenset(qdq_exact.HANDLERS) | {"Resize"}
    if exact is None:
        return every if profile == "arm" else frozenset({"Resize"})
    return every if exact else frozenset()


def handler_of(n, exact: frozenset):
    """The emit handler of QGraph node ``n``: its integer-exact subgraph when
    ``n.op`` is in ``exact`` (:func:`exact_ops`), else the QDQ form onnxruntime fuses."""
    from . import qdq_exact
    if n.op in exact:
        if n.op == "Resize":
            if n.attrs.get("mode") != "nearest":
                return qdq_exact.resize_bilinear
        elif n.params.get("requant", "q31") == "q31":
            return qdq_exact.HANDLERS[n.op]
    return HANDLERS.get(n.op)


def build(qg, lut: str | None = None, doc: str = "", exact: bool | None = None) -> "onnx.ModelProto":
    """The QDQ ONNX model of ``qg`` (checked with onnx.checker, full check);
    ``lut``: "gather" | "float" | None (the profile's default); ``exact``:
    integer-exact subgraphs for ops with their own rounding (None: the
    profile's default, :func:`exact_ops`)."""
    import onnx
    from onnx import helper, numpy_helper
    lut = lut or default_lut(qg.profile)
    if lut not in LUT_MODES:
        raise QDeployError(f"qdq option lut={lut!r}: choose one of {', '.join(LUT_MODES)}")
    exact = exact_ops(qg.profile, exact)
    if qg.profile not in ("arm", "ort"):
        raise QDeployError(f"the QDQ model cannot express the '{qg.profile}' profile's arithmetic "
                           f"(target '{qg.target}'); drop 'qdq' from --emit")
    b = _Builder(qg, lut)
    b.alias = concat_requantizes(qg)
    for n in qg.nodes:
        handler = handler_of(n, exact)
        if handler is None:
            raise QDeployError(f"node '{n.name}' ({n.op}) has no QDQ form in this qdeploy; "
                               "drop 'qdq' from --emit")
        handler(b, n)

    def io(name):
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(qg.tensors[name].shape))
    graph = helper.make_graph(b.nodes, qg.name or "model", [io(i) for i in qg.inputs], [io(o) for o in qg.outputs],
                              initializer=[numpy_helper.from_array(v, k) for k, v in b.inits.items()])
    graph.doc_string = doc
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qdeploy")
    m.ir_version = 8
    m.doc_string = doc
    try:
        onnx.checker.check_model(m, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise QDeployError(f"the QDQ model of '{qg.name}' fails onnx.checker ({first}); "
                           "this is a qdeploy bug, please report it") from None
    return m


def emit(qg, ctx) -> dict[str, bytes]:
    lut = ctx.options.get("lut")
    exact = ctx.options.get("exact")
    doc = (f"Made by qdeploy {ctx.version} (qdeploy.emit.qdq) from {ctx.model_name} for target "
           f"'{qg.target}' ({qg.profile} profile); rebuild with `qdeploy quantize` --emit qdq.")
    m = build(qg, lut=lut, doc=doc, exact=None if exact is None else str(exact).lower() not in ("0", "false", "no"))
    m.producer_version = ctx.version
    return {FILE: m.SerializeToString(deterministic=True)}


# ------------------------------------------------------------------ running
def saturating_cpu(cpuinfo: str | None = None) -> bool:
    """True on an x86 CPU without VNNI (AVX512-VNNI or AVX-VNNI), where onnxruntime's
    uint8 x int8 kernels add pairs of products in int16 (SSE4/AVX2/AVX-512BW
    ``pmaddubsw``) and can saturate (Linux:
    /proc/cpuinfo's flags; elsewhere unknown, False)."""
    import platform
    if cpuinfo is None:
        if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
            return False
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), None)
    return flags is not None and not {"avx512_vnni", "avx_vnni"} & set(flags)


def session(model, threads: int = 0, optimized_path: str | None = None, level=None):
    """An onnxruntime session of a QDQ model (bytes or path) with the default
    (all) graph optimisations."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if level is not None:
        so.graph_optimization_level = level
    if optimized_path:
        so.optimized_model_filepath = str(optimized_path)
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def run_session(sess, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """N samples through a batch-1 session, one at a time; outputs stacked."""
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(inputs.values())))
    res: dict[str, list] = {k: [] for k in names}
    for i in range(n):
        outs = sess.run(names, {k: np.ascontiguousarray(v[i:i + 1], np.float32) for k, v in inputs.items()})
        for k, v in zip(names, outs):
            res[k].append(v)
    return {k: np.concatenate(v, axis=0) for k, v in res.items()}


def run(out: Path, inputs: dict[str, np.ndarray], manifest: dict) -> dict[str, np.ndarray]:
    """``qdeploy run --backend qdq``: OUT/model.qdq.onnx on onnxruntime."""
    path = Path(out) / FILE
    if not path.is_file():
        raise QDeployError(f"{out}: no {FILE}; quantize again with --emit qdq")
    return run_session(session(path), inputs)
