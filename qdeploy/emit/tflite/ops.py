"""QGraph op -> TFLite builtins: one lowering function per op, the table ``LOWER``.

Each ``lower(p, n)`` reads the node's integers and geometry and writes builtin
operators through ``p`` (a :class:`~.layout.Placed`); TFLite's Prepare then
recomputes every multiplier from the float scales written here, so TFLite Micro
judges the quantizer's arithmetic too. Nothing is re-decided: where a builtin
cannot hold a node's arithmetic exactly, the lowering uses an exact
composition (explicit PAD before VALID convolutions and max pools, MAXIMUM /
MINIMUM clamps where no fused activation gives the node's range, a GATHER from
the node's own table for lookup activations TFLite has no kernel for) or
raises :class:`Unsupported` with what to do.
"""
from __future__ import annotations

import numpy as np

from ...quant import recipes
from ...quant.fixedpoint import tflite_round
from ...quant.qgraph import QNode
from .layout import NHWC_AXIS, TO_NHWC, Flat, Placed, flatten_order, is_flat, nhwc
from .writer import ACT


class Unsupported(Exception):
    """A node TFLite builtins cannot express exactly (message: what to do)."""


# ------------------------------------------------------------------ shared pieces
def _act_range(fn: int, scale: float, zp: int) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 (float32 arithmetic)."""
    def q(f):
        return zp + tflite_round(float(np.float32(f) / np.float32(scale)))
    if fn == ACT.RELU:
        return max(-128, q(0.0)), 127
    if fn == ACT.RELU6:
        return max(-128, q(0.0)), min(127, q(6.0))
    if fn == ACT.RELU_N1_TO_1:
        return max(-128, q(-1.0)), min(127, q(1.0))
    return -128, 127


def fused(p: Placed, n: QNode, out: str | None = None) -> tuple[int, tuple[int, int] | None]:
    """(fused activation, None) when one gives the node's [act_min, act_max];
    else (NONE, (lo, hi)) for explicit clamps after the op."""
    t = p.qg.tensors[out or n.outputs[0]]
    lo, hi = int(n.params.get("act_min", -128)), int(n.params.get("act_max", 127))
    for fn in (ACT.NONE, ACT.RELU, ACT.RELU6, ACT.RELU_N1_TO_1):
        if _act_range(fn, t.s, t.zp) == (lo, hi):
            return fn, None
    return ACT.NONE, (lo, hi)


def clamp(p: Placed, name: str, idx: int, rng, shape) -> int:
    """``min(max(x, lo), hi)`` on integers of one scale: exact explicit clamps."""
    if rng is None:
        return idx
    lo, hi = rng
    w, t = p.w, p.qg.tensors[name]
    for op, v in (("MAXIMUM", lo), ("MINIMUM", hi)):
        if (op == "MAXIMUM" and v <= -128) or (op == "MINIMUM" and v >= 127):
            continue
        c = w.const(f"{name}_{op.lower()}", np.array([v], np.int8), "int8", t.scale, t.zero_point)
        y = p.like(f"{name}_{op.lower()}d", name, shape)
        w.op(op, [idx, c], [y])
        idx = y
    return idx


def _finish(p: Placed, n: QNode, raw: int, layout, rng, out: str | None = None) -> None:
    """Route the op's raw output through explicit clamps (when needed) into the
    tensor that stands for the QGraph output."""
    name = out or n.outputs[0]
    if rng is None:
        p.at[name] = (raw, layout)
        return
    y = clamp(p, name, raw, rng, p.w.shape(raw))
    p.at[name] = (y, layout)


def _raw(p: Placed, n: QNode, layout, rng, out: str | None = None) -> int:
    """The op's output tensor: the final one, or a pre-clamp intermediate."""
    name = out or n.outputs[0]
    if rng is None:
        return p.output(name, layout)
    return p.like(f"{name}_unclamped", name, p.shape_in(name, layout))


def _padding(in_hw, out_hw, k, s, d, pads) -> str | None:
    """"valid"/"same" when TFLite's padding rule gives exactly ``pads`` [t,l,b,r] and
    the output size, else None (the caller pads explicitly)."""
    t, l, b, r = pads
    valid = [(i - (kk - 1) * dd - 1) // ss + 1 for i, kk, ss, dd in zip(in_hw, k, s, d)]
    if (t, l, b, r) == (0, 0, 0, 0) and list(out_hw) == valid:
        return "valid"
    same = [-(-i // ss) for i, ss in zip(in_hw, s)]
    if list(out_hw) != same:
        return None
    tot = [max((o - 1) * ss + (kk - 1) * dd + 1 - i, 0) for i, o, kk, ss, dd in zip(in_hw, out_hw, k, s, d)]
    if [t, l] == [tot[0] // 2, tot[1] // 2] and [b, r] == [tot[0] - tot[0] // 2, tot[1] - tot[1] // 2]:
        return "same"
    return None


def _explicit_pad(p: Placed, x_name: str, x: int, pads, value: int) -> int:
    """PAD (value = the input zero point, contributing 0) or PADV2 (another value)."""
    w, t = p.w, p.qg.tensors[x_name]
    top, left, bottom, right = pads
    shape = w.shape(x)
    out = p.like(f"{x_name}_padded", x_name, [shape[0], shape[1] + top + bottom, shape[2] + left + right, shape[3]])
    pz = w.const(f"{x_name}_paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
    if value == t.zp:
        w.op("PAD", [x, pz], [out])
    else:
        v = w.const(f"{x_name}_pad_value", np.array([value], np.int8), "int8", t.scale, t.zero_point)
        w.op("PADV2", [x, pz, v], [out])
    return out


def _bias_scale(bias_scale, weight_scale) -> np.ndarray:
    """The bias scales as TFLite wants them beside ``weight_scale``: one per output channel,
    or one where the weights have one (--per-tensor): LiteRT's XNNPACK delegate refuses a
    per-channel bias beside per-tensor weights ('failed to prepare'), as it refuses a
    per-tensor bias beside per-channel ones."""
    s = np.asarray(bias_scale, np.float32).reshape(-1)
    return s[:1] if np.size(weight_scale) == 1 and s.size > 1 and np.all(s == s[0]) else s


def _bias(p: Placed, name: str, weight_scale):
    t = p.qg.tensors[name]
    s = _bias_scale(t.scale, weight_scale)
    return p.w.const(name, t.data.astype(np.int32), "int32", s, np.zeros(s.size, np.int64), 0)


# ------------------------------------------------------------------ compute
def conv2d(p: Placed, n: QNode) -> None:
    a = n.attrs
    xt, wt, yt = (p.qg.tensors[k] for k in (n.inputs[0], n.inputs[1], n.outputs[0]))
    x = p.get(n.inputs[0], "nhwc")
    k = list(wt.shape[2:])
    in_hw, out_hw = xt.shape[2:], yt.shape[2:]
    pad = _padding(in_hw, out_hw, k, a["strides"], a["dilations"], a["pads"])
    if pad is None:
        x = _explicit_pad(p, n.inputs[0], x, a["pads"], xt.zp)
        pad = "valid"
    fn, rng = fused(p, n)
    geo = dict(padding={"same": 0, "valid": 1}[pad], strideH=a["strides"][0], strideW=a["strides"][1],
               dilationHFactor=a["dilations"][0], dilationWFactor=a["dilations"][1],
               fusedActivationFunction=fn)
    o, cg = wt.shape[0], wt.shape[1]
    group = a.get("group", 1)
    ws = wt.scale.reshape(-1)
    if a.get("depthwise") or (group == xt.shape[1] and cg == 1 and group > 1):
        wd = wt.data.transpose(1, 2, 3, 0)       # [O,1,kh,kw] -> [1,kh,kw,O]
        wi = p.w.const(n.inputs[1], wd, "int8", ws, np.zeros(ws.size, np.int64), 3)
        y = _raw(p, n, "nhwc", rng)
        p.w.op("DEPTHWISE_CONV_2D", [x, wi, _bias(p, n.inputs[2], ws)], [y],
               depthMultiplier=int(a.get("depth_multiplier", o // xt.shape[1])), **geo)
        _finish(p, n, y, "nhwc", rng)
        return
    wo = wt.data.transpose(0, 2, 3, 1)           # OIHW -> OHWI (grouped: I = C_in / groups)
    if group > 1 and SPLIT_GROUPS:
        _grouped(p, n, x, wo, ws, group, geo, rng)
        return
    wi = p.w.const(n.inputs[1], wo, "int8", ws, np.zeros(ws.size, np.int64), 0)
    y = _raw(p, n, "nhwc", rng)
    p.w.op("CONV_2D" if group == 1 else "CONV_2D_GROUPED", [x, wi, _bias(p, n.inputs[2], ws)], [y], **geo)
    _finish(p, n, y, "nhwc", rng)


# Grouped CONV_2D (filter depth C_in / groups) runs on TFLite Micro, LiteRT 2.3 (XNNPACK, optimized
# and reference kernels) and tflite-runtime 2.14 (all resolvers), measured: no runtime at hand needs
# the split below, which stays for runtimes that lack grouped convolutions.
SPLIT_GROUPS = False


def _grouped(p: Placed, n: QNode, x: int, wo, ws, group: int, geo: dict, rng) -> None:
    """Grouped convolution as SPLIT + one CONV_2D per group + CONCATENATION (LiteRT's
    optimized CONV_2D refuses groups; every group shares the output's scale)."""
    w = p.w
    xs = w.shape(x)
    cg, og = xs[3] // group, wo.shape[0] // group
    parts = [p.like(f"{n.inputs[0]}_g{g}", n.inputs[0], xs[:3] + [cg]) for g in range(group)]
    w.op("SPLIT", [w.const(f"{n.name}_split_axis", np.array(3, np.int32)), x], parts, numSplits=group)
    bt = p.qg.tensors[n.inputs[2]]
    ys = nhwc(p.qg.tensors[n.outputs[0]].shape)
    outs = []
    for g in range(group):
        sl = slice(g * og, (g + 1) * og)
        wsg = ws if ws.size == 1 else ws[sl]
        bsg = _bias_scale(bt.scale.reshape(-1)[sl], wsg)
        wi = w.const(f"{n.inputs[1]}_g{g}", wo[sl], "int8", wsg, np.zeros(wsg.size, np.int64), 0)
        bi = w.const(f"{n.inputs[2]}_g{g}", bt.data[sl].astype(np.int32), "int32", bsg,
                     np.zeros(bsg.size, np.int64), 0)
        yg = p.like(f"{n.outputs[0]}_g{g}", n.outputs[0], ys[:3] + [og])
        w.op("CONV_2D", [parts[g], wi, bi], [yg], **geo)
        outs.append(yg)
    y = _raw(p, n, "nhwc", rng)
    w.op("CONCATENATION", outs, [y], axis=3, fusedActivationFunction=ACT.NONE)
    _finish(p, n, y, "nhwc", rng)


def transpose_conv2d(p: Placed, n: QNode) -> None:
    """TRANSPOSE_CONV (SAME when TFLite's crop is the node's, else VALID on the whole
    scatter grid and an exact STRIDED_SLICE crop); groups as SPLIT + one TRANSPOSE_CONV
    per group + CONCATENATION (TFLite's TRANSPOSE_CONV has no groups)."""
    a = n.attrs
    xt, wt, yt = (p.qg.tensors[k] for k in (n.inputs[0], n.inputs[1], n.outputs[0]))
    w = p.w
    x = p.get(n.inputs[0], "nhwc")
    (sh, sw), (kh, kw) = a["strides"], wt.shape[2:]
    h, wd = xt.shape[2:]
    oh, ow = yt.shape[2:]
    top, left = a["pads"][0], a["pads"][1]
    lo, hi = int(n.params.get("act_min", -128)), int(n.params.get("act_max", 127))
    rng = None if (lo, hi) == (-128, 127) else (lo, hi)   # explicit clamps (no fused activation)
    # TFLite SAME crops total//2 at the top of a (ceil(out/s) - 1) * s + k grid
    tot = [max((-(-o // s) - 1) * s + k - o, 0) for o, s, k in ((oh, sh, kh), (ow, sw, kw))]
    if [top, left] == [tot[0] // 2, tot[1] // 2] and [-(-oh // sh), -(-ow // sw)] == [h, wd]:
        pad, full = 0, [1, oh, ow, yt.shape[1]]
    else:   # VALID on the whole scatter grid, then crop exactly [top:top+oh, left:left+ow]
        pad = 1
        full = [1, max((h - 1) * sh + kh, top + oh), max((wd - 1) * sw + kw, left + ow), yt.shape[1]]
    crop = full[1:3] != [oh, ow]
    group = int(a.get("group", 1))
    y = p.like(f"{n.outputs[0]}_full", n.outputs[0], full) if crop else _raw(p, n, "nhwc", rng)
    og, cg = wt.shape[0] // group, xt.shape[1] // group
    parts = [x]
    if group > 1:
        parts = [p.like(f"{n.inputs[0]}_g{g}", n.inputs[0], [1, h, wd, cg]) for g in range(group)]
        w.op("SPLIT", [w.const(f"{n.name}_split_axis", np.array(3, np.int32)), x], parts, numSplits=group)
    ws, bt = wt.scale.reshape(-1), p.qg.tensors[n.inputs[2]]
    outs = []
    for g, xg in enumerate(parts):
        sl = slice(g * og, (g + 1) * og)
        wsg = ws if ws.size == 1 else ws[sl]   # --per-tensor: one scale for every group
        bsg = _bias_scale(bt.scale.reshape(-1)[sl], wsg)
        wi = w.const(f"{n.inputs[1]}_g{g}", wt.data[sl].transpose(0, 2, 3, 1), "int8", wsg,
                     np.zeros(wsg.size, np.int64), 0)
        bi = w.const(f"{n.inputs[2]}_g{g}", bt.data[sl].astype(np.int32), "int32", bsg,
                     np.zeros(bsg.size, np.int64), 0)
        yg = y if group == 1 else p.like(f"{n.outputs[0]}_g{g}", n.outputs[0], full[:3] + [og])
        w.op("TRANSPOSE_CONV", [w.const(f"{n.name}_output_shape", np.array(full[:3] + [og], np.int32)), wi,
                                xg, bi], [yg], padding=pad, strideH=sh, strideW=sw,
             fusedActivationFunction=ACT.NONE)
        outs.append(yg)
    if group > 1:
        w.op("CONCATENATION", outs, [y], axis=3, fusedActivationFunction=ACT.NONE)
    if crop:
        c = _raw(p, n, "nhwc", rng)
        _strided_slice(p, y, c, [0, top, left, 0], [1, top + oh, left + ow, full[3]], [1, 1, 1, 1])
        y = c
    _finish(p, n, y, "nhwc", rng)


def fully_connected(p: Placed, n: QNode) -> None:
    name = n.inputs[0]
    lay = p.layout(name)
    wt = p.qg.tensors[n.inputs[1]]
    wdata = wt.data
    if is_flat(lay):
        x = p.at[name][0]
        wdata = wdata[:, lay.order]
    else:
        x = p.get(name, "native")
    fn, rng = fused(p, n)
    ws = wt.scale.reshape(-1)
    wi = p.w.const(n.inputs[1], np.ascontiguousarray(wdata), "int8", ws, np.zeros(ws.size, np.int64), 0)
    y = _raw(p, n, "native", rng)
    p.w.op("FULLY_CONNECTED", [x, wi, _bias(p, n.inputs[2], ws)], [y], fusedActivationFunction=fn,
           keepNumDims=False)
    _finish(p, n, y, "native", rng)


def _operands(p: Placed, n: QNode) -> tuple[list[int], str]:
    """Element-wise operands in one layout: NHWC when the output is a 4-D map."""
    rank = len(p.qg.tensors[n.outputs[0]].shape)
    want = "nhwc" if rank == 4 else "native"
    idx = []
    for name in n.inputs:
        t = p.qg.tensors[name]
        if t.is_const:
            idx.append(p.const(t, want, rank))
        elif want == "nhwc" and len(t.shape) != 4:
            raise Unsupported(f"operand '{name}' ({len(t.shape)}-D) broadcast against a 4-D map")
        else:
            idx.append(p.get(name, want))
    return idx, want


def eltwise(p: Placed, n: QNode) -> None:
    if n.params.get("requant") == "shift":
        raise Unsupported("shift requantisation is not TFLite arithmetic")
    ins, lay = _operands(p, n)
    fn, rng = fused(p, n)
    y = _raw(p, n, lay, rng)
    a, b, o = (p.qg.tensors[k].s for k in (n.inputs[0], n.inputs[1], n.outputs[0]))
    version = 3 if n.op == "Mul" and float(np.float32(a) * np.float32(b) / np.float32(o)) >= 1.0 else None
    p.w.op(n.op.upper(), ins, [y], version=version, fusedActivationFunction=fn)
    _finish(p, n, y, lay, rng)


def max_min(p: Placed, n: QNode) -> None:
    ins, lay = _operands(p, n)
    rng = (int(n.params.get("act_min", -128)), int(n.params.get("act_max", 127)))
    rng = None if rng == (-128, 127) else rng
    op = n.op.upper()
    acc = ins[0]
    for k, v in enumerate(ins[1:]):
        last = k == len(ins) - 2
        y = _raw(p, n, lay, rng) if last else p.like(f"{n.outputs[0]}_{k}", n.outputs[0],
                                                     p.shape_in(n.outputs[0], lay))
        p.w.op(op, [acc, v], [y])
        acc = y
    _finish(p, n, acc, lay, rng)


def prelu(p: Placed, n: QNode) -> None:
    if n.params.get("requant") == "shift":
        raise Unsupported("shift requantisation is not TFLite arithmetic")
    ins, lay = _operands(p, n)
    rng = (int(n.params["act_min"]), int(n.params["act_max"]))
    rng = None if rng == (-128, 127) else rng
    y = _raw(p, n, lay, rng)
    p.w.op("PRELU", ins, [y])
    _finish(p, n, y, lay, rng)


def _pool(p: Placed, n: QNode, op: str) -> None:
    a = n.attrs
    xt, yt = p.qg.tensors[n.inputs[0]], p.qg.tensors[n.outputs[0]]
    x = p.get(n.inputs[0], "nhwc")
    pad = _padding(xt.shape[2:], yt.shape[2:], a["kernel"], a["strides"], [1, 1], a["pads"])
    if pad is None and op == "AVERAGE_POOL_2D":
        _avg_pool_strided(p, n, x)
        return
    if pad is None:
        x = _explicit_pad(p, n.inputs[0], x, a["pads"], -128)   # padding never wins a max
        pad = "valid"
    if n.params.get("requant") == "shift":
        raise Unsupported("shift requantisation is not TFLite arithmetic")
    fn, rng = fused(p, n)
    y = _raw(p, n, "nhwc", rng)
    p.w.op(op, [x], [y], padding={"same": 0, "valid": 1}[pad], strideH=a["strides"][0],
           strideW=a["strides"][1], filterHeight=a["kernel"][0], filterWidth=a["kernel"][1],
           fusedActivationFunction=fn)
    _finish(p, n, y, "nhwc", rng)


def _avg_pool_strided(p: Placed, n: QNode, x: int) -> None:
    """Symmetric pads with stride > 1 (ONNX/PyTorch style, padded values not
    counted): TFLite's SAME pool at stride 1 has the same windows (starting
    ``(k-1)//2`` before each position, padding not counted) at every position;
    STRIDED_SLICE keeps every stride-th. Exact: each output is the same rounded mean."""
    a = n.attrs
    xt, yt = p.qg.tensors[n.inputs[0]], p.qg.tensors[n.outputs[0]]
    (kh, kw), (sh, sw), (t, l, _, _) = a["kernel"], a["strides"], a["pads"]
    (h, w), (oh, ow) = xt.shape[2:], yt.shape[2:]
    if [t, l] != [(kh - 1) // 2, (kw - 1) // 2] or (oh - 1) * sh >= h or (ow - 1) * sw >= w:
        raise Unsupported(f"average pooling with pads {a['pads']} (neither TFLite SAME nor VALID, "
                          "nor centred windows) would count padded values; pad the model TF-style")
    fn, rng = fused(p, n)
    full = p.like(f"{n.outputs[0]}_stride1", n.outputs[0], [1, h, w, xt.shape[1]])
    p.w.op("AVERAGE_POOL_2D", [x], [full], padding=0, strideH=1, strideW=1, filterHeight=kh,
           filterWidth=kw, fusedActivationFunction=fn)
    y = _raw(p, n, "nhwc", rng)
    _strided_slice(p, full, y, [0, 0, 0, 0], [1, (oh - 1) * sh + 1, (ow - 1) * sw + 1, xt.shape[1]],
                   [1, sh, sw, 1])
    _finish(p, n, y, "nhwc", rng)


def avg_pool(p: Placed, n: QNode) -> None:
    _pool(p, n, "AVERAGE_POOL_2D")


def max_pool(p: Placed, n: QNode) -> None:
    _pool(p, n, "MAX_POOL_2D")


def mean(p: Placed, n: QNode) -> None:
    if n.params.get("requant") == "shift":
        raise Unsupported("shift requantisation is not TFLite arithmetic")
    x = p.get(n.inputs[0], "nhwc")
    keep = bool(n.attrs.get("keepdims", True)) and len(p.qg.tensors[n.outputs[0]].shape) == 4
    lay = "nhwc" if keep else "native"
    rng = (int(n.params.get("act_min", -128)), int(n.params.get("act_max", 127)))
    rng = None if rng == (-128, 127) else rng
    y = _raw(p, n, lay, rng)
    p.w.op("MEAN", [x, p.w.const(f"{n.name}_axes", np.array([1, 2], np.int32))], [y], keepDims=keep)
    _finish(p, n, y, lay, rng)


def softmax(p: Placed, n: QNode) -> None:
    shape = p.qg.tensors[n.inputs[0]].shape
    axis = n.attrs.get("axis", -1) % len(shape)
    if len(shape) == 4 and axis == 1:
        x, lay = p.get(n.inputs[0], "nhwc"), "nhwc"
    elif axis == len(shape) - 1:
        x, lay = p.get(n.inputs[0], "native"), "native"
    else:
        raise Unsupported(f"Softmax over axis {axis} of a {len(shape)}-D tensor (TFLite SOFTMAX "
                          "reduces the last axis; use the channel or the last axis)")
    y = p.output(n.outputs[0], lay)
    p.w.op("SOFTMAX", [x], [y], beta=1.0)


def requantize(p: Placed, n: QNode) -> None:
    if n.params.get("requant") == "shift":
        raise Unsupported("shift requantisation is not TFLite arithmetic")
    name = n.inputs[0]
    lay = p.layout(name)
    x = p.at[name][0]
    xt, yt = p.qg.tensors[name], p.qg.tensors[n.outputs[0]]
    rng = (int(n.params["act_min"]), int(n.params["act_max"]))
    rng = None if rng == (-128, 127) else rng
    if float(xt.s) == float(yt.s) and xt.zp == yt.zp:   # a clamp only (ReLU on the same grid)
        _finish(p, n, x, lay, rng or (-128, 127))
        return
    y = _raw(p, n, lay, rng)
    p.w.op("QUANTIZE", [x], [y])
    _finish(p, n, y, lay, rng)


# ------------------------------------------------------------------ lookup tables
_BUILTIN_LUT = {   # func -> (builtin, recipe table of the node's params)
    "sigmoid": ("LOGISTIC", lambda x, y, a: recipes.logistic_lut(x.s, x.zp, y.s, y.zp)),
    "tanh": ("TANH", lambda x, y, a: recipes.tanh_lut(x.s, x.zp, y.s, y.zp)),
    "hardswish": ("HARD_SWISH", lambda x, y, a: recipes.hard_swish_lut(x.s, x.zp, y.s, y.zp)),
    "leaky_relu": ("LEAKY_RELU", lambda x, y, a: recipes.leaky_relu_lut(x.s, x.zp, y.s, y.zp,
                                                                        alpha=a["alpha"])),
}


def lut(p: Placed, n: QNode) -> None:
    """A TFLite builtin when its recipe gives the node's table on all 256 inputs;
    otherwise the table itself: CAST to int32, ADD 128, GATHER from the 256 entries."""
    name = n.inputs[0]
    lay = p.layout(name)
    x = p.at[name][0]
    xt, yt = p.qg.tensors[name], p.qg.tensors[n.outputs[0]]
    table = np.asarray(n.params["table"]).astype(np.int8)
    func = n.attrs.get("func")
    if func in _BUILTIN_LUT and (func != "leaky_relu" or "alpha" in n.attrs):
        op, ref = _BUILTIN_LUT[func]
        try:
            same = np.array_equal(np.asarray(ref(xt, yt, n.attrs)).astype(np.int64), table.astype(np.int64))
        except (ValueError, AssertionError):
            same = False
        if same:
            y = p.output(n.outputs[0], lay)
            if op == "LEAKY_RELU":
                p.w.op(op, [x], [y], alpha=float(n.attrs["alpha"]))
            else:
                p.w.op(op, [x], [y])
            return
    w = p.w
    shape = w.shape(x)
    i32 = w.tensor(f"{name}_i32", shape, "int32")
    w.op("CAST", [x], [i32])
    ix = w.tensor(f"{name}_index", shape, "int32")
    w.op("ADD", [i32, w.const(f"{n.name}_offset", np.array([128], np.int32))], [ix],
         fusedActivationFunction=ACT.NONE)
    tab = w.const(f"{n.name}_table", table, "int8", yt.scale, yt.zero_point)
    y = p.output(n.outputs[0], lay)
    w.op("GATHER", [tab, ix], [y], axis=0, batchDims=0)


# ------------------------------------------------------------------ data movement
def _axis(p: Placed, name: str, axis: int):
    """(layout to read ``name`` in, the axis there)."""
    rank = len(p.qg.tensors[name].shape)
    axis %= rank
    if rank == 4 and p.layout(name) != "native":
        return "nhwc", NHWC_AXIS[axis]
    return "native", axis


def concat(p: Placed, n: QNode) -> None:
    rank = len(p.qg.tensors[n.outputs[0]].shape)
    axis = n.attrs["axis"] % rank
    lays = [p.layout(i) for i in n.inputs if not p.qg.tensors[i].is_const]
    rng = (int(n.params.get("act_min", -128)), int(n.params.get("act_max", 127)))
    rng = None if rng == (-128, 127) else rng
    if rank == 2 and axis == 1 and any(is_flat(lay) for lay in lays):
        parts, order, off = [], [], 0
        for name in n.inputs:
            lay = p.layout(name)
            k = p.qg.tensors[name].shape[1]
            parts.append(p.at[name][0])
            order.append((lay.order if is_flat(lay) else np.arange(k)) + off)
            off += k
        lay, ax = Flat(np.concatenate(order)), 1
        ins = parts
    else:
        lay = "nhwc" if rank == 4 and any(v == "nhwc" for v in lays) else "native"
        ax = NHWC_AXIS[axis] if lay == "nhwc" else axis
        ins = [p.get(i, lay) for i in n.inputs]
    y = _raw(p, n, lay, rng)
    p.w.op("CONCATENATION", ins, [y], axis=ax, fusedActivationFunction=ACT.NONE)
    _finish(p, n, y, lay, rng)


def _channel_permutation(p: Placed, n: QNode):
    """(nodes, perm) when ``n`` starts a chain of single-reader Reshape/Transpose nodes
    from an NHWC map back to the same shape that only permutes the channels (a
    ShuffleNet channel shuffle); None otherwise."""
    qg = p.qg
    shape = list(qg.tensors[n.inputs[0]].shape)
    if len(shape) != 4 or p.layout(n.inputs[0]) != "nhwc":
        return None
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    chain, node = [], n
    outs = _graph_outputs(p)
    while node is not None and node.op in ("Reshape", "Transpose") and len(chain) < 6:
        idx = idx.reshape(node.attrs["shape"]) if node.op == "Reshape" else idx.transpose(node.attrs["perm"])
        chain.append(node)
        y = node.outputs[0]
        if list(idx.shape) == shape and len(chain) > 1:
            first = idx[0, :, 0, 0] // (shape[2] * shape[3])
            base = np.arange(int(np.prod(shape))).reshape(shape)
            if np.array_equal(idx, base[:, first]):
                return chain, first
            return None
        readers = [c for c in qg.nodes if y in c.inputs]
        if len(readers) != 1 or y in outs:
            return None
        node = readers[0]
    return None


def reshape(p: Placed, n: QNode) -> None:
    name = n.inputs[0]
    found = _channel_permutation(p, n)
    if found is not None:   # one GATHER along the channels instead of layout transposes
        chain, perm = found
        y = p.output(chain[-1].outputs[0], "nhwc")
        p.w.op("GATHER", [p.at[name][0], p.w.const(f"{n.name}_channels", perm.astype(np.int32))], [y],
               axis=3, batchDims=0)
        p.skip.update(c.name for c in chain[1:])
        return
    xt, yt = p.qg.tensors[name], p.qg.tensors[n.outputs[0]]
    shape = list(yt.shape)
    if len(xt.shape) == 4 and p.layout(name) == "nhwc" and len(shape) == 2:
        _, c, h, w = xt.shape
        order = flatten_order(c, h, w)
        lay = "native" if order is None else Flat(order)
        readers = [c for c in p.qg.nodes if n.outputs[0] in c.inputs]
        if readers and all(r.op == "FullyConnected" and r.inputs[0] == n.outputs[0] for r in readers) \
                and n.outputs[0] not in _graph_outputs(p):
            # FULLY_CONNECTED reads an NHWC map as its flattened rows itself (batch = elements / K),
            # as the TFLite converter leaves it: no RESHAPE, no shape constant
            p.at[n.outputs[0]] = (p.at[name][0], lay)
            return
        y = p.output(n.outputs[0], lay)
        p.w.op("RESHAPE", [p.at[name][0], p.w.const(f"{n.name}_shape", np.array(shape, np.int32))], [y],
               newShape=shape)
        return
    x = p.get(name, "native")
    y = p.output(n.outputs[0], "native")
    p.w.op("RESHAPE", [x, p.w.const(f"{n.name}_shape", np.array(shape, np.int32))], [y], newShape=shape)


def transpose(p: Placed, n: QNode) -> None:
    """One TRANSPOSE from the input as stored to the output as stored (the layout
    changes fold into the permutation; none at all when they cancel out)."""
    name, out = n.inputs[0], n.outputs[0]
    rank = len(p.qg.tensors[name].shape)
    lay_in = p.layout(name)
    x = p.get(name, "native") if is_flat(lay_in) else p.at[name][0]
    lin = np.array(TO_NHWC if lay_in == "nhwc" else range(rank))
    consumers = {c.op for c in p.qg.nodes if out in c.inputs}
    lay_out = "nhwc" if rank == 4 and (out in _graph_outputs(p) or (consumers and consumers <= _SPATIAL)) \
        else "native"
    lout = np.array(TO_NHWC if lay_out == "nhwc" else range(rank))
    q = np.argsort(lin)[np.array(n.attrs["perm"])][lout]
    if np.array_equal(q, np.arange(rank)):
        p.at[out] = (x, lay_out)
        return
    y = p.output(out, lay_out)
    p.w.op("TRANSPOSE", [x, p.w.const(f"{n.name}_perm", q.astype(np.int32))], [y], version=_rank_version(rank))


_SPATIAL = {"Conv2D", "TransposeConv2D", "AvgPool", "MaxPool", "Mean", "Resize", "DepthToSpace",
            "SpaceToDepth"}   # ops that read NHWC maps


def _rank_version(rank: int, base: int = 2) -> int:
    """TRANSPOSE / STRIDED_SLICE / PAD: version 4 above 4-D (TRANSPOSE 6 above 5-D)."""
    return 6 if rank > 5 else 4 if rank > 4 else base


def _graph_outputs(p: Placed) -> set:
    deq = {n.inputs[0] for n in p.qg.nodes if n.op == "Dequantize" and n.outputs[0] in p.qg.outputs}
    return deq | set(p.qg.outputs)


def pad(p: Placed, n: QNode) -> None:
    name = n.inputs[0]
    rank = len(p.qg.tensors[name].shape)
    pads = list(n.attrs["pads"])
    widths = [[pads[i], pads[i + rank]] for i in range(rank)]
    lay = "nhwc" if rank == 4 and p.layout(name) != "native" else "native"
    if lay == "nhwc":
        widths = [widths[i] for i in (0, 2, 3, 1)]
    if any(v < 0 for wd in widths for v in wd):
        raise Unsupported("negative pads (crops); use Slice")
    x = p.get(name, lay)
    pz = p.w.const(f"{n.name}_paddings", np.array(widths, np.int32))
    y = p.output(n.outputs[0], lay)
    mode = n.attrs.get("mode", "constant")
    t = p.qg.tensors[n.outputs[0]]
    if mode == "reflect":
        p.w.op("MIRROR_PAD", [x, pz], [y], mode=0)
    elif mode != "constant":
        raise Unsupported(f"Pad mode '{mode}' has no TFLite builtin (constant and reflect have)")
    elif int(n.params.get("value", t.zp)) == t.zp:
        p.w.op("PAD", [x, pz], [y], version=4 if rank > 4 else 2)
    else:
        v = p.w.const(f"{n.name}_value", np.array([int(n.params["value"])], np.int8), "int8",
                      t.scale, t.zero_point)
        p.w.op("PADV2", [x, pz, v], [y], version=4 if rank > 4 else 2)


def _strided_slice(p: Placed, x: int, y: int, begin, end, strides, end_mask: int = 0) -> None:
    w = p.w
    w.op("STRIDED_SLICE", [x, w.const("begin", np.array(begin, np.int32)),
                           w.const("end", np.array(end, np.int32)),
                           w.const("strides", np.array(strides, np.int32))], [y],
         version=4 if len(begin) > 4 else 2,
         beginMask=0, endMask=end_mask, ellipsisMask=0, newAxisMask=0, shrinkAxisMask=0, offset=False)


def slice_(p: Placed, n: QNode) -> None:
    name = n.inputs[0]
    shape = list(p.qg.tensors[name].shape)
    rank = len(shape)
    lay = "nhwc" if rank == 4 and p.layout(name) != "native" else "native"
    begin, end, strides, to_end = [0] * rank, list(shape), [1] * rank, [False] * rank
    for s, e, ax, st in zip(n.attrs["starts"], n.attrs["ends"], n.attrs["axes"], n.attrs["steps"]):
        ax %= rank
        idx = range(shape[ax])[slice(s, e if e >= 0 else None, st)]
        if len(idx) == 0:
            raise Unsupported("an empty Slice")
        begin[ax], strides[ax], end[ax] = idx[0], st, idx[-1] + st
        to_end[ax] = end[ax] < 0          # a negative step through index 0: end_mask
    if lay == "nhwc":
        begin, end, strides, to_end = ([v[i] for i in (0, 2, 3, 1)] for v in (begin, end, strides, to_end))
    mask = sum(1 << i for i, m in enumerate(to_end) if m)
    end = [0 if m else e for e, m in zip(end, to_end)]
    x = p.get(name, lay)
    y = p.output(n.outputs[0], lay)
    _strided_slice(p, x, y, begin, end, strides, mask)


def split(p: Placed, n: QNode) -> None:
    lay, ax = _axis(p, n.inputs[0], n.attrs["axis"])
    x = p.get(n.inputs[0], lay)
    sizes = [int(s) for s in n.attrs["split"]]
    ys = [p.output(o, lay) for o in n.outputs]
    w = p.w
    if len(set(sizes)) == 1:
        w.op("SPLIT", [w.const(f"{n.name}_axis", np.array(ax, np.int32)), x], ys, numSplits=len(sizes))
    else:
        w.op("SPLIT_V", [x, w.const(f"{n.name}_sizes", np.array(sizes, np.int32)),
                         w.const(f"{n.name}_axis", np.array(ax, np.int32))], ys, numSplits=len(sizes))


def _tflite_nearest(n_in: int, n_out: int, align: bool, half: bool) -> np.ndarray:
    """reference_ops::ResizeNearestNeighbor's source index (float32 arithmetic)."""
    scale = np.float32(n_in - 1) / np.float32(n_out - 1) if align and n_out > 1 else \
        np.float32(n_in) / np.float32(n_out)
    off = np.float32(0.5 if half else 0.0)
    v = (np.arange(n_out, dtype=np.float32) + off) * scale
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) if align else np.floor(v)
    r = np.minimum(r.astype(np.int64), n_in - 1)
    return np.maximum(r, 0) if half else r


def resize(p: Placed, n: QNode) -> None:
    xt, yt = p.qg.tensors[n.inputs[0]], p.qg.tensors[n.outputs[0]]
    if len(xt.shape) != 4:
        raise Unsupported("Resize of a tensor that is not a 4-D map")
    x = p.get(n.inputs[0], "nhwc")
    y = p.output(n.outputs[0], "nhwc")
    w = p.w
    out_hw = list(yt.shape[2:])
    size = w.const(f"{n.name}_size", np.array(out_hw, np.int32))
    if n.attrs["mode"] != "nearest":
        w.op("RESIZE_BILINEAR", [x, size], [y], version=3 if n.params["half_pixel_centers"] else 2,
             alignCorners=bool(n.params["align_corners"]), halfPixelCenters=bool(n.params["half_pixel_centers"]))
        return
    index = [np.asarray(v, np.int64) for v in n.params["index"]]
    for ax in (0, 1):
        if not np.array_equal(index[ax], np.arange(xt.shape[ax])):
            raise Unsupported("a nearest Resize of the batch or channel axis")
    for align, half in ((False, False), (False, True), (True, False)):
        if all(np.array_equal(_tflite_nearest(xt.shape[ax], yt.shape[ax], align, half), index[ax])
               for ax in (2, 3)):
            w.op("RESIZE_NEAREST_NEIGHBOR", [x, size], [y], version=3 if align or half else 2,
                 alignCorners=align, halfPixelCenters=half)
            return
    # any other index map: GATHER rows, then columns (moves integers, exact)
    mid = p.like(f"{n.outputs[0]}_rows", n.outputs[0], [1, out_hw[0], xt.shape[3], xt.shape[1]])
    w.op("GATHER", [x, w.const(f"{n.name}_rows", index[2].astype(np.int32))], [mid], axis=1, batchDims=0)
    w.op("GATHER", [mid, w.const(f"{n.name}_cols", index[3].astype(np.int32))], [y], axis=2, batchDims=0)


def depth_to_space(p: Placed, n: QNode) -> None:
    b = int(n.attrs["blocksize"])
    x = p.get(n.inputs[0], "nhwc")
    c = p.qg.tensors[n.inputs[0]].shape[1]
    if n.attrs.get("mode", "DCR") == "CRD":   # CRD channel c*b*b + k is DCR channel k*C' + c
        cp = c // (b * b)
        perm = np.arange(c).reshape(cp, b * b).T.reshape(-1).astype(np.int32)
        g = p.like(f"{n.inputs[0]}_dcr", n.inputs[0], p.w.shape(x))
        p.w.op("GATHER", [x, p.w.const(f"{n.name}_crd", perm)], [g], axis=3, batchDims=0)
        x = g
    y = p.output(n.outputs[0], "nhwc")
    p.w.op("DEPTH_TO_SPACE", [x], [y], blockSize=b)


def space_to_depth(p: Placed, n: QNode) -> None:
    x = p.get(n.inputs[0], "nhwc")
    y = p.output(n.outputs[0], "nhwc")
    p.w.op("SPACE_TO_DEPTH", [x], [y], blockSize=int(n.attrs["blocksize"]))


def _fpga(p: Placed, n: QNode) -> None:
    raise Unsupported("the fpga profile's shift arithmetic is not TFLite arithmetic")


def _dilated(why: str):
    return lambda a: why if list(a.get("dilations", [1, 1])) != [1, 1] else None


# Attribute limits: nodes no TFLite builtin expresses whatever their numbers, checked before
# lowering (:func:`limit`) and read by ``qdeploy inspect`` (via ``ARTEFACTS["tflite"].limits``),
# so inspect names what quantize refuses. QGraph op -> (the ONNX op it comes from, check(attrs)
# -> the reason, or None).
LIMITS = {
    "TransposeConv2D": ("ConvTranspose", _dilated("TFLite TRANSPOSE_CONV has no dilation; use a dilation-1 "
                                                  "ConvTranspose")),
    "MaxPool": ("MaxPool", _dilated("TFLite pooling has no dilation")),
    "AvgPool": ("AveragePool", _dilated("TFLite pooling has no dilation")),
}


def limit(n: QNode) -> None:
    """Raise :class:`Unsupported` where ``LIMITS`` says TFLite cannot express ``n``."""
    row = LIMITS.get(n.op)
    why = row[1](n.attrs) if row else None
    if why:
        raise Unsupported(why)


LOWER = {
    "Conv2D": conv2d, "TransposeConv2D": transpose_conv2d, "FullyConnected": fully_connected,
    "Add": eltwise, "Sub": eltwise, "Mul": eltwise, "Maximum": max_min, "Minimum": max_min,
    "PRelu": prelu, "AvgPool": avg_pool, "Mean": mean, "MaxPool": max_pool,
    "Concat": concat, "Reshape": reshape, "Transpose": transpose, "Pad": pad, "Slice": slice_,
    "Split": split, "DepthToSpace": depth_to_space, "SpaceToDepth": space_to_depth, "Resize": resize,
    "Lut": lut, "Softmax": softmax, "Requantize": requantize, "LeakyShift": _fpga,
}
