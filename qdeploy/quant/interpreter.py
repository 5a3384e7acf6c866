"""The reference interpreter: executes a QGraph with integer arithmetic only.

This is the contract every backend is checked against. After the input
``Quantize`` every kernel is integer-exact and follows the TFLite int8
reference kernels (and the fpga profile's shift arithmetic); it only *reads*
the integers the quantizer stored (TFLite Micro's Eval step):

* Conv2D / FullyConnected / TransposeConv2D: ``acc = bias + sum (x - zp_x) *
  w`` where padded input positions contribute 0 (TFLite skips them; the
  transposed convolution scatters and crops), then the per-channel
  requantisation (``mbqm`` with Q31 multiplier and shift, double rounding; or
  the fpga rounding shift), ``+ zp_y`` and the clamp ``[act_min, act_max]``.
  The sums are formed with float64 matrix products: every product of an int8
  weight and a 9-bit input is an integer below 2**16 and every partial sum
  below 2**53, so the float64 result is the exact integer (and BLAS-fast).
* Add/Sub/Mul, PRelu, AvgPool, Mean, Softmax, Lut tables, Quantize/Requantize
  use the recipes of ``qdeploy.quant.recipes`` (TFLite's integer recipes).
* Maximum/Minimum compare integers of one shared scale (TFLite MAXIMUM/MINIMUM).
* data movement ops move integers and never change them.
* ``Float`` (a layer kept in float, ``quantize --keep-float``) is the one
  exception: DequantizeLinear, the float op, QuantizeLinear as onnxruntime does
  them, with the sum in float64 rounded once to float32 (onnxruntime sums in
  float32 in its own order: 1 LSB apart where the result lies at a rounding tie).

Inputs are a batch along axis 0 (N samples of a batch-1 model); every kernel
works on the whole batch. ``KERNELS`` is the table op -> kernel, each kernel
``kernel(node, inputs, qg) -> list of outputs``.
"""
from __future__ import annotations

import numpy as np

from ..errors import QDeployError
from . import fixedpoint as fp
from . import recipes
from .qgraph import QGraph, QNode


def _dtype(qg: QGraph, name: str):
    return np.dtype(qg.tensors[name].dtype)


def _finish(qg: QGraph, n: QNode, acc, out: str | None = None) -> np.ndarray:
    """``acc + zp_out`` clamped to the node's activation range, in the out dtype."""
    t = qg.tensors[out or n.outputs[0]]
    lo = n.params.get("act_min", np.iinfo(t.dtype).min)
    hi = n.params.get("act_max", np.iinfo(t.dtype).max)
    return np.clip(np.asarray(acc, np.int64) + t.zp, lo, hi).astype(t.dtype)


def _requant(acc: np.ndarray, p: dict, axis_shape) -> np.ndarray:
    if p["requant"] == "float32":   # onnxruntime: float32(acc) * scale, rounded half to even
        v = acc.astype(np.float32) * np.asarray(p["scale"], np.float32).reshape(axis_shape)
        return np.rint(v).astype(np.int64)
    if p["requant"] == "shift":
        return fp.shift_round(acc, np.asarray(p["shift"], np.int64).reshape(axis_shape))
    m = np.asarray(p["multiplier"], np.int64).reshape(axis_shape)
    s = np.asarray(p["shift"], np.int64).reshape(axis_shape)
    return fp.mbqm(acc, m, s)


# ------------------------------------------------------------------ compute
def conv2d(n: QNode, ins, qg: QGraph):
    x, w, b = ins
    zp = qg.tensors[n.inputs[0]].zp
    acc = _conv_sum(x.astype(np.float64) - zp, w.astype(np.float64), n.attrs, qg.tensors[n.outputs[0]].shape)
    acc = acc.astype(np.int64) + b.astype(np.int64)[None, :, None, None]
    return [_finish(qg, n, _requant(acc, n.params, (1, -1, 1, 1)))]


def _conv_sum(xf: np.ndarray, wf: np.ndarray, a: dict, out_shape) -> np.ndarray:
    """``sum x * w`` of a convolution (float64; padding contributes 0) for Conv2D
    (``xf`` = x - zp_x) and a Float conv (``xf`` = the dequantized input)."""
    oh, ow = out_shape[2], out_shape[3]
    t, l, bo, r = a["pads"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    kh, kw = wf.shape[2], wf.shape[3]
    xp = np.pad(xf, ((0, 0), (0, 0), (t, bo), (l, r)))
    nb, c = xf.shape[0], xf.shape[1]
    o = wf.shape[0]

    def patch(i, j):
        return xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]

    if a.get("depthwise"):
        src = np.arange(o) // a["depth_multiplier"]
        acc = np.zeros((nb, o, oh, ow))
        for i in range(kh):
            for j in range(kw):
                acc += patch(i, j)[:, src] * wf[:, 0, i, j][None, :, None, None]
        return acc
    cols = np.stack([patch(i, j) for i in range(kh) for j in range(kw)], axis=2)
    cols = cols.reshape(nb, c * kh * kw, oh * ow)
    groups = a["group"]
    cg, og = c // groups, o // groups
    parts = []
    for gi in range(groups):
        wg = wf[gi * og:(gi + 1) * og].reshape(og, cg * kh * kw)
        parts.append(np.matmul(wg, cols[:, gi * cg * kh * kw:(gi + 1) * cg * kh * kw]))
    return np.concatenate(parts, axis=1).reshape(nb, o, oh, ow)


def transpose_conv2d(n: QNode, ins, qg: QGraph):
    """TFLite TRANSPOSE_CONV: every input pixel scatters ``(x - zp_x) * w`` into
    the full output ``(H - 1) * stride + (k - 1) * dilation + 1`` (+ the
    output padding), which is then cropped at ``[pad_top, pad_left]`` to the
    output size; bias, requantisation and clamp as Conv2D. Groups are
    independent channel slices."""
    x, w, b = ins
    zp = qg.tensors[n.inputs[0]].zp
    acc = _transpose_conv_sum(x.astype(np.float64) - zp, w.astype(np.float64), n.attrs,
                              qg.tensors[n.outputs[0]].shape)
    acc = acc.astype(np.int64) + b.astype(np.int64)[None, :, None, None]
    return [_finish(qg, n, _requant(acc, n.params, (1, -1, 1, 1)))]


def _transpose_conv_sum(xf: np.ndarray, wf: np.ndarray, a: dict, out_shape) -> np.ndarray:
    nb, c, h, wd = xf.shape
    o, cg, kh, kw = wf.shape
    og = o // a["group"]
    (sh, sw), (dh, dw) = a["strides"], a["dilations"]
    top, left = a["pads"][0], a["pads"][1]
    oh, ow = out_shape[2:]
    full = np.zeros((nb, o, max((h - 1) * sh + (kh - 1) * dh + 1, top + oh),
                     max((wd - 1) * sw + (kw - 1) * dw + 1, left + ow)))
    xf = xf.reshape(nb, c, h * wd)
    for gi in range(a["group"]):
        xs, outs = xf[:, gi * cg:(gi + 1) * cg], slice(gi * og, (gi + 1) * og)
        for i in range(kh):
            for j in range(kw):
                tap = np.matmul(wf[outs, :, i, j], xs).reshape(nb, og, h, wd)
                full[:, outs, i * dh: i * dh + sh * (h - 1) + 1: sh, j * dw: j * dw + sw * (wd - 1) + 1: sw] += tap
    return full[:, :, top:top + oh, left:left + ow]


def fully_connected(n: QNode, ins, qg: QGraph):
    x, w, b = ins
    zp = qg.tensors[n.inputs[0]].zp
    acc = _fc_sum(x.astype(np.float64) - zp, w.astype(np.float64), n.attrs, None).astype(np.int64)
    return [_finish(qg, n, _requant(acc + b.astype(np.int64), n.params, (1, -1)))]


def _fc_sum(xf: np.ndarray, wf: np.ndarray, a: dict, out_shape) -> np.ndarray:
    return xf @ wf.T


# the float sums of the ops a Float node can stand for, and the shape of a bias row
_FLOAT_SUMS = {"Conv2D": (_conv_sum, (1, -1, 1, 1)), "TransposeConv2D": (_transpose_conv_sum, (1, -1, 1, 1)),
               "FullyConnected": (_fc_sum, (1, -1))}


def float_island(n: QNode, ins, qg: QGraph):
    """A layer kept in float (QGraph op ``Float``): onnxruntime's DequantizeLinear of
    the input, the float op (summed in float64, rounded once to float32), then the
    output's QuantizeLinear (half to even) and the clamp."""
    x, w, b = ins
    tx = qg.tensors[n.inputs[0]]
    xf = (x.astype(np.int32) - tx.zp).astype(np.float32) * np.float32(tx.s)
    fn, bias_shape = _FLOAT_SUMS[n.attrs["op"]]
    y = fn(xf.astype(np.float64), np.asarray(w, np.float64), n.attrs, qg.tensors[n.outputs[0]].shape)
    y = (y + np.asarray(b, np.float64).reshape(bias_shape)).astype(np.float32)
    ty = qg.tensors[n.outputs[0]]
    return [_finish(qg, n, np.rint(y / np.float32(ty.s)).astype(np.int64))]


def eltwise(n: QNode, ins, qg: QGraph):
    a, b = ins
    p = n.params
    lo, hi = p["act_min"], p["act_max"]
    if p.get("requant") == "shift":
        x = a.astype(np.int64)
        y = b.astype(np.int64)
        if n.op == "Mul":
            acc = fp.shift_round(x * y, p["out_shift"])
        else:
            x = x << p["a_shift"]
            y = y << p["b_shift"]
            acc = fp.shift_round(x + y if n.op == "Add" else x - y, p["out_shift"])
        return [_finish(qg, n, acc)]
    if p.get("requant") == "float32":   # onnxruntime QLinearMul: float32(prod) * scale + zp_out, half to even
        prod = (a.astype(np.int64) - p["zp1"]) * (b.astype(np.int64) - p["zp2"])
        v = prod.astype(np.float32) * np.float32(p["scale"]) + np.float32(p["zp_out"])
        y = np.clip(np.rint(v).astype(np.int64), lo, hi)
        return [y.astype(_dtype(qg, n.outputs[0]))]
    fn = {"Add": recipes.add_eval, "Sub": recipes.sub_eval, "Mul": recipes.mul_eval}[n.op]
    a, b = np.broadcast_arrays(a, b)
    return [np.asarray(fn(a, b, p, lo, hi)).astype(_dtype(qg, n.outputs[0]))]


def max_min(n: QNode, ins, qg: QGraph):
    """Maximum / Minimum of operands that share the output's parameters."""
    fn = np.maximum if n.op == "Maximum" else np.minimum
    y = ins[0]
    for v in ins[1:]:
        y = fn(y, v)
    return [np.clip(y, n.params["act_min"], n.params["act_max"]).astype(_dtype(qg, n.outputs[0]))]


def prelu(n: QNode, ins, qg: QGraph):
    x, alpha = ins
    p = n.params
    if p.get("requant") == "shift":
        xi = x.astype(np.int64)
        acc = np.where(xi >= 0, fp.shift_round(xi, p["pos_shift"]),
                       fp.shift_round(xi * alpha.astype(np.int64), p["neg_shift"]))
        return [_finish(qg, n, acc)]
    y = recipes.prelu_eval(x, alpha, p, p["act_min"], p["act_max"])
    return [y.astype(_dtype(qg, n.outputs[0]))]


def avg_pool(n: QNode, ins, qg: QGraph):
    a, p = n.attrs, n.params
    if p.get("requant") == "shift":
        y = recipes.avg_pool_shift_eval(ins[0], a["kernel"], a["strides"], a["pads"], p,
                                        p["act_min"], p["act_max"])
    else:
        y = recipes.avg_pool2d_eval(ins[0], a["kernel"], a["strides"], a["pads"], p["act_min"], p["act_max"])
    return [np.asarray(y).astype(_dtype(qg, n.outputs[0]))]


def mean(n: QNode, ins, qg: QGraph):
    p = n.params
    if p.get("requant") == "float32":   # onnxruntime: float32(sum - zp_in * count) * scale, half to even
        acc = ins[0].astype(np.int64).sum(axis=(2, 3), keepdims=True) - p["zp_in"] * p["count"]
        y = _finish(qg, n, np.rint(acc.astype(np.float32) * np.float32(p["scale"])).astype(np.int64))
        return [y.reshape((ins[0].shape[0],) + tuple(qg.tensors[n.outputs[0]].shape[1:]))]
    fn = recipes.mean_shift_eval if p.get("requant") == "shift" else recipes.mean_eval
    y = fn(ins[0], p, axes=(2, 3), keepdims=True, act_min=p["act_min"], act_max=p["act_max"])
    y = np.asarray(y).astype(_dtype(qg, n.outputs[0]))
    return [y.reshape((ins[0].shape[0],) + tuple(qg.tensors[n.outputs[0]].shape[1:]))]


def max_pool(n: QNode, ins, qg: QGraph):
    x = ins[0]
    a = n.attrs
    t, l, bo, r = a["pads"]
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a.get("dilations", [1, 1])
    oh, ow = qg.tensors[n.outputs[0]].shape[2:]
    xp = np.pad(x.astype(np.int32), ((0, 0), (0, 0), (t, bo), (l, r)), constant_values=-(1 << 20))
    y = None
    for i in range(kh):
        for j in range(kw):
            v = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            y = v if y is None else np.maximum(y, v)
    return [np.clip(y, n.params["act_min"], n.params["act_max"]).astype(x.dtype)]


def lut(n: QNode, ins, qg: QGraph):
    qmin = np.iinfo(ins[0].dtype).min
    return [np.asarray(n.params["table"])[ins[0].astype(np.int64) - qmin]]


def softmax(n: QNode, ins, qg: QGraph):
    y = recipes.softmax_eval(ins[0], n.params, axis=n.attrs.get("axis", -1)).astype(np.int64)
    dt = _dtype(qg, n.outputs[0])
    return [(y + 128 if dt == np.uint8 else y).astype(dt)]


def requantize(n: QNode, ins, qg: QGraph):
    zp = qg.tensors[n.inputs[0]].zp
    p = n.params
    # onnxruntime: DequantizeLinear, then QuantizeLinear; also QLinearConcat's per-input table when the
    # QDQ emitter leaves a concat-branch Requantize to it (tests/emit/test_qdq_oneop.py checks the kernel)
    if p.get("requant") == "float32":
        v = (ins[0].astype(np.int32) - zp).astype(np.float32) * np.float32(p["in_scale"])
        return [_finish(qg, n, np.rint(v / np.float32(p["out_scale"])).astype(np.int64))]
    acc = _requant(ins[0].astype(np.int64) - zp, n.params, (1,))
    return [_finish(qg, n, acc)]


def leaky_shift(n: QNode, ins, qg: QGraph):
    x = ins[0].astype(np.int64)
    p = n.params
    pos = fp.shift_round(x, p["pos_shift"])
    neg = fp.shift_round(x * p["neg_multiplier"], p["neg_shift"])
    return [_finish(qg, n, np.where(x >= 0, pos, neg))]


def quantize(n: QNode, ins, qg: QGraph):
    t = qg.tensors[n.outputs[0]]
    info = np.iinfo(t.dtype)
    if n.params.get("requant") == "float32":   # onnxruntime's QuantizeLinear: x / scale, half to even
        v = np.rint(np.asarray(ins[0], np.float32) / np.float32(t.s)).astype(np.int64) + t.zp
        return [np.clip(v, info.min, info.max).astype(t.dtype)]
    return [recipes.quantize_input(ins[0], t.s, t.zp, int(info.min), int(info.max)).astype(t.dtype)]


def dequantize(n: QNode, ins, qg: QGraph):
    t = qg.tensors[n.inputs[0]]
    return [recipes.dequantize(ins[0], t.s, t.zp)]


# ------------------------------------------------------------------ data movement
def concat(n: QNode, ins, qg: QGraph):
    y = np.concatenate(ins, axis=n.attrs["axis"])
    return [np.clip(y, n.params["act_min"], n.params["act_max"]).astype(y.dtype)]


def _batch_shape(shape, nb):
    shape = list(shape)
    if shape and shape[0] == 1:
        shape[0] = nb
    return shape


def reshape(n: QNode, ins, qg: QGraph):
    return [ins[0].reshape(_batch_shape(n.attrs["shape"], ins[0].shape[0]))]


def transpose(n: QNode, ins, qg: QGraph):
    return [np.ascontiguousarray(np.transpose(ins[0], n.attrs["perm"]))]


def pad(n: QNode, ins, qg: QGraph):
    x = ins[0]
    p = n.attrs["pads"]
    r = x.ndim
    widths = [(p[i], p[i + r]) for i in range(r)]
    mode = n.attrs.get("mode", "constant")
    if mode == "constant":
        return [np.pad(x, widths, constant_values=n.params["value"])]
    return [np.pad(x, widths, mode={"reflect": "reflect", "edge": "edge"}[mode])]


def slice_(n: QNode, ins, qg: QGraph):
    x = ins[0]
    idx = [slice(None)] * x.ndim
    for s, e, ax, st in zip(n.attrs["starts"], n.attrs["ends"], n.attrs["axes"], n.attrs["steps"]):
        idx[ax] = slice(s, e if e >= 0 else None, st)
    return [np.ascontiguousarray(x[tuple(idx)])]


def split(n: QNode, ins, qg: QGraph):
    cuts = np.cumsum(n.attrs["split"])[:-1]
    return [np.ascontiguousarray(p) for p in np.split(ins[0], cuts, axis=n.attrs["axis"])]


def depth_to_space(n: QNode, ins, qg: QGraph):
    x = ins[0]
    b = n.attrs["blocksize"]
    nb, c, h, w = x.shape
    if n.attrs.get("mode", "DCR") == "DCR":
        y = x.reshape(nb, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(nb, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return [np.ascontiguousarray(y.reshape(nb, c // (b * b), h * b, w * b))]


def space_to_depth(n: QNode, ins, qg: QGraph):
    x = ins[0]
    b = n.attrs["blocksize"]
    nb, c, h, w = x.shape
    y = x.reshape(nb, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return [np.ascontiguousarray(y.reshape(nb, c * b * b, h // b, w // b))]


def resize(n: QNode, ins, qg: QGraph):
    x = ins[0]
    p = n.params
    if n.attrs["mode"] == "nearest":
        idx = [np.asarray(p["index"][k], np.int64) for k in range(x.ndim)]
        y = x
        for ax in range(1, x.ndim):
            if len(idx[ax]) != x.shape[ax] or np.any(idx[ax] != np.arange(x.shape[ax])):
                y = np.take(y, idx[ax], axis=ax)
        return [np.ascontiguousarray(y)]
    y = recipes.resize_bilinear_eval(x, p["out_hw"], p["align_corners"], p["half_pixel_centers"])
    return [y.astype(x.dtype)]


KERNELS = {
    "Quantize": quantize, "Dequantize": dequantize,
    "Conv2D": conv2d, "TransposeConv2D": transpose_conv2d, "FullyConnected": fully_connected,
    "Add": eltwise, "Sub": eltwise, "Mul": eltwise, "Maximum": max_min, "Minimum": max_min,
    "PRelu": prelu, "AvgPool": avg_pool, "Mean": mean, "MaxPool": max_pool,
    "Concat": concat, "Reshape": reshape, "Transpose": transpose, "Pad": pad, "Slice": slice_,
    "Split": split, "DepthToSpace": depth_to_space, "SpaceToDepth": space_to_depth, "Resize": resize,
    "Lut": lut, "Softmax": softmax, "Requantize": requantize, "LeakyShift": leaky_shift,
    "Float": float_island,
}


# ------------------------------------------------------------------ running
def run_node(qg: QGraph, n: QNode, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """One node's kernel on the given input values (constants are read from
    the QGraph when ``inputs`` leaves them out as None)."""
    vals = [qg.tensors[i].data if v is None else v for i, v in zip(n.inputs, inputs)]
    return KERNELS[n.op](n, vals, qg)


def _execute(qg: QGraph, env: dict, nodes) -> dict:
    for name, t in qg.tensors.items():
        if t.is_const:
            env[name] = t.data
    for n in nodes:
        outs = KERNELS[n.op](n, [env[i] for i in n.inputs], qg)
        env.update(zip(n.outputs, outs))
    return env


def _boundaries(qg: QGraph):
    """(quantize nodes by float input, dequantize nodes by float output, the rest)."""
    quant = {n.inputs[0]: n for n in qg.nodes if n.op == "Quantize" and n.inputs[0] in qg.inputs}
    deq = {n.outputs[0]: n for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] in qg.outputs}
    body = [n for n in qg.nodes if n not in quant.values() and n not in deq.values()]
    return quant, deq, body


def run_int(qg: QGraph, int_inputs: dict[str, np.ndarray], keep: bool = False) -> dict[str, np.ndarray]:
    """Integer-only execution: ``int_inputs`` are the quantized inputs keyed by
    the model's input names; returns the integer outputs keyed by the model's
    output names (before the final Dequantize) and, with ``keep=True``, every
    integer intermediate tensor as well (keyed by its QGraph name)."""
    quant, deq, body = _boundaries(qg)
    env: dict[str, np.ndarray] = {}
    for name in qg.inputs:
        if name not in int_inputs:
            raise QDeployError(f"input '{name}' of '{qg.name}' not given; the model's inputs are "
                               f"{', '.join(qg.inputs)}")
        q = quant[name].outputs[0]
        want = np.dtype(qg.tensors[q].dtype)
        x = np.asarray(int_inputs[name])
        if x.dtype != want:
            raise QDeployError(f"input '{name}' is {x.dtype}; the integer graph takes {want} "
                               "(quantize it first, or call run() with float inputs)")
        env[q] = x
    env = _execute(qg, env, body)
    res = {o: env[deq[o].inputs[0]] for o in qg.outputs}
    if keep:
        res.update({k: v for k, v in env.items() if not qg.tensors[k].is_const})
    return res


def quantize_inputs(qg: QGraph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's input Quantize nodes applied to float inputs."""
    quant, _, _ = _boundaries(qg)
    return {name: quantize(quant[name], [np.asarray(x, np.float32)], qg)[0] for name, x in inputs.items()}


def run(qg: QGraph, inputs: "dict[str, np.ndarray] | np.ndarray", keep: bool = False) -> dict[str, np.ndarray]:
    """Float inputs -> float outputs through the integer graph (quantize,
    :func:`run_int`, dequantize). ``inputs`` is a dict by input name or one
    array (single-input models); axis 0 is the batch (N samples of a batch-1
    model). With ``keep=True`` the integer intermediates are returned too."""
    if not isinstance(inputs, dict):
        if len(qg.inputs) != 1:
            raise QDeployError(f"model '{qg.name}' has {len(qg.inputs)} inputs; give them by name")
        inputs = {qg.inputs[0]: inputs}
    for name in qg.inputs:
        if name not in inputs:
            raise QDeployError(f"input '{name}' of '{qg.name}' not given; the model's inputs are "
                               f"{', '.join(qg.inputs)}")
        x = np.asarray(inputs[name])
        want = qg.tensors[name].shape
        if x.ndim != len(want) or tuple(x.shape[1:]) != tuple(want[1:]):
            raise QDeployError(f"input '{name}' has shape {tuple(x.shape)}; the model expects "
                               f"{tuple(want)} (any batch size along axis 0)")
    ints = run_int(qg, quantize_inputs(qg, {k: inputs[k] for k in qg.inputs}), keep=keep)
    _, deq, _ = _boundaries(qg)
    res = dict(ints) if keep else {}
    for o in qg.outputs:
        res[o] = dequantize(deq[o], [ints[o]], qg)[0]
    return res


# ------------------------------------------------------------------ fake-quant float mode
def fake_quant_graph(qg: QGraph, float_graph):
    """The float graph with the QGraph's numerics simulated in float: constant
    weights/biases replaced by their dequantized integers, and a
    QuantizeLinear/DequantizeLinear pair after every activation the QGraph
    quantizes (same scale and zero point). For per-layer error analysis."""
    g = float_graph.copy()
    names = qg.metadata.get("float_names", {})
    for qn in qg.nodes:
        if qn.op in ("Conv2D", "FullyConnected", "TransposeConv2D"):
            for k, (src, qname) in enumerate(zip(g.node(qn.source[0]).inputs[1:3], qn.inputs[1:3])):
                t = qg.tensors[qname]
                shape = (-1,) + (1,) * (t.data.ndim - 1)
                deq = t.data.astype(np.float64) * t.scale.astype(np.float64).reshape(shape)
                if qn.op == "TransposeConv2D" and k == 0:   # back to ONNX [C_in, C_out/g, kh, kw]
                    o, cg, kh, kw = deq.shape
                    gr = qn.attrs["group"]
                    deq = deq.reshape(gr, o // gr, cg, kh, kw).transpose(0, 2, 1, 3, 4)
                if src:
                    g.tensors[src].data = deq.astype(np.float32).reshape(g.tensors[src].shape)
    for name in g.activations():
        t = qg.tensors.get(name + "_q") if name in g.inputs or name in g.outputs else qg.tensors.get(name)
        if t is None or t.scale is None:
            continue
        pair, d = _fq_pair(g, name, t, name + "_fq")
        for c in g.consumers(name):
            c.inputs = [d if i == name else i for i in c.inputs]
        prod = g.producer(name)
        at = 0 if prod is None else g.nodes.index(prod) + 1
        g.nodes[at:at] = pair
        if name in g.outputs:
            g.outputs = [d if o == name else o for o in g.outputs]
            names[d] = name
    _split_silu(qg, g)
    return g


def _fq_pair(g, name: str, t, base: str) -> tuple[list, str]:
    """QuantizeLinear -> DequantizeLinear of tensor ``name`` with QTensor ``t``'s scale and
    zero point (constants ``base``_scale / _zp, tensors ``base``_q / _dq): the two nodes
    and the dequantized tensor's name."""
    from ..ir import Node, Tensor
    s = g.add_const(base + "_scale", np.float32(t.s))
    z = g.add_const(base + "_zp", np.array(t.zp, dtype=t.dtype))
    q, d = g.unique_name(base + "_q"), g.unique_name(base + "_dq")
    g.tensors[q] = Tensor(q, g.shape(name), t.dtype)
    g.tensors[d] = Tensor(d, g.shape(name), "float32")
    return [Node("QuantizeLinear", q, [name, s, z], [q]), Node("DequantizeLinear", d, [q, s, z], [d])], d


def _split_silu(qg: QGraph, g) -> None:
    """A SiLU the QGraph runs as a sigmoid table then a Mul (arm, ort: quant/prepare.activation)
    has the sigmoid on its fixed grid in between: the fake-quant graph rounds it there too.
    Without it the float x * sigmoid(x) missed that rounding: 2.6 % of ddddocr_det's first SiLU
    outputs 1-3 LSB off the integer model, its output SQNR 1.1 dB off."""
    from ..ir import Node, Tensor
    for qn in qg.nodes:
        if qn.op != "Lut" or qn.attrs.get("func") != "sigmoid" or not qn.source:
            continue
        n = next((m for m in g.nodes if m.name == qn.source[0]), None)
        if n is None or n.op != "SiLU":
            continue
        x, y = n.inputs[0], n.outputs[0]
        sig = g.unique_name(n.name + "_fq_sig")
        g.tensors[sig] = Tensor(sig, g.shape(y), "float32")
        pair, d = _fq_pair(g, sig, qg.tensors[qn.outputs[0]], n.name + "_fq_sig")
        at = g.nodes.index(n)
        g.nodes[at:at + 1] = [Node("Sigmoid", sig, [x], [sig]), *pair, Node("Mul", n.name, [x, d], [y])]


def run_fake(qg: QGraph, float_graph, inputs: dict, expose=()) -> dict:
    """Fake-quant float run on onnxruntime (graph optimisations off, so the
    QDQ pairs stay float): outputs by the model's output names (+ exposed)."""
    from ..float_run import session
    g = fake_quant_graph(qg, float_graph)
    sess = session(g, list(expose), optimize=False)
    names = list(g.outputs) + [e for e in expose if e not in g.outputs]
    res = dict(zip(names, sess.run(names, {k: np.asarray(v, np.float32) for k, v in inputs.items()})))
    return {float_graph.outputs[k] if k < len(g.outputs) else nm: res[nm] for k, nm in enumerate(names)}
