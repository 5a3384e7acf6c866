"""QGraph nodes -> kernel calls of the C runtime (TFLite Micro's Prepare step, done in
Python once): each op's handler reads the integers the quantizer stored and records
one or more :class:`Step` (kernel, parameter struct, buffers) plus the constant arrays
they point to. ``LOWER`` is the table op -> handler; an op missing from it is refused
by the emitter with the list of such nodes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import QDeployError
from ...quant import interpreter
from ...quant.recipes import resize as resize_recipe
from . import layout
from .names import comment, identifier


@dataclass(frozen=True)
class Ref:
    """A place in a tensor's buffer (resolved after the arena is planned)."""
    tensor: str
    offset: int = 0


@dataclass
class Step:
    kernel: str
    struct: str | None
    fields: dict | None
    args: list                   # Ref or C expression strings, after the &params pointer
    what: str                    # comment
    node: int                    # schedule index (liveness)
    skip_if_same: tuple | None = None   # (dst, src): an identity copy, skipped when in place
    scratch: int = 0             # bytes of arena scratch the kernel needs (the SCRATCH argument)
    layer: str = ""              # the C-safe name of the node it comes from


SCRATCH = Ref("\0scratch")   # the step's scratch buffer, placed in the arena for that step only


@dataclass
class Array:
    name: str
    ctype: str
    values: np.ndarray
    what: str


@dataclass
class Builder:
    qg: object
    profile: str
    steps: list = field(default_factory=list)
    arrays: list = field(default_factory=list)
    inplace: dict = field(default_factory=dict)   # out tensor -> input tensor it may overwrite
    used: set = field(default_factory=set)
    _dedup: dict = field(default_factory=dict)
    _const: dict = field(default_factory=dict)
    node_index: int = 0
    layer: str = ""
    flat: dict = field(default_factory=dict)      # 2-D tensor -> the 4-D shape whose NHWC order it keeps
    readers: dict = field(default_factory=dict)   # tensor -> the nodes that read it
    virtual: dict = field(default_factory=dict)   # tensor -> its elements' encoded sources (never stored)
    tids: list = field(default_factory=list)      # source tensor of each encoding id

    @property
    def fpga(self) -> bool:
        return self.profile == "fpga"

    def t(self, name):
        return self.qg.tensors[name]

    def array(self, values, ctype: str, what: str, hint: str) -> str:
        v = np.ascontiguousarray(np.asarray(values).reshape(-1).astype({"int8_t": np.int8, "int32_t": np.int32}[ctype]))
        if v.size == 0:
            v = np.zeros(1, v.dtype)
        key = (ctype, v.tobytes())
        if key in self._dedup:
            return self._dedup[key]
        name = identifier(hint, "qd", self.used)
        self.arrays.append(Array(name, ctype, v, what))
        self._dedup[key] = name
        return name

    def const(self, tname: str) -> str:
        """A constant tensor in the bundle's memory order."""
        if tname not in self._const:
            t = self.t(tname)
            ctype = "int32_t" if t.dtype == "int32" else "int8_t"
            self._const[tname] = self.array(layout.to_memory(np.asarray(t.data).reshape(t.shape)), ctype,
                                            f"constant '{comment(tname, 48)}' {_shape(t.shape)}", tname)
        return self._const[tname]

    def ref(self, tname: str, offset: int = 0):
        t = self.t(tname)
        if t.is_const:
            name = self.const(tname)
            return f"{name} + {offset}" if offset else name
        return Ref(tname, offset)

    def step(self, kernel, struct, fields, args, what, skip_if_same=None, scratch=0):
        self.steps.append(Step(kernel, struct, fields, args, what, self.node_index, skip_if_same, scratch, self.layer))


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _walk_fields(w) -> dict:
    bases, dims, strides = w
    s = [list(x) for x in strides] + [[0] * len(dims)] * (3 - len(strides))
    return {"ndim": len(dims), "dims": list(dims), "s": s}


def _requant(b: Builder, n, channels: int) -> dict:
    p = n.params
    y = b.t(n.outputs[0])
    shift = np.broadcast_to(np.asarray(p["shift"], np.int64).reshape(-1), (channels,))
    rq = {"multiplier": "0", "shift": b.array(shift, "int32_t", f"{b.layer} shifts", b.layer + "_shift"),
          "zp_out": y.zp, "act_min": int(p["act_min"]), "act_max": int(p["act_max"])}
    if p["requant"] != "shift":
        m = np.broadcast_to(np.asarray(p["multiplier"], np.int64).reshape(-1), (channels,))
        rq["multiplier"] = b.array(m, "int32_t", f"{b.layer} multipliers", b.layer + "_mult")
    elif not b.fpga:
        raise QDeployError(f"node '{n.name}' ({n.op}) uses shift requantisation on a q31 target")
    return rq


def _folded_bias(b: Builder, n, w: np.ndarray, zp: int) -> str:
    """bias - zp_x * sum(w) per output channel: the kernel then sums x * w over the whole
    receptive field, reading zp_x at padded taps (which contribute 0, as TFLite's)."""
    o = w.shape[0]
    bias = np.asarray(b.t(n.inputs[2]).data, np.int64) if len(n.inputs) > 2 and n.inputs[2] else np.zeros(o, np.int64)
    folded = bias - int(zp) * np.asarray(w, np.int64).reshape(o, -1).sum(1)
    # modulo 2**32: the kernel adds it with wrap-around, exact whenever the accumulator itself
    # fits int32 (as TFLite's int32 accumulation needs), even where the folded constant alone does not
    folded = ((folded + (1 << 31)) % (1 << 32)) - (1 << 31)
    return b.array(folded, "int32_t", f"{b.layer} bias - zp_x * sum(w) (mod 2**32)", b.layer + "_bias")


def _bias(b: Builder, n, channels: int) -> str:
    if len(n.inputs) > 2 and n.inputs[2]:
        return b.const(n.inputs[2])
    return b.array(np.zeros(channels), "int32_t", f"{b.layer} zero bias", b.layer + "_bias")


# ------------------------------------------------------------------ convolution family
def conv2d(b: Builder, n):
    a = n.attrs
    x, w, y = b.t(n.inputs[0]), b.t(n.inputs[1]), b.t(n.outputs[0])
    _, c, h, wd = x.shape
    _, o, oh, ow = y.shape
    kh, kw = w.shape[2], w.shape[3]
    g = int(a["group"])
    wdata = np.asarray(w.data)
    dw = bool(a.get("depthwise"))
    if dw:
        wmem = wdata[:, 0, :, :].transpose(1, 2, 0)      # [kh][kw][O]
    else:
        wmem = wdata.transpose(0, 2, 3, 1)               # OHWI
    fields = {"in_h": h, "in_w": wd, "in_c": c, "out_h": oh, "out_w": ow, "out_c": o,
              "k_h": kh, "k_w": kw, "stride_h": a["strides"][0], "stride_w": a["strides"][1],
              "dil_h": a["dilations"][0], "dil_w": a["dilations"][1],
              "pad_t": a["pads"][0], "pad_l": a["pads"][1],
              "groups": g, "in_cg": c // g, "out_cg": o // g,
              "depth_multiplier": int(a.get("depth_multiplier", 1)) if dw else 1,
              "in_zp": x.zp,
              "weights": b.array(wmem, "int8_t", f"{b.layer} weights", b.layer + "_w"),
              "bias": _bias(b, n, o) if dw else _folded_bias(b, n, wdata, x.zp), "rq": _requant(b, n, o)}
    kind = "depthwise" if dw else ("grouped " if g > 1 else "") + "conv"
    what = f"{kind} {kh}x{kw}/{a['strides'][0]} {_shape(x.shape)} -> {_shape(y.shape)}"
    if dw:
        b.step("qd_depthwise", "qd_conv_params", fields, [b.ref(n.inputs[0]), b.ref(n.outputs[0])], what)
        return
    direct = kh == kw == 1 and not any(a["pads"])   # every receptive field is one input pixel
    scratch = 0 if direct else kh * kw * (c // g)
    b.step("qd_conv", "qd_conv_params", fields, [b.ref(n.inputs[0]), b.ref(n.outputs[0]), "0" if direct else SCRATCH],
           what, scratch=scratch)


def transpose_conv2d(b: Builder, n):
    a = n.attrs
    x, w, y = b.t(n.inputs[0]), b.t(n.inputs[1]), b.t(n.outputs[0])
    _, c, h, wd = x.shape
    _, o, oh, ow = y.shape
    _, cg, kh, kw = w.shape
    g = int(a["group"])
    (sh, sw), (dh, dwl) = a["strides"], a["dilations"]
    top, left = a["pads"][0], a["pads"][1]

    def taps(out_size, in_size, k, s, d, pad):
        start, pairs = [0], []
        for oy in range(out_size):
            for ky in range(k):
                t = oy + pad - ky * d
                if t >= 0 and t % s == 0 and t // s < in_size:
                    pairs += [ky, t // s]
            start.append(len(pairs) // 2)
        return start, pairs
    ys, yt = taps(oh, h, kh, sh, dh, top)
    xs, xt = taps(ow, wd, kw, sw, dwl, left)
    fields = {"in_h": h, "in_w": wd, "in_c": c, "out_h": oh, "out_w": ow, "out_c": o, "k_h": kh, "k_w": kw,
              "groups": g, "in_cg": cg, "out_cg": o // g, "in_zp": x.zp,
              "ytab_start": b.array(ys, "int32_t", f"{b.layer} row taps", b.layer + "_ys"),
              "ytab": b.array(yt, "int32_t", f"{b.layer} (ky, iy) pairs", b.layer + "_yt"),
              "xtab_start": b.array(xs, "int32_t", f"{b.layer} column taps", b.layer + "_xs"),
              "xtab": b.array(xt, "int32_t", f"{b.layer} (kx, ix) pairs", b.layer + "_xt"),
              "weights": b.array(np.asarray(w.data).transpose(0, 2, 3, 1), "int8_t", f"{b.layer} weights", b.layer + "_w"),
              "bias": _bias(b, n, o), "rq": _requant(b, n, o)}
    b.step("qd_transpose_conv", "qd_tconv_params", fields, [b.ref(n.inputs[0]), b.ref(n.outputs[0])],
           f"transpose conv {kh}x{kw}/{sh} {_shape(x.shape)} -> {_shape(y.shape)}")


def fully_connected(b: Builder, n):
    x, w, y = b.t(n.inputs[0]), b.t(n.inputs[1]), b.t(n.outputs[0])
    m, k = w.shape
    if len(x.shape) != 2 or len(y.shape) != 2:
        raise QDeployError(f"node '{n.name}' (FullyConnected): input {_shape(x.shape)} is not 2-D; "
                           "the C bundle takes [1, K] (flatten first)")
    wdata = np.asarray(w.data)
    if n.inputs[0] in b.flat:   # columns in the NHWC order of the flattened tensor
        wdata = wdata[:, np.argsort(layout.offsets(b.flat[n.inputs[0]]).reshape(-1))]
    fields = {"in_features": k, "out_features": m, "in_zp": x.zp,
              "weights": b.array(wdata, "int8_t", f"{b.layer} weights", b.layer + "_w"),
              "bias": _folded_bias(b, n, np.asarray(w.data), x.zp), "rq": _requant(b, n, m)}
    b.step("qd_fully_connected", "qd_fc_params", fields, [b.ref(n.inputs[0]), b.ref(n.outputs[0])],
           f"fully connected {k} -> {m}")


# ------------------------------------------------------------------ element-wise
def _bcast_walk(b: Builder, out: str, ins: list[str]):
    y = b.t(out)
    arrs = [np.arange(_size(y.shape))] + [layout.broadcast_offsets(b.t(i).shape, y.shape) for i in ins]
    w = layout.walk(*arrs)
    if w is None:
        raise QDeployError(f"node '{b.layer}': broadcast of {[_shape(b.t(i).shape) for i in ins]} to "
                           f"{_shape(y.shape)} needs more than {layout.MAX_DIMS} dimensions")
    return w


def _same_layout(b: Builder, a: str, y: str) -> bool:
    return tuple(b.t(a).shape) == tuple(b.t(y).shape)


def eltwise(b: Builder, n):
    p = n.params
    y = b.t(n.outputs[0])
    op = {"Add": "QD_ADD", "Sub": "QD_SUB", "Mul": "QD_MUL", "Maximum": "QD_MAX", "Minimum": "QD_MIN"}[n.op]
    f = {"op": op, "zp1": 0, "zp2": 0, "zp_out": y.zp, "left_shift": 0,
         "multiplier1": 0, "shift1": 0, "multiplier2": 0, "shift2": 0, "multiplier_out": 0, "shift_out": 0,
         "a_shift": 0, "b_shift": 0, "out_shift": 0,
         "act_min": int(p["act_min"]), "act_max": int(p["act_max"])}
    if n.op in ("Maximum", "Minimum"):
        pass
    elif p.get("requant") == "shift":
        if not b.fpga:
            raise QDeployError(f"node '{n.name}' ({n.op}) uses shift arithmetic on a q31 target")
        f.update({k: int(p.get(k, 0)) for k in ("a_shift", "b_shift", "out_shift")})
    else:
        if b.fpga:
            raise QDeployError(f"node '{n.name}' ({n.op}) uses Q31 arithmetic on the fpga target")
        if n.op == "Mul":
            f.update(zp1=p["zp1"], zp2=p["zp2"], zp_out=p["zp_out"], multiplier_out=p["multiplier"],
                     shift_out=p["shift"])
        else:
            f.update({k: int(p[k]) for k in ("zp1", "zp2", "zp_out", "left_shift", "multiplier1", "shift1",
                                             "multiplier2", "shift2", "multiplier_out", "shift_out")})
    ins = list(n.inputs)
    first = ins[:2] if len(ins) >= 2 else ins * 2
    wk = _bcast_walk(b, n.outputs[0], first)
    fields = {**f, "walk": _walk_fields(wk)}
    (_, ba, bb) = wk[0]
    what = f"{n.op.lower()} {' , '.join(_shape(b.t(i).shape) for i in ins)} -> {_shape(y.shape)}"
    b.step("qd_eltwise", "qd_eltwise_params", fields,
           [b.ref(first[0], ba), b.ref(first[1], bb), b.ref(n.outputs[0])], what)
    for extra in ins[2:]:   # n-ary Maximum / Minimum: fold into the output
        wk = _bcast_walk(b, n.outputs[0], [n.outputs[0], extra])
        b.step("qd_eltwise", "qd_eltwise_params", {**f, "walk": _walk_fields(wk)},
               [b.ref(n.outputs[0]), b.ref(extra, wk[0][2]), b.ref(n.outputs[0])], what + " (more inputs)")
    if _same_layout(b, ins[0], n.outputs[0]):
        b.inplace[n.outputs[0]] = ins[0]


def prelu(b: Builder, n):
    p = n.params
    y = b.t(n.outputs[0])
    f = {"zp_in": 0, "zp_alpha": 0, "zp_out": y.zp, "multiplier_1": 0, "shift_1": 0, "multiplier_2": 0,
         "shift_2": 0, "pos_shift": 0, "neg_shift": 0, "act_min": int(p["act_min"]), "act_max": int(p["act_max"])}
    if p.get("requant") == "shift":
        f.update(pos_shift=int(p["pos_shift"]), neg_shift=int(p["neg_shift"]))
    else:
        f.update({k: int(p[k]) for k in ("zp_in", "zp_alpha", "zp_out", "multiplier_1", "shift_1",
                                         "multiplier_2", "shift_2")})
    wk = _bcast_walk(b, n.outputs[0], n.inputs[:2])
    _, bx, ba = wk[0]
    b.step("qd_prelu", "qd_prelu_params", {**f, "walk": _walk_fields(wk)},
           [b.ref(n.inputs[0], bx), b.ref(n.inputs[1], ba), b.ref(n.outputs[0])], f"prelu {_shape(y.shape)}")
    if _same_layout(b, n.inputs[0], n.outputs[0]):
        b.inplace[n.outputs[0]] = n.inputs[0]


def _unary(b: Builder, n, kernel: str, fields: dict, what: str):
    b.step(kernel, "qd_unary_params", fields, [b.ref(n.inputs[0]), b.ref(n.outputs[0])], what)
    b.inplace[n.outputs[0]] = n.inputs[0]


def requantize(b: Builder, n):
    p = n.params
    x, y = b.t(n.inputs[0]), b.t(n.outputs[0])
    shift = int(np.asarray(p["shift"]).reshape(-1)[0])
    mult = 0 if p["requant"] == "shift" else int(np.asarray(p["multiplier"]).reshape(-1)[0])
    _unary(b, n, "qd_requantize", {"n": _size(y.shape), "zp_in": x.zp, "zp_out": y.zp, "multiplier": mult,
                                   "shift": shift, "act_min": int(p["act_min"]), "act_max": int(p["act_max"])},
           f"requantize {_shape(y.shape)}")


def leaky_shift(b: Builder, n):
    p = n.params
    y = b.t(n.outputs[0])
    _unary(b, n, "qd_leaky_shift", {"n": _size(y.shape), "zp_out": y.zp, "pos_shift": int(p["pos_shift"]),
                                    "neg_multiplier": int(p["neg_multiplier"]), "neg_shift": int(p["neg_shift"]),
                                    "act_min": int(p["act_min"]), "act_max": int(p["act_max"])},
           f"leaky relu (shift) {_shape(y.shape)}")


def lut(b: Builder, n):
    y = b.t(n.outputs[0])
    if b.t(n.inputs[0]).dtype != "int8" or y.dtype != "int8":
        raise QDeployError(f"node '{n.name}' (Lut): the C bundle's tables map int8 to int8")
    table = b.array(np.asarray(n.params["table"]), "int8_t", f"{b.layer} table ({comment(n.attrs.get('func', ''), 24)})",
                    b.layer + "_lut")
    b.step("qd_lut", None, None, [table, str(_size(y.shape)), b.ref(n.inputs[0]), b.ref(n.outputs[0])],
           f"table {comment(n.attrs.get('func', ''), 24)} {_shape(y.shape)}")
    b.inplace[n.outputs[0]] = n.inputs[0]


def softmax(b: Builder, n):
    if b.fpga:
        raise QDeployError(f"node '{n.name}' (Softmax): the fpga target runs softmax on the host")
    x = b.t(n.inputs[0])
    axis = n.attrs.get("axis", -1) % len(x.shape)
    off = np.moveaxis(layout.offsets(x.shape), axis, -1)
    rows = off.reshape(-1, x.shape[axis])
    stride = int(rows[0, 1] - rows[0, 0]) if rows.shape[1] > 1 else 1
    if not np.array_equal(rows, rows[:, :1] + stride * np.arange(rows.shape[1])):
        raise QDeployError(f"node '{n.name}' (Softmax): axis {axis} has no constant stride in memory")
    wk = layout.walk(rows[:, 0], rows[:, 0])
    p = n.params
    b.step("qd_softmax", "qd_softmax_params",
           {"multiplier": int(p["multiplier"]), "left_shift": int(p["left_shift"]), "diff_min": int(p["diff_min"]),
            "len": int(x.shape[axis]), "stride": stride, "rows": _walk_fields(wk)},
           [b.ref(n.inputs[0]), b.ref(n.outputs[0])], f"softmax {_shape(x.shape)} axis {axis}")


# ------------------------------------------------------------------ pooling
def _pool_fields(b: Builder, n) -> dict:
    a, p = n.attrs, n.params
    x, y = b.t(n.inputs[0]), b.t(n.outputs[0])
    d = a.get("dilations", [1, 1])
    return {"in_h": x.shape[2], "in_w": x.shape[3], "c": x.shape[1], "out_h": y.shape[2], "out_w": y.shape[3],
            "k_h": a["kernel"][0], "k_w": a["kernel"][1], "stride_h": a["strides"][0], "stride_w": a["strides"][1],
            "dil_h": d[0], "dil_w": d[1], "pad_t": a["pads"][0], "pad_l": a["pads"][1],
            "act_min": int(p["act_min"]), "act_max": int(p["act_max"]),
            "n_counts": 0, "counts": "0", "multiplier": "0", "shift": "0"}


def max_pool(b: Builder, n):
    a = n.attrs
    b.step("qd_max_pool", "qd_pool_params", _pool_fields(b, n), [b.ref(n.inputs[0]), b.ref(n.outputs[0])],
           f"max pool {a['kernel'][0]}x{a['kernel'][1]}/{a['strides'][0]} {_shape(b.t(n.inputs[0]).shape)}")


def avg_pool(b: Builder, n):
    a, p = n.attrs, n.params
    f = _pool_fields(b, n)
    if p.get("requant") == "shift":
        f.update(n_counts=len(p["counts"]),
                 counts=b.array(p["counts"], "int32_t", f"{b.layer} window counts", b.layer + "_counts"),
                 multiplier=b.array(p["multiplier"], "int32_t", f"{b.layer} multipliers", b.layer + "_mult"),
                 shift=b.array(p["shift"], "int32_t", f"{b.layer} shifts", b.layer + "_shift"))
    elif b.fpga:
        raise QDeployError(f"node '{n.name}' (AvgPool) divides by the window count; the fpga target needs "
                           "the shift form (quantize for --target fpga again)")
    b.step("qd_avg_pool", "qd_pool_params", f, [b.ref(n.inputs[0]), b.ref(n.outputs[0])],
           f"average pool {a['kernel'][0]}x{a['kernel'][1]}/{a['strides'][0]} {_shape(b.t(n.inputs[0]).shape)}")


def mean(b: Builder, n):
    p = n.params
    x = b.t(n.inputs[0])
    if tuple(n.attrs.get("axes", (2, 3))) != (2, 3) or len(x.shape) != 4:
        raise QDeployError(f"node '{n.name}' (Mean): the C bundle reduces over H, W of a 4-D tensor only")
    f = {"hw": x.shape[2] * x.shape[3], "c": x.shape[1], "zp_in": int(p.get("zp_in", 0)),
         "zp_out": int(p.get("zp_out", 0)), "multiplier": int(p["multiplier"]), "shift": int(p["shift"]),
         "act_min": int(p["act_min"]), "act_max": int(p["act_max"])}
    b.step("qd_mean", "qd_mean_params", f, [b.ref(n.inputs[0]), b.ref(n.outputs[0])], f"mean over HxW {_shape(x.shape)}")


def resize(b: Builder, n):
    if n.attrs["mode"] == "nearest":
        return move(b, n)
    p = n.params
    x, y = b.t(n.inputs[0]), b.t(n.outputs[0])
    tabs = []
    for ax, (i, o) in enumerate(((x.shape[2], y.shape[2]), (x.shape[3], y.shape[3]))):
        v, lo, hi = resize_recipe._interp_axis(i, o, bool(p["align_corners"]), bool(p["half_pixel_centers"]))
        frac = v - (lo << 10)
        tabs.append(np.stack([lo, hi, frac], 1))
    b.step("qd_resize_bilinear", "qd_resize_params",
           {"in_h": x.shape[2], "in_w": x.shape[3], "c": x.shape[1], "out_h": y.shape[2], "out_w": y.shape[3],
            "y": b.array(tabs[0], "int32_t", f"{b.layer} rows (y0, y1, fy)", b.layer + "_y"),
            "x": b.array(tabs[1], "int32_t", f"{b.layer} columns (x0, x1, fx)", b.layer + "_x")},
           [b.ref(n.inputs[0]), b.ref(n.outputs[0])], f"bilinear resize {_shape(x.shape)} -> {_shape(y.shape)}")


# ------------------------------------------------------------------ data movement
_SHIFT = np.int64(1) << 32


def _simulate(b: Builder, n, ins: list[np.ndarray]) -> list[np.ndarray]:
    """The op's own numpy semantics on encoded source positions (input k, offset)."""
    if n.op == "Concat":
        return [np.concatenate(ins, axis=n.attrs["axis"])]
    if n.op == "Pad" and n.attrs.get("mode", "constant") == "constant":
        p, r = n.attrs["pads"], ins[0].ndim
        return [np.pad(ins[0], [(p[i], p[i + r]) for i in range(r)], constant_values=-1)]
    fn = interpreter.KERNELS[n.op]
    return fn(n, ins + [None] * (len(n.inputs) - len(ins)), b.qg)


def find_flattens(qg) -> dict:
    """Flatten -> FullyConnected without a transpose at run time: a Reshape [1,C,H,W] ->
    [1, C*H*W] read only by FullyConnected nodes keeps the 4-D tensor's NHWC byte order
    (the reshape is then a no-op), and those layers' weight columns are permuted to match
    (:func:`fully_connected`). Returns {2-D tensor: 4-D shape}."""
    readers = qg.readers()
    flat = {}
    for n in qg.nodes:
        if n.op != "Reshape":
            continue
        x, y = qg.tensors[n.inputs[0]], qg.tensors[n.outputs[0]]
        rs = readers.get(n.outputs[0], [])
        if (len(x.shape) == 4 and x.shape[0] == 1 and x.shape[2] * x.shape[3] > 1 and tuple(y.shape) ==
                (1, int(np.prod(x.shape[1:]))) and rs and not x.is_const
                and all(r.op == "FullyConnected" and r.inputs[0] == n.outputs[0] for r in rs)):
            flat[n.outputs[0]] = tuple(x.shape)
    return flat


MOVES = ("Concat", "Split", "Slice", "Pad", "Reshape", "Transpose", "DepthToSpace", "SpaceToDepth")


def _is_move(b: Builder, n) -> bool:
    return (n.op in MOVES or (n.op == "Resize" and n.attrs.get("mode") == "nearest")) \
        and not (n.op == "Reshape" and n.outputs[0] in b.flat)


def _encoded(b: Builder, name: str) -> np.ndarray:
    """Every logical element of ``name`` as (source tensor id << 32 | byte offset)."""
    if name in b.virtual:
        return b.virtual[name]
    if name not in b.tids:
        b.tids.append(name)
    return layout.offsets(b.t(name).shape) + (np.int64(b.tids.index(name)) << 32)


def _fusable(b: Builder, n, out: str) -> bool:
    """Data movement into a tensor that only data movement reads is composed with its
    readers instead of stored (ShuffleNet's reshape/transpose/reshape, SPP's flatten +
    concat): no copy, no buffer. Not across a padding fill or a concat's clamp."""
    rs = b.readers.get(out, [])
    narrowed = n.op == "Concat" and (int(n.params.get("act_min", -128)) > -128 or int(n.params.get("act_max", 127)) < 127)
    return bool(rs) and n.op != "Pad" and not narrowed and all(_is_move(b, r) for r in rs)


def move(b: Builder, n):
    if n.op == "Reshape" and n.outputs[0] in b.flat and n.inputs[0] not in b.virtual:   # NHWC order kept
        size = _size(b.t(n.outputs[0]).shape)
        b.step("qd_copy", "qd_walk", {"ndim": 1, "dims": [size], "s": [[1], [1], [0]]},
               [b.ref(n.inputs[0]), b.ref(n.outputs[0])], f"flatten {_shape(b.t(n.inputs[0]).shape)} (NHWC order kept)",
               skip_if_same=(n.outputs[0], n.inputs[0]))
        b.inplace[n.outputs[0]] = n.inputs[0]
        return
    srcs = list(n.inputs) if n.op == "Concat" else n.inputs[:1]
    outs = _simulate(b, n, [_encoded(b, s) for s in srcs])
    for out, v in zip(n.outputs, outs):
        y = b.t(out)
        v = np.asarray(v, np.int64).reshape(y.shape)
        if _fusable(b, n, out):
            b.virtual[out] = v
            continue
        vm = layout.to_memory(v)
        ids = sorted({int(i) for i in np.unique(vm[vm >= 0] >> 32)})
        what = f"{n.op.lower()} {', '.join(_shape(b.t(s).shape) for s in srcs)} -> {_shape(y.shape)}"
        if (vm < 0).any():
            b.step("qd_fill", None, None, [str(vm.size), f"(int8_t){int(n.params['value'])}", b.ref(out)],
                   f"{what}: padding value")
        for k in ids:
            s = b.tids[k]
            mask = (vm >= 0) & ((vm >> 32) == k)
            dst = np.flatnonzero(mask)
            src = vm[mask] & (_SHIFT - 1)
            w = layout.walk(dst, src)
            identity = (len(ids) == 1 and dst.size == vm.size == _size(b.t(s).shape)
                        and np.array_equal(src, dst))
            if w is not None:
                (bd, bs), dims, strides = w
                b.step("qd_copy", "qd_walk", _walk_fields((None, dims, strides)),
                       [b.ref(s, bs), b.ref(out, bd)], what, skip_if_same=(out, s) if identity else None)
            elif np.array_equal(dst, np.arange(dst[0], dst[0] + dst.size)):
                idx = b.array(src, "int32_t", f"{b.layer} gather index", b.layer + "_index")
                b.step("qd_gather", None, None, [str(dst.size), idx, b.ref(s), b.ref(out, int(dst[0]))], what)
            else:
                raise QDeployError(f"node '{n.name}' ({n.op}): this data movement is neither a strided copy "
                                   f"nor a gather in the bundle's NHWC layout")
            if identity and not b.t(s).is_const:
                b.inplace[out] = s
    if n.op == "Concat":
        lo, hi = int(n.params.get("act_min", -128)), int(n.params.get("act_max", 127))
        if lo > -128 or hi < 127:
            b.step("qd_clamp", None, None, [str(_size(b.t(n.outputs[0]).shape)), str(lo), str(hi), b.ref(n.outputs[0])],
                   "concat: fused activation")


LOWER = {
    "Conv2D": conv2d, "TransposeConv2D": transpose_conv2d, "FullyConnected": fully_connected,
    "Add": eltwise, "Sub": eltwise, "Mul": eltwise, "Maximum": eltwise, "Minimum": eltwise,
    "PRelu": prelu, "Requantize": requantize, "LeakyShift": leaky_shift, "Lut": lut, "Softmax": softmax,
    "MaxPool": max_pool, "AvgPool": avg_pool, "Mean": mean, "Resize": resize,
    "Concat": move, "Split": move, "Slice": move, "Pad": move, "Reshape": move, "Transpose": move,
    "DepthToSpace": move, "SpaceToDepth": move,
}
