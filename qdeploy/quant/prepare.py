"""Per-op Prepare: one handler per float op turns it into quantized node(s).

This is TFLite Micro's *Prepare* step done once, in Python: each handler reads
the float node, the already-chosen activation parameters of its inputs and
outputs (``ctx.t(name)``) and the target, and appends :class:`QNode` records
with every integer its kernel needs (see ``qgraph.py`` for the op contract).
``HANDLERS`` is the table; an op missing from it is unsupported on every
target, and ``unsupported_reason`` says why an op cannot run on a given target.

Output parameter rules (``OUT_RULE``, applied by the quantizer before the
handlers run): ``range`` = from the calibrated range (and the fused clamp),
``tie`` = the input's parameters (the TFLite spec ties them), ``concat`` = the
covering range of the inputs, shared; Logistic/Softmax/Tanh outputs are fixed
on the arm profile (``FIXED_ARM``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import QDeployError
from ..ir import Graph, Node
from ..ops import OPS
from ..passes.fuse_activation import clamp_range
from . import recipes
from .fixedpoint import quantize_multiplier_array, round_away
from .qgraph import QNode, QTensor
from .scales import (activation_params, clamp_bounds, pow2_exponent, quantize_bias,
                     quantize_value, quantize_weights, weight_scales)
from .targets import Target

FIXED_ARM = {"Sigmoid": (1.0 / 256, -128), "Softmax": (1.0 / 256, -128), "Tanh": (1.0 / 128, 0)}


@dataclass
class Ctx:
    g: Graph
    target: Target
    per_tensor: bool
    qt: dict[str, QTensor]
    nodes: list[QNode] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def qmin(self) -> int:
        return self.target.qrange[0]

    @property
    def qmax(self) -> int:
        return self.target.qrange[1]

    @property
    def shift_requant(self) -> bool:
        return self.target.numerics.requant == "shift"

    def t(self, name: str) -> QTensor:
        return self.qt[name]

    def new_act(self, base: str, like: str, scale, zp, shape=None) -> str:
        name = self.unique(base)
        src = self.qt[like]
        self.qt[name] = QTensor(name, tuple(shape or src.shape), src.dtype,
                                np.array([scale], np.float32), np.array([zp], np.int32))
        return name

    def add_const(self, base: str, data: np.ndarray, scale, zp, axis=None) -> str:
        name = self.unique(base)
        scale = np.atleast_1d(np.asarray(scale, np.float32))
        zp = np.atleast_1d(np.asarray(zp, np.int32))
        self.qt[name] = QTensor(name, tuple(data.shape), str(data.dtype), scale, zp, axis, data)
        return name

    def unique(self, base: str) -> str:
        taken = set(self.qt) | set(self.g.tensors)
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        return name

    def emit(self, op, n: Node | None, inputs, outputs, attrs=None, params=None, name=None):
        self.nodes.append(QNode(op, name or (n.name if n else op), list(inputs), list(outputs),
                                dict(attrs or {}), dict(params or {}), [n.name] if n else []))

    def act_range(self, out: str, clamp=None) -> tuple[int, int]:
        t = self.qt[out]
        return clamp_bounds(clamp, t.s, t.zp, self.qmin, self.qmax)

    def requant(self, real: np.ndarray) -> dict:
        """Requantisation params for real multipliers (per channel or one)."""
        real = np.atleast_1d(np.asarray(real, np.float64))
        if self.shift_requant:
            return {"requant": "shift",
                    "shift": np.array([-pow2_exponent(r) for r in real], np.int32)}
        m, s = quantize_multiplier_array(real)
        return {"requant": "q31", "multiplier": m, "shift": s}

    def const_operand(self, name: str) -> str:
        """A constant operand of an element-wise op, quantized per tensor with
        the activation rules (its own min/max)."""
        return self.const_values(name + "_q", self.g.const(name))

    def const_values(self, base: str, values, scale=None, zp=None) -> str:
        """A new constant int tensor of ``values``: at ``scale``/``zp`` when
        given, else with its own per-tensor parameters from its min/max (as
        TFLite quantizes a constant operand); round half away from zero."""
        v = np.asarray(values, np.float64)
        nm = self.target.numerics
        if scale is None:
            scale, zp = activation_params(v.min(), v.max(), self.qmin, self.qmax,
                                          nm.activation_symmetric, nm.pow2_scales)
        r = v / float(scale)
        q = np.clip(zp + round_away(r), self.qmin, self.qmax)
        return self.add_const(base, q.astype(nm.activation_dtype), scale, zp)

    def warn(self, n: Node, msg: str) -> None:
        self.warnings.append(f"node '{n.name}' ({n.op}): {msg}")


# ------------------------------------------------------------------ geometry
def _pads(a: dict) -> list[int]:
    """``[top, left, bottom, right]``: the importer made every Conv/pool/
    ConvTranspose ``auto_pad`` explicit, so ``pads`` is all there is."""
    return [int(p) for p in a.get("pads", [0, 0, 0, 0])]


def _pool_geometry(g: Graph, n: Node) -> dict:
    a = n.attrs
    in_hw = g.shape(n.inputs[0])[2:]
    k = [int(v) for v in a["kernel_shape"]]
    st = [int(v) for v in a.get("strides", [1, 1])]
    dil = [int(v) for v in a.get("dilations", [1, 1])]
    pads = _pads(a)
    out_hw = g.shape(n.outputs[0])[2:]
    for i in range(2):   # ceil_mode: extend the end padding to the output size ONNX gives
        need = (out_hw[i] - 1) * st[i] + (k[i] - 1) * dil[i] + 1 - in_hw[i] - pads[i]
        pads[i + 2] = max(pads[i + 2], need)
    return {"kernel": k, "strides": st, "pads": pads, "dilations": dil}


# ------------------------------------------------------------------ handlers
def conv(ctx: Ctx, n: Node) -> None:
    g = ctx.g
    x, w, y = n.inputs[0], n.inputs[1], n.outputs[0]
    W = g.const(w)
    B = g.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    wq, bq, params = _weights(ctx, n, x, y, W, B)
    params.update(zip(("act_min", "act_max"), ctx.act_range(y, n.attrs.get("q_clamp"))))
    ctx.emit("Conv2D", n, [x, wq, bq], [y], conv_geometry(g, n), params)


def conv_geometry(g: Graph, n: Node) -> dict:
    """The Conv2D attrs of an ONNX Conv (explicit pads ``[t, l, b, r]``)."""
    a = n.attrs
    group = int(a.get("group", 1))
    c_in = g.shape(n.inputs[0])[1]
    return {"strides": [int(v) for v in a.get("strides", [1, 1])], "pads": _pads(a),
            "dilations": [int(v) for v in a.get("dilations", [1, 1])], "group": group,
            "depthwise": group == c_in and group > 1, "depth_multiplier": g.shape(n.inputs[1])[0] // group}


def gemm(ctx: Ctx, n: Node) -> None:
    x, y = n.inputs[0], n.outputs[0]
    W, B = ctx.g.const(n.inputs[1]), ctx.g.const(n.inputs[2])
    wq, bq, params = _weights(ctx, n, x, y, W, B)
    params.update(zip(("act_min", "act_max"), ctx.act_range(y, n.attrs.get("q_clamp"))))
    ctx.emit("FullyConnected", n, [x, wq, bq], [y], {}, params)


def conv_transpose(ctx: Ctx, n: Node) -> None:
    """ConvTranspose -> TransposeConv2D (TFLite TRANSPOSE_CONV numerics).

    The ONNX weight ``[C_in, C_out/g, kh, kw]`` is stored output-channel first,
    ``[C_out, C_in/g, kh, kw]`` (output channel ``gi * C_out/g + j`` of group
    ``gi``), so that weight scales, bias and requantisation are per output
    channel along axis 0 exactly as for Conv2D (TFLite's OHWI filter is a
    plain transpose of it). ``pads`` and ``output_padding`` are explicit
    (the importer resolved ``auto_pad`` / ``output_shape``). Groups are kept (TFLite has
    none: an emitter splits the channels per group)."""
    g = ctx.g
    x, y = n.inputs[0], n.outputs[0]
    W = g.const(n.inputs[1])
    B = g.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    group = int(n.attrs.get("group", 1))
    Wt = output_channel_first(W, group)
    attrs = dict(transpose_conv_geometry(g, n), group=group)
    wq, bq, params = _weights(ctx, n, x, y, Wt, B)
    params.update(zip(("act_min", "act_max"), ctx.act_range(y, n.attrs.get("q_clamp"))))
    ctx.emit("TransposeConv2D", n, [x, wq, bq], [y], attrs, params)


def output_channel_first(W: np.ndarray, group: int) -> np.ndarray:
    """ONNX ConvTranspose weights ``[C_in, C_out/g, kh, kw]`` as ``[C_out, C_in/g, kh, kw]``."""
    c_in, og, kh, kw = W.shape
    cg = c_in // group
    return W.reshape(group, cg, og, kh, kw).transpose(0, 2, 1, 3, 4).reshape(group * og, cg, kh, kw)


def transpose_conv_geometry(g: Graph, n: Node) -> dict:
    """strides, dilations, output_padding and ``pads [t, l, b, r]`` of a
    ConvTranspose: the importer made ``auto_pad`` / ``output_shape`` explicit,
    so ``out = s * (in - 1) + (k - 1) * d + 1 + output_padding - begin - end``
    per axis with these values."""
    a = n.attrs
    return {"strides": [int(v) for v in a.get("strides", [1, 1])], "pads": _pads(a),
            "dilations": [int(v) for v in a.get("dilations", [1, 1])],
            "output_padding": [int(v) for v in a.get("output_padding", [0, 0])]}


def _weights(ctx: Ctx, n: Node, x: str, y: str, W, B):
    nm = ctx.target.numerics
    per_channel = nm.weight_per_channel and not ctx.per_tensor
    s_in, s_out = ctx.t(x).s, ctx.t(y).s
    wmax = nm.weight_max
    s_w, notes = weight_scales(W, per_channel, nm.pow2_scales, s_in, s_out, B, wmax=wmax)
    for note in notes:
        ctx.warn(n, note)
    if not per_channel and W.shape[0] > 1:
        mx = np.abs(W.reshape(W.shape[0], -1)).max(axis=1)
        nz = mx[mx > 0]
        if nz.size and nz.max() / nz.min() > 100:
            ctx.warn(n, f"per-tensor weights: channel ranges differ {nz.max() / nz.min():.0f}x; "
                        "small channels lose most of their precision (use per-channel or cross-layer equalization)")
    wq = quantize_weights(W, s_w, wmax=wmax)
    c = W.shape[0]
    bq, bscale = quantize_bias(B, s_in, s_w, c)
    wname = ctx.add_const(n.inputs[1] + "_q", wq, s_w, np.zeros_like(s_w, np.int32),
                          axis=0 if s_w.size > 1 else None)
    bname = ctx.add_const((n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else n.name + "_bias") + "_q",
                          bq, bscale, np.zeros(c, np.int32), axis=0)
    if nm.requant == "float32":   # onnxruntime's QLinearConv/QGemm: x_scale * w_scale / y_scale in float32
        scale = np.float32(s_in) * s_w.astype(np.float32) / np.float32(s_out)
        return wname, bname, {"requant": "float32", "scale": (scale * np.ones(c, np.float32)).astype(np.float32)}
    real = np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)
    return wname, bname, ctx.requant(real * np.ones(c))


def _operands(ctx: Ctx, n: Node) -> list[str]:
    return [ctx.const_operand(i) if ctx.g.const(i) is not None else i for i in n.inputs]


def eltwise(ctx: Ctx, n: Node) -> None:
    """Add/Sub/Mul; a constant operand (either side, scalar or broadcast) is
    an int8 tensor with its own per-tensor scale, as TFLite quantizes it."""
    a, b = _operands(ctx, n)
    _binary(ctx, n, n.op, a, b)


def div_const(ctx: Ctx, n: Node) -> None:
    """``x / c`` with a constant ``c`` is ``Mul(x, 1/c)`` (TFLite has no int8
    DIV): the reciprocal, computed in float64, is quantized as Mul's constant
    operand. In float, ``x * (1/c)`` and ``x / c`` differ by at most 1 ulp; in
    int8 the difference is far below the constant's own quantization step."""
    c = np.asarray(ctx.g.const(n.inputs[1]), np.float64)
    recip = ctx.const_values(n.inputs[1] + "_reciprocal_q", 1.0 / c)
    _binary(ctx, n, "Mul", n.inputs[0], recip)


def _binary(ctx: Ctx, n: Node, op: str, a: str, b: str) -> None:
    y = n.outputs[0]
    ta, tb, ty = ctx.t(a), ctx.t(b), ctx.t(y)
    lo, hi = ctx.act_range(y, n.attrs.get("q_clamp"))
    if ctx.shift_requant:
        ea, eb, ey = pow2_exponent(ta.s), pow2_exponent(tb.s), pow2_exponent(ty.s)
        if op == "Mul":
            params = {"requant": "shift", "out_shift": ey - ea - eb}
        else:
            e = min(ea, eb)
            params = {"requant": "shift", "a_shift": ea - e, "b_shift": eb - e, "out_shift": ey - e}
    elif op == "Mul" and ctx.target.numerics.requant == "float32":   # onnxruntime's QLinearMul (MLAS)
        params = {"requant": "float32", "zp1": ta.zp, "zp2": tb.zp, "zp_out": ty.zp,
                  "scale": np.float32(np.float32(ta.s) * np.float32(tb.s) / np.float32(ty.s))}
    else:
        fn = {"Add": recipes.add_params, "Sub": recipes.sub_params, "Mul": recipes.mul_params}[op]
        params = dict(fn(ta.s, ta.zp, tb.s, tb.zp, ty.s, ty.zp))
    params.update(act_min=lo, act_max=hi)
    ctx.emit(op, n, [a, b], [y], {}, params)


def avg_pool(ctx: Ctx, n: Node) -> None:
    """AveragePool -> ``AvgPool``. arm/ort: TFLite AVERAGE_POOL_2D (output tied
    to the input's parameters, rounded division by the valid count). fpga: the
    output has its own calibrated power-of-two scale and each window's
    ``1/count`` is a 7-bit multiplier and a rounding shift, one table entry per
    distinct valid count (:func:`recipes.pow2.avg_pool_shift_params`). The own
    scale measured +2.7 to +9.5 dB output SQNR over a tied one on Conv(->Relu)
    ->AveragePool graphs (2x2 s2, 3x3 s1/s2, 5x5 s1; min/max ranges): an
    average's range is narrower than its input's.
    ``count_include_pad=1`` with padding becomes an explicit zero-point Pad
    first on every target, so the window never overlaps padding."""
    geo = _pool_geometry(ctx.g, n)
    x, y = n.inputs[0], n.outputs[0]
    if int(n.attrs.get("count_include_pad", 0)) and any(geo["pads"]):
        # TFLite divides by the non-padded count: pad explicitly with the zero point
        t = ctx.t(x)
        p = geo["pads"]
        shape = list(t.shape)
        shape[2] += p[0] + p[2]
        shape[3] += p[1] + p[3]
        padded = ctx.new_act(x + "_padded", x, t.s, t.zp, shape)
        ctx.emit("Pad", n, [x], [padded], {"pads": [0, 0, p[0], p[1], 0, 0, p[2], p[3]], "mode": "constant"},
                 {"value": t.zp}, name=n.name + "_pad")
        x, geo["pads"] = padded, [0, 0, 0, 0]
    lo, hi = ctx.act_range(y, n.attrs.get("q_clamp"))
    params = {}
    if ctx.shift_requant:
        counts = recipes.window_counts(ctx.t(x).shape[2:], geo["kernel"], geo["strides"], geo["pads"])
        params = recipes.avg_pool_shift_params(pow2_exponent(ctx.t(x).s), pow2_exponent(ctx.t(y).s), counts)
    params.update(act_min=lo, act_max=hi)
    ctx.emit("AvgPool", n, [x], [y], {k: geo[k] for k in ("kernel", "strides", "pads")}, params)


def max_pool(ctx: Ctx, n: Node) -> None:
    geo = _pool_geometry(ctx.g, n)
    lo, hi = ctx.act_range(n.outputs[0], n.attrs.get("q_clamp"))
    ctx.emit("MaxPool", n, n.inputs[:1], n.outputs[:1], geo, {"act_min": lo, "act_max": hi})


def global_max_pool(ctx: Ctx, n: Node) -> None:
    h, w = ctx.g.shape(n.inputs[0])[2:]
    ctx.emit("MaxPool", n, n.inputs, n.outputs, {"kernel": [h, w], "strides": [1, 1], "pads": [0, 0, 0, 0],
                                                 "dilations": [1, 1]},
             {"act_min": ctx.qmin, "act_max": ctx.qmax})


def global_avg_pool(ctx: Ctx, n: Node) -> None:
    """Spatial mean -> ``Mean``. arm/ort: TFLite MEAN's recipe. fpga: the output
    keeps its own calibrated power-of-two scale (a mean's range is much
    narrower than its input's: tying it to the input scale wasted 2-4 bits on
    the corpus' SE blocks and heads) and the 1/count is a 7-bit multiplier and
    a rounding shift (:func:`recipes.pow2.mean_shift_params`)."""
    x, y = n.inputs[0], n.outputs[0]
    tx, ty = ctx.t(x), ctx.t(y)
    count = int(np.prod(ctx.g.shape(x)[2:]))
    if ctx.shift_requant:
        params = dict(recipes.mean_shift_params(pow2_exponent(tx.s), pow2_exponent(ty.s), count))
    elif ctx.target.numerics.requant == "float32":   # onnxruntime's QLinearGlobalAveragePool (MLAS)
        params = {"requant": "float32", "count": count, "zp_in": tx.zp,
                  "scale": np.float32(np.float32(tx.s) / (np.float32(ty.s) * np.float32(count)))}
    else:
        params = dict(recipes.mean_params(tx.s, tx.zp, ty.s, ty.zp, count))
    params.update(act_min=ctx.qmin, act_max=ctx.qmax)
    keep = int(n.attrs.get("keepdims", 1)) if n.op == "ReduceMean" else 1
    ctx.emit("Mean", n, [x], [y], {"axes": [2, 3], "keepdims": keep}, params)


def data_movement(ctx: Ctx, n: Node) -> None:
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in n.attrs.items()
             if not k.startswith(("q_", "_"))}
    params = {}
    if n.op == "Pad":
        t = ctx.t(n.inputs[0])
        params["value"] = quantize_value(attrs.get("value", 0.0), t.s, t.zp, ctx.qmin, ctx.qmax)
    if n.op == "Transpose" and "perm" not in attrs:
        attrs["perm"] = list(range(len(ctx.g.shape(n.inputs[0]))))[::-1]
    if n.op == "DepthToSpace":
        attrs.setdefault("mode", "DCR")
    ctx.emit(n.op, n, n.inputs, n.outputs, attrs, params)


def concat(ctx: Ctx, n: Node) -> None:
    lo, hi = ctx.act_range(n.outputs[0], n.attrs.get("q_clamp"))
    axis = int(n.attrs["axis"]) % len(ctx.g.shape(n.outputs[0]))
    ctx.emit("Concat", n, n.inputs, n.outputs, {"axis": axis}, {"act_min": lo, "act_max": hi})


def resize(ctx: Ctx, n: Node) -> None:
    a = {k: (list(v) if isinstance(v, tuple) else v) for k, v in n.attrs.items() if not k.startswith("q_")}
    in_shape = ctx.g.shape(n.inputs[0])
    mode = a.get("coordinate_transformation_mode", "half_pixel")
    if a["mode"] == "nearest":
        params = {"index": [nearest_index(i, o, mode, a.get("nearest_mode", "round_prefer_floor"))
                            for i, o in zip(in_shape, a["sizes"])]}
    else:
        params = dict(recipes.resize_bilinear_params(in_shape, a["sizes"], mode))
    ctx.emit("Resize", n, n.inputs, n.outputs, a, params)


def nearest_index(n_in: int, n_out: int, mode: str, nearest_mode: str) -> np.ndarray:
    """ONNX Resize (nearest): the source index of every output index on one axis."""
    scale = n_out / n_in
    i = np.arange(n_out, dtype=np.float64)
    if mode == "asymmetric":
        x = i / scale
    elif mode == "align_corners":
        x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    elif mode == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    elif mode == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:   # half_pixel
        x = (i + 0.5) / scale - 0.5
    if nearest_mode == "floor":
        r = np.floor(x)
    elif nearest_mode == "ceil":
        r = np.ceil(x)
    elif nearest_mode == "round_prefer_ceil":
        r = np.floor(x + 0.5)
    else:   # round_prefer_floor
        r = np.ceil(x - 0.5)
    return np.clip(r, 0, n_in - 1).astype(np.int32)


def requantize(ctx: Ctx, n: Node) -> None:
    """Standalone Relu / Clip: a requantisation with the clamp."""
    x, y = n.inputs[0], n.outputs[0]
    clamp = (0.0, math.inf) if n.op == "Relu" else (n.attrs.get("min", -math.inf), n.attrs.get("max", math.inf))
    lo, hi = ctx.act_range(y, clamp)
    ctx.emit("Requantize", n, [x], [y], {}, _requant_params(ctx, x, y, lo, hi))


def max_min(ctx: Ctx, n: Node) -> None:
    """Element-wise Max / Min that no producer took as a fused clamp.

    * One operand a one-element constant ``c`` (``Max(x, c)`` is the clamp
      ``[c, inf)``, ``Min(x, c)`` is ``(-inf, c]``): a Requantize from the
      input to the output's own (calibrated) parameters with that clamp in the
      integer domain, ``act_min = zp_y + round(c / s_y)`` (as a standalone Relu).
    * Otherwise (two activations, or a broadcast constant): TFLite
      MAXIMUM/MINIMUM need equal input and output parameters, so every
      activation operand whose parameters differ from the output's gets a
      Requantize to them (one rounding; max/min commute with the monotone
      requantisation), a constant operand is quantized directly at the
      output's parameters, and ``Maximum``/``Minimum`` take the integer max/min.
    """
    y = n.outputs[0]
    clamp = clamp_range(ctx.g, n)
    if clamp is not None:
        x = next(i for i in n.inputs if ctx.g.const(i) is None)
        lo, hi = ctx.act_range(y, clamp)
        ctx.emit("Requantize", n, [x], [y], {}, _requant_params(ctx, x, y, lo, hi))
        return
    ty = ctx.t(y)
    inputs = []
    for k, i in enumerate(n.inputs):
        if ctx.g.const(i) is not None:
            i = ctx.const_values(f"{i}_q", ctx.g.const(i), ty.s, ty.zp)
        elif (ctx.t(i).s, ctx.t(i).zp) != (ty.s, ty.zp):
            i = insert_requantize(ctx, i, ty.s, ty.zp, f"{n.name}_in{k}_requant", n)
        inputs.append(i)
    lo, hi = ctx.act_range(y, n.attrs.get("q_clamp"))
    ctx.emit({"Max": "Maximum", "Min": "Minimum"}[n.op], n, inputs, [y], {}, {"act_min": lo, "act_max": hi})


def prelu(ctx: Ctx, n: Node) -> None:
    """PRelu: the slope is an int8 constant with its own per-tensor scale
    (TFLite PRELU; numpy/ONNX broadcasting against the input). arm/ort:
    :func:`recipes.prelu_params`; fpga: ``y = x >= 0 ? shift_round(x,
    pos_shift) : shift_round(x * alpha, neg_shift)`` (zero points are 0)."""
    x, y = n.inputs[0], n.outputs[0]
    alpha = ctx.const_operand(n.inputs[1])
    tx, ta, ty = ctx.t(x), ctx.t(alpha), ctx.t(y)
    if ctx.shift_requant:
        ex, ea, ey = pow2_exponent(tx.s), pow2_exponent(ta.s), pow2_exponent(ty.s)
        params = {"requant": "shift", "pos_shift": ey - ex, "neg_shift": ey - ex - ea}
    else:
        params = dict(recipes.prelu_params(tx.s, tx.zp, ta.s, ta.zp, ty.s, ty.zp))
    params.update(zip(("act_min", "act_max"), ctx.act_range(y, n.attrs.get("q_clamp"))))
    ctx.emit("PRelu", n, [x, alpha], [y], {}, params)


def _requant_params(ctx: Ctx, x: str, y: str, lo: int, hi: int) -> dict:
    if ctx.target.numerics.requant == "float32":   # onnxruntime's DequantizeLinear then QuantizeLinear
        return {"requant": "float32", "in_scale": np.float32(ctx.t(x).s), "out_scale": np.float32(ctx.t(y).s),
                "act_min": lo, "act_max": hi}
    p = ctx.requant(np.float64(ctx.t(x).s) / np.float64(ctx.t(y).s))
    return {**p, "act_min": lo, "act_max": hi}


def insert_requantize(ctx: Ctx, src: str, dst_scale, dst_zp, base: str, n: Node) -> str:
    """A Requantize from ``src`` to new params; returns the new tensor."""
    out = ctx.new_act(base, src, dst_scale, dst_zp)
    ctx.emit("Requantize", n, [src], [out], {}, _requant_params(ctx, src, out, ctx.qmin, ctx.qmax),
             name=ctx.unique(base))
    return out


def softmax(ctx: Ctx, n: Node) -> None:
    tx, ty = ctx.t(n.inputs[0]), ctx.t(n.outputs[0])
    # TFLite SOFTMAX fixes the output at 1/256 (zp -128); uint8 (ort) is the same grid shifted by 128
    params = dict(recipes.softmax_params(tx.s, tx.zp, ty.s, ty.zp - 128 if ty.dtype == "uint8" else ty.zp))
    ctx.emit("Softmax", n, n.inputs, n.outputs, {"axis": int(n.attrs.get("axis", -1))}, params)


# float functions of the LUT activations (reference definitions for float_lut)
_FUNC = {"Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish", "HardSigmoid": "hardsigmoid",
         "SiLU": "silu", "LeakyRelu": "leaky_relu"}


def activation(ctx: Ctx, n: Node) -> None:
    x, y = n.inputs[0], n.outputs[0]
    profile = ctx.target.profile
    if n.op == "LeakyRelu" and ctx.target.numerics.leaky == "shift":
        _leaky_shift(ctx, n)
        return
    if n.op == "SiLU" and profile in ("arm", "ort"):
        # TFLite has no SiLU op: LOGISTIC (its bit-exact table) then MUL, as TFLite converts it.
        # ort: the same split runs as onnxruntime's QLinearSigmoid + QLinearMul, where one SiLU
        # table has no int8 kernel (float Sigmoid and Mul between DQ and Q: ddddocr_det 1.35x
        # slower than onnxruntime's own QDQ, bench/RESULTS.md "QDQ speed")
        s, zp = fixed_params("Sigmoid", ctx.target)
        sig = ctx.new_act(n.name + "_sigmoid", x, s, zp)
        _lut(ctx, n, "Sigmoid", x, sig, name=n.name + "_sigmoid")
        # the Mul as any Mul of the target: TFLite's MUL recipe on arm, onnxruntime's QLinearMul
        # (float32 scale, one rounding) on ort, where TFLite's double rounding differed from
        # onnxruntime by 1 LSB at its ties (seg_head: 0.07 % of the SiLU outputs, 3 LSB end to end)
        _binary(ctx, n, "Mul", x, sig)
        return
    _lut(ctx, n, n.op, x, y)


def _lut(ctx: Ctx, n: Node, op: str, x: str, y: str, name=None) -> None:
    tx, ty = ctx.t(x), ctx.t(y)
    args = (tx.s, tx.zp, ty.s, ty.zp)
    dtype = ctx.target.numerics.activation_dtype
    if ctx.target.profile == "arm" and op in ("Sigmoid", "Tanh", "HardSwish", "LeakyRelu"):
        source = "tflite"
        if op == "Sigmoid":
            table = recipes.logistic_lut(*args)
        elif op == "Tanh":
            table = recipes.tanh_lut(*args)
        elif op == "HardSwish":
            table = recipes.hard_swish_lut(*args)
        else:
            table = recipes.leaky_relu_lut(*args, alpha=float(n.attrs.get("alpha", 0.01)))
    else:
        source = "float"
        kw = {"alpha": float(n.attrs.get("alpha", 0.01))} if op == "LeakyRelu" else {}
        if op == "HardSigmoid":
            kw = {"alpha": float(n.attrs.get("alpha", 0.2)), "beta": float(n.attrs.get("beta", 0.5))}
        table = recipes.float_lut(_FUNC[op], *args, dtype=np.dtype(dtype), **kw)
    # the function's own parameters, for emitters that express the float function (qdq lut="float")
    fparams = {"alpha": float(n.attrs.get("alpha", 0.01))} if op == "LeakyRelu" else {}
    if op == "HardSigmoid":
        fparams = {"alpha": float(n.attrs.get("alpha", 0.2)), "beta": float(n.attrs.get("beta", 0.5))}
    if ctx.target.numerics.requant == "float32":   # ort: the table onnxruntime computes (quant/ort_luts.py)
        from .ort_luts import ort_table
        ort = ort_table(_FUNC[op], fparams, *args, dtype=dtype)
        if ort is not None:
            table, source = ort, "onnxruntime"
    ctx.emit("Lut", n, [x], [y], {"func": _FUNC[op], "source": source, **fparams},
             {"table": np.asarray(table).astype(dtype)}, name=name)


def _leaky_shift(ctx: Ctx, n: Node) -> None:
    x, y = n.inputs[0], n.outputs[0]
    ql = n.attrs.get("q_leaky")
    if ql is None:
        raise QDeployError(f"node '{n.name}' (LeakyRelu) has no integer slope; run the leaky_shift "
                           "pass (qdeploy's default pipeline does) before quantizing for this target")
    d = pow2_exponent(ctx.t(y).s) - pow2_exponent(ctx.t(x).s)
    params = {"pos_shift": d, "neg_multiplier": int(ql["multiplier"]), "neg_shift": int(ql["shift"]) + d,
              "act_min": ctx.qmin, "act_max": ctx.qmax}
    ctx.emit("LeakyShift", n, [x], [y], {"alpha_approx": float(ql["alpha_approx"])}, params)


HANDLERS = {
    "Conv": conv, "ConvTranspose": conv_transpose, "Gemm": gemm,
    "Add": eltwise, "Sub": eltwise, "Mul": eltwise, "Div": div_const,
    "Max": max_min, "Min": max_min, "PRelu": prelu,
    "AveragePool": avg_pool, "MaxPool": max_pool,
    "GlobalAveragePool": global_avg_pool, "ReduceMean": global_avg_pool,
    "GlobalMaxPool": global_max_pool,
    "Concat": concat, "Reshape": data_movement, "Transpose": data_movement, "Pad": data_movement,
    "Slice": data_movement, "Split": data_movement, "DepthToSpace": data_movement,
    "SpaceToDepth": data_movement, "Resize": resize,
    "Relu": requantize, "Clip": requantize,
    "Sigmoid": activation, "Tanh": activation, "HardSwish": activation, "HardSigmoid": activation,
    "SiLU": activation, "LeakyRelu": activation,
    "Softmax": softmax,
}

TIE = {"MaxPool", "GlobalMaxPool", "Reshape", "Transpose", "Pad", "Slice", "Split", "DepthToSpace",
       "SpaceToDepth", "AveragePool", "Resize"}


def fixed_params(op: str, target: Target) -> tuple[float, int]:
    s, zp = FIXED_ARM[op]
    return (s, zp + 128) if target.qrange[0] == 0 else (s, zp)


def out_rule(op: str, target: Target) -> str:
    if op == "AveragePool" and target.numerics.requant == "shift":
        return "range"   # fpga: its own scale (see avg_pool)
    if op in TIE:
        return "tie"
    if op == "Concat":
        return "concat"
    if (op in FIXED_ARM and target.profile == "arm") or (op == "Softmax" and target.profile != "fpga"):
        return "fixed"
    return "range"


def unsupported_reason(g: Graph, n: Node, target: Target, tail_pending: bool = False) -> str | None:
    """Why ``n`` cannot be quantized for ``target`` (None: it can). ``tail_pending``:
    the float tail is still to be cut (the pipeline's check before calibrating), so
    a Softmax it will move to float is not refused."""
    if n.op not in HANDLERS:
        note = OPS[n.op].note if n.op in OPS else ""
        return f"has no int8 kernel in qdeploy; {note or 'replace it with a supported op (see qdeploy/ops.py)'}"
    if n.op in target.unsupported:
        return f"is not supported by target '{target.name}' (run it on the host or choose another target)"
    if n.op in _FUNC and n.op not in target.numerics.luts and not (
            n.op == "LeakyRelu" and target.numerics.leaky == "shift"):
        return f"is not in target '{target.name}''s lookup-table activations (add it to [numerics] luts)"
    if n.op in ("Conv", "ConvTranspose"):
        if g.const(n.inputs[1]) is None or (len(n.inputs) > 2 and n.inputs[2] and g.const(n.inputs[2]) is None):
            return "has computed weights (needs constant weights and bias)"
        if len(g.shape(n.inputs[0])) != 4:
            return "is not a 2-D convolution (only NCHW 2-D convolutions are quantized)"
    if n.op in ("Add", "Sub", "Mul", "Div", "Max", "Min") and all(g.const(i) is not None for i in n.inputs):
        return "has only constant inputs (fold it before quantizing)"
    if n.op == "Div":
        c = g.const(n.inputs[1])
        if c is None:
            return ("divides by a computed tensor (int8 has no division kernel; only division by a "
                    "constant is quantized, as a Mul by its reciprocal)")
        if np.any(np.asarray(c) == 0) or not np.all(np.isfinite(c)):
            return "divides by a constant that contains 0 or a non-finite value"
    if n.op == "PRelu" and g.const(n.inputs[1]) is None:
        return "has a computed slope (only a constant slope is quantized)"
    if n.op == "ReduceMean" and tuple(n.attrs.get("axes", ())) != (2, 3):
        return "reduces over axes other than H, W (only spatial means are quantized)"
    if n.op in ("GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool") and len(g.shape(n.inputs[0])) != 4:
        return "is not a 2-D pool"
    if n.op == "Pad" and n.attrs.get("mode", "constant") not in ("constant", "reflect", "edge"):
        return f"uses pad mode '{n.attrs.get('mode')}'"
    if n.op == "Resize" and n.attrs.get("mode") == "linear":
        if len(g.shape(n.inputs[0])) != 4:
            return "is not a 2-D bilinear resize"
        try:
            recipes.tflite_resize_flags(n.attrs.get("coordinate_transformation_mode", "half_pixel"),
                                        n.attrs["sizes"][2:])
        except ValueError as e:
            return str(e)
    if n.op == "Softmax" and n.attrs.get("axis", -1) % len(g.shape(n.inputs[0])) != len(g.shape(n.inputs[0])) - 1:
        return "is not over the last axis (only last-axis softmax is quantized)"
    from .float_tail import cut_softmaxes, wide_softmax
    if (depth := wide_softmax(g, n, target)) is not None and not (
            tail_pending and n.name in cut_softmaxes(g, target)):
        return (f"is over {depth} values: TFLite's int8 SOFTMAX stops the program when the exponentials sum "
                f"to 512 or more, so target '{target.name}' takes at most {recipes.SOFTMAX_MAX_DEPTH}; only a "
                "softmax that makes a model output alone runs that wide (in float, after dequantization)")
    return None
