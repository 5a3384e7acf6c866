"""Integer-exact ONNX subgraphs of the reference's integer recipes, for the QDQ
model of the ``arm`` profile (TFLite numerics: Q31 multipliers with double
rounding, TFLite's Add/Sub/Mul/PRelu/Mean/AvgPool/Softmax/Resize recipes).

Why: onnxruntime's int8 kernels requantise with a float32 scale and round half
to even. The arm reference rounds twice (``SaturatingRoundingDoublingHighMul``
to an integer at ``2**-shift`` resolution, then ``RoundingDivideByPOT`` half
away from zero): whenever the first rounding lands on a tie of the second, the
two differ by 1 LSB (measured: 0.06-0.4 % of every conv's outputs, 13 % of
QLinearGlobalAveragePool's, 2.8 % of the bilinear Resize's). In the random-weight
corpus nets those differences grow to 27-100 % within 1 LSB end to end, max
21 LSB. So on arm every op with its own rounding is emitted as ONNX
arithmetic on exact integers (int32/int64, or float32/float64 where every
value and every partial sum is an integer the type holds exactly) that
computes the reference's integers, and ends in the QGraph's int8 tensor (which the next node reads directly or through its own
DequantizeLinear):

* ``Conv2D``: the integer sums by a float32 ``Conv`` of ``x - zp`` (a
  DequantizeLinear with scale 1) and the int8 weights, exact because no sum
  can reach 2**24 (bounded from the weights; MLAS's float conv is several
  times faster than its ConvInteger), else ``ConvInteger``;
  ``FullyConnected``: ``MatMulInteger``; ``TransposeConv2D``: float
  ``ConvTranspose`` (same bound, checked); then :func:`requant` (the bias
  folds into its constants);
* :func:`requant` is ``MultiplyByQuantizedMultiplier``: srdhm is ``floor((x *
  m + 2**30) / 2**31)`` (half up), RoundingDivideByPOT by ``r`` is ``floor((y +
  2**(r-1) - [y < 0]) / 2**r)``, and the two nested power-of-two floors merge
  into one. In float64 (:func:`mbqm_double`: the multiplier split in 16-bit
  halves so that every product and sum is an exact double below 2**52) where
  the accumulator's bound allows, else in int64 (:func:`requant_int64`: one
  truncating ``Div`` of a value made non-negative); then ``+ zp``, ``Clip``,
  ``Cast``;
* ``Add``/``Sub``: each input's ``mbqm((q - zp) << 20, m_i, s_i)`` by
  :func:`mbqm_double`, the sum through :func:`requant`; ``Mul``: ``(a - zp_a)
  * (b - zp_b)`` then :func:`requant`; ``Mean``: ``ReduceSum`` then
  :func:`requant`; ``AvgPool``: window sums by a ones ``ConvInteger``, then
  the rounded division by the valid count;
  ``Requantize``: a 256-entry int8 table built by the reference kernel itself;
  the input ``Quantize``: ``x / scale`` in float32, rounded half away from zero
  in float64 (onnxruntime's QuantizeLinear rounds ties to even);
* bilinear ``Resize`` (both profiles: onnxruntime's own int8/uint8 bilinear
  interpolation is not TFLite's Q10 recipe, which the reference follows):
  the row pass a float32 MatMul by the Q10 weight matrix, the column pass
  Gathers of the two source rows (float64; every value an exact integer),
  ``acc / 2**20`` rounded half away from zero.

The ``ConvInteger``/``MatMulInteger`` fallbacks take int8 x int8 (MLAS's S8S8
kernels, not the U8S8 ones that can saturate on x86 without VNNI; bit-exact on
AVX-512 VNNI and on an AVX2 CPU without VNNI, tests/emit/test_qdq_exact.py); the
default float32 Conv path has no such caveat.
``PRelu``: both of TFLite's branches by :func:`mbqm_double`, a ``Where`` on
the sign. ``Softmax`` (:func:`softmax`): tables of the row difference, the row
sum, gemmlowp's Newton reciprocal per row in int64.
"""
from __future__ import annotations

import numpy as np

from ..errors import QDeployError
from ..quant import recipes
from ..quant.interpreter import run_node

INT32, INT64, FLOAT, DOUBLE = 6, 7, 1, 11
_ONNX_OF = {"int8": 3, "uint8": 2}
_SAFE = 1 << 63     # every int64 intermediate stays below this
FLOAT_EXACT = 1 << 24   # integers below this are exact in float32, and so are their sums
FLOAT_CONV = True       # Conv2D sums by float32 Conv where exact (False: always ConvInteger)
DOUBLE_REQUANT = True   # requantisation in float64 where exact (False: always int64)
SINGLE_PRODUCT = True   # ... in one float64 product where that is exact (False: the split multiplier)


def _range(b, name: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(b.qg.tensors[name].dtype))
    return int(info.min), int(info.max)


def _maxabs(b, name: str) -> int:
    """max |q - zp| over the tensor's dtype."""
    lo, hi = _range(b, name)
    zp = b.qg.tensors[name].zp
    return max(zp - lo, hi - zp)


def _i64(v) -> np.ndarray:
    return np.asarray(v, np.int64)


def cast(b, x: str, to: int, name: str) -> str:
    y = b.unique(name)
    b.node("Cast", [x], [y], name, to=to)
    return y


def wide(b, name: str, reader: str) -> str:
    """An int64 view of int tensor ``name``."""
    t = b.qg.tensors[name]
    if t.is_const:
        return b.const(f"{name}_i64", _i64(t.data))
    return cast(b, name, INT64, f"{name}_i64_{reader}")


def table_index(b, name: str, reader: str) -> str:
    """Gather indices of int tensor ``name`` into a table rotated by
    :func:`rotate` (int8 q >= 0 -> q, q < 0 -> 256 + q: Gather's negative indices)."""
    return cast(b, name, INT32, f"{name}_index_{reader}")


def rotate(table: np.ndarray, dtype: str) -> np.ndarray:
    """A table indexed by ``q - qmin`` re-ordered for :func:`table_index`."""
    return np.roll(table, -128) if dtype == "int8" else table


def all_values(dtype: str) -> np.ndarray:
    info = np.iinfo(np.dtype(dtype))
    return np.arange(info.min, info.max + 1).astype(dtype)


def _channels(multiplier, shift, add):
    """Per-channel Python ints: (m * 2**left, right shift, add)."""
    m, s, a = (_i64(v).reshape(-1) for v in (multiplier, shift, add))
    n_ch = max(len(m), len(s), len(a))
    m, s, a = (np.resize(v, n_ch) for v in (m, s, a))
    return ([int(v) << max(int(sh), 0) for v, sh in zip(m, s)], [max(-int(v), 0) for v in s], [int(v) for v in a])


def _double_plan(bound: int, mp: list, right: list, zp: int):
    """Whether :func:`mbqm_double` is exact for ``|y| <= bound`` (every sum below
    2**52), and whether ``zp`` folds into its constants."""
    t = max(((1 << (r - 1 + 15)) if r else 0) for r in right)
    fold = max(abs(zp) << (15 + r) for r in right) + t
    s_max = bound + (1 << 14) + t
    ok = bound << 16 < 1 << 52 and bound * max(v >> 16 for v in mp) + s_max < 1 << 52
    return ok, ok and bound * max(v >> 16 for v in mp) + s_max + fold < 1 << 52


def _single_constants(mp: list, right: list, add: list, zp: int) -> tuple[list, list]:
    """:func:`mbqm_single`'s per-channel constants for ``V >= 0`` and ``V < 0``."""
    pos = [a * m + (1 << 30) + (((1 << (r - 1)) << 31) if r else 0) + (zp << (31 + r))
           for m, r, a in zip(mp, right, add)]
    return pos, [c - ((1 << 31) if r else 0) for c, r in zip(pos, right)]


def _single_plan(bound_x: int, mp: list, right: list, add: list, zp: int) -> bool:
    """Whether :func:`mbqm_single` is exact for ``|x| <= bound_x``: ``x * m`` and
    its sum with the constants stay below 2**53."""
    pos, neg = _single_constants(mp, right, add, zp)
    return bound_x * max(mp) + max(abs(c) for c in pos + neg) < 1 << 53


def mbqm_single(b, x: str, mp: list, right: list, add: list, name: str, shape=(), zp: int = 0) -> str:
    """``mbqm(x + add) + zp`` of float64 ``x`` in one product, where
    :func:`_single_plan` holds: ``floor((x * m + C) / 2**(31 + r))``, ``C = add *
    m + 2**30 + (h - [V < 0]) * 2**31 + zp * 2**(31 + r)`` (the merged floors of
    :func:`requant_int64`), every value an exact double."""
    def c(tag, vals):
        return b.const(f"{name}_{tag}", np.asarray(vals, np.float64).reshape(shape if len(vals) > 1 else ()))

    pos, neg_c = _single_constants(mp, right, add, zp)
    theta = [(-((1 << 30) // m) if m else -2.0 ** 62) - a for m, a in zip(mp, add)]   # V < 0 <=> x < theta
    p, neg, t, v, sc, z = (b.unique(f"{name}_{k}") for k in ("product", "negative", "constant", "sum", "scaled",
                                                             "floor"))
    b.node("Mul", [x, c("m", mp)], [p], p)
    b.node("Less", [x, c("theta", theta)], [neg], neg)
    b.node("Where", [neg, c("c_neg", neg_c), c("c_pos", pos)], [t], t)
    b.node("Add", [p, t], [v], v)
    b.node("Mul", [v, c("pot", [2.0 ** -(31 + r) for r in right])], [sc], sc)
    b.node("Floor", [sc], [z], z)
    return z


def mbqm_double(b, y: str, mp: list, right: list, name: str, shape=(), zp: int = 0) -> str:
    """``mbqm(y) + zp`` of float64 ``y`` (exact integers) with per-channel ``mp``
    (the Q31 multiplier times 2**left) and right shifts, in float64, exactly
    (:func:`_double_plan` says when). With ``mp = mh * 2**16 + ml`` and ``h =
    2**(r-1)`` (0 when r = 0), the merged floors of :func:`requant` split into
    ``Bf = floor(y * ml / 2**16 + 2**14)`` and ``floor((y * mh + Bf + (h - [V <
    0]) * 2**15) / 2**(15 + r))``: every product and sum an exact double."""
    def c(tag, vals):
        return b.const(f"{name}_{tag}", np.asarray(vals, np.float64).reshape(shape if len(vals) > 1 else ()))

    mh, ml = [v >> 16 for v in mp], [v & 0xFFFF for v in mp]
    theta = [-((1 << 30) // v) if v else -2.0 ** 62 for v in mp]          # V < 0  <=>  y < theta
    tpos = [((1 << (r - 1 + 15)) if r else 0) + (zp << (15 + r)) for r in right]
    tneg = [((((1 << (r - 1)) - 1) << 15) if r else 0) + (zp << (15 + r)) for r in right]
    lo, lo1, bf, neg, t, ssum, hi, ss, z, zf = (b.unique(f"{name}_{k}") for k in (
        "low", "low_nudged", "low_floor", "negative", "tie", "sum", "high", "sum_scaled", "total", "floor"))
    b.node("Mul", [y, c("ml", [v / 65536.0 for v in ml])], [lo], lo)
    b.node("Add", [lo, b.const(f"{name}_two14", np.float64(1 << 14))], [lo1], lo1)
    b.node("Floor", [lo1], [bf], bf)
    b.node("Less", [y, c("theta", theta)], [neg], neg)
    b.node("Where", [neg, c("tie_neg", tneg), c("tie_pos", tpos)], [t], t)
    b.node("Add", [bf, t], [ssum], ssum)
    b.node("Mul", [y, c("mh", [v * 2.0 ** -(15 + r) for v, r in zip(mh, right)])], [hi], hi)
    b.node("Mul", [ssum, c("pot", [2.0 ** -(15 + r) for r in right])], [ss], ss)
    b.node("Add", [hi, ss], [z], z)
    b.node("Floor", [z], [zf], zf)
    return zf


def requant(b, acc: str, bound: int, multiplier, shift, out: str, dtype: str, zp_out: int, lo: int, hi: int,
            axis_shape=(), add=0, name: str = "", is_double: bool = False) -> None:
    """``out = clamp(mbqm(acc + add, multiplier, shift) + zp_out, lo, hi)``, bit for
    bit ``fixedpoint.mbqm``; ``acc`` holds exact integers (any numeric type;
    ``is_double``: already float64) with ``|acc + add| <= bound``; per-channel
    ``multiplier``/``shift``/``add`` are shaped ``axis_shape``; ``out`` is
    written as ``dtype`` (int8/uint8). In float64 with one product
    (:func:`mbqm_single`) when ``|acc| * m`` stays below 2**53, else with the
    multiplier split (:func:`mbqm_double`) when every sum stays below 2**52,
    else in int64 (:func:`requant_int64`)."""
    mp, right, a = _channels(multiplier, shift, add)
    shape = axis_shape if len(mp) > 1 else ()
    bound_x = bound + max(abs(v) for v in a)
    if DOUBLE_REQUANT and SINGLE_PRODUCT and _single_plan(bound_x, mp, right, a, zp_out):
        y = acc if is_double else cast(b, acc, DOUBLE, f"{name}_acc_double")
        z = mbqm_single(b, y, mp, right, a, name, shape, zp_out)
        zc = b.unique(f"{name}_clamped")
        b.node("Clip", [z, b.const(f"{name}_lo", np.float64(lo)), b.const(f"{name}_hi", np.float64(hi))], [zc], zc)
        b.node("Cast", [zc], [out], f"{name}_cast", to=_ONNX_OF[dtype])
        return
    ok, fold = _double_plan(bound, mp, right, zp_out)
    if not (ok and DOUBLE_REQUANT):
        wide64 = cast(b, acc, INT64, f"{name}_acc_int64")
        return requant_int64(b, wide64, bound, multiplier, shift, out, dtype, zp_out, lo, hi, axis_shape, add, name)
    y = acc if is_double else cast(b, acc, DOUBLE, f"{name}_acc_double")
    if any(a):
        ya = b.unique(f"{name}_biased")
        b.node("Add", [y, b.const(f"{name}_bias", np.asarray(a, np.float64).reshape(shape if len(a) > 1 else ()))],
               [ya], ya)
        y = ya
    z = mbqm_double(b, y, mp, right, name, shape, zp_out if fold else 0)
    if not fold:
        zz = b.unique(f"{name}_offset")
        b.node("Add", [z, b.const(f"{name}_zp", np.float64(zp_out))], [zz], zz)
        z = zz
    zc = b.unique(f"{name}_clamped")
    b.node("Clip", [z, b.const(f"{name}_lo", np.float64(lo)), b.const(f"{name}_hi", np.float64(hi))], [zc], zc)
    b.node("Cast", [zc], [out], f"{name}_cast", to=_ONNX_OF[dtype])


def requant_int64(b, acc: str, bound: int, multiplier, shift, out: str, dtype: str, zp_out: int, lo: int, hi: int,
            axis_shape=(), add=0, name: str = "") -> None:
    """``out = clamp(mbqm(acc + add, multiplier, shift) + zp_out, lo, hi)`` as
    int64 ONNX arithmetic, bit for bit ``fixedpoint.mbqm``; ``acc`` is int64
    with ``|acc + add| <= bound``; per-channel ``multiplier``/``shift``/``add``
    are shaped ``axis_shape``; ``out`` is written as ``dtype`` (int8/uint8).

    With ``V = (acc + add) * m * 2**left + 2**30``, srdhm is ``floor(V / 2**31)``
    and RoundingDivideByPOT by ``r`` of that is ``floor((y + h - [y < 0]) / 2**r)``
    (``h = 2**(r-1)``, 0 when r = 0; y < 0 exactly when V < 0); nested floors
    of powers of two merge, so ``mbqm = floor((V + (h - [V < 0]) * 2**31) /
    2**(31 + r))``: one truncating ``Div`` of a value made non-negative by
    ``K * 2**(31 + r)``, minus K."""
    m, s, a = (_i64(v).reshape(-1) for v in (multiplier, shift, add))
    n_ch = max(len(m), len(s), len(a))
    m, s, a = (np.resize(v, n_ch) for v in (m, s, a))
    right = [max(-int(v), 0) for v in s]
    mp = [int(v) << max(int(sh), 0) for v, sh in zip(m, s)]       # m * 2**left (the left shift folded in)
    hpos = [(1 << (r - 1 + 31)) if r > 0 else 0 for r in right]    # h * 2**31
    need = bound * max(mp) + (1 << 30) + max(hpos) + (1 << 31)
    big = [((need >> (31 + r)) + 1) << (31 + r) for r in right]     # K * 2**(31+r) > need
    base = [int(v) * p + (1 << 30) + k for v, p, k in zip(a, mp, big)]
    top = max(k + need for k in big)
    if top >= _SAFE:
        raise QDeployError(f"node '{name}': its integer requantisation needs more than 63 bits "
                           f"(|acc| up to {bound}); emit the qdq artefact with exact=False")
    shape = axis_shape if n_ch > 1 else ()

    def c(tag, vals):
        return b.const(f"{name}_{tag}", _i64(vals).reshape(shape))

    t1, v, neg, t, u, z = (b.unique(f"{name}_{x}") for x in ("scaled", "nudged", "negative", "half", "rounded",
                                                               "requantized"))
    b.node("Mul", [acc, c("multiplier", mp)], [t1], t1)
    b.node("Add", [t1, c("nudge", base)], [v], v)                      # V + K * 2**(31+r)
    b.node("Less", [v, c("K", big)], [neg], neg)                      # V < 0
    b.node("Where", [neg, c("half_neg", [h - (1 << 31) if r > 0 else 0 for h, r in zip(hpos, right)]),
                     c("half_pos", hpos)], [t], t)
    b.node("Add", [v, t], [u], u)
    b.node("Div", [u, c("pot", [1 << (31 + r) for r in right])], [z], z)   # mbqm + K
    y, yc = b.unique(f"{name}_offset"), b.unique(f"{name}_clamped")
    b.node("Add", [z, c("offset", [zp_out - (k >> (31 + r)) for k, r in zip(big, right)])], [y], y)
    b.node("Clip", [y, b.const(f"{name}_lo", _i64(lo)), b.const(f"{name}_hi", _i64(hi))], [yc], yc)
    b.node("Cast", [yc], [out], f"{name}_cast", to=_ONNX_OF[dtype])


def _act(n, b) -> tuple[int, int]:
    lo, hi = _range(b, n.outputs[0])
    return int(n.params.get("act_min", lo)), int(n.params.get("act_max", hi))


def _out_requant(b, n, acc, bound, axis_shape=(), add=0, m=None, s=None, out=None, is_double=False) -> None:
    lo, hi = _act(n, b)
    t = b.qg.tensors[n.outputs[0]]
    requant(b, acc, bound, n.params["multiplier"] if m is None else m, n.params["shift"] if s is None else s,
            out or n.outputs[0], t.dtype, t.zp, lo, hi, axis_shape, add, n.name, is_double)


def _weight_bound(w: np.ndarray) -> int:
    """max over output channels of sum |w| (axis 0 = output channel)."""
    return int(np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1).max())


# ------------------------------------------------------------------ handlers (arm profile)
def _centred_float(b, x: str, reader: str) -> str:
    """float32 ``x - zp`` of int tensor ``x`` (a DequantizeLinear with scale 1: exact)."""
    t = b.qg.tensors[x]
    y = b.unique(f"{x}_centred_{reader}")
    b.node("DequantizeLinear", [x, b.const(f"{reader}_one", np.float32(1.0)),
                                b.const(f"{x}_zero_point_{reader}", np.dtype(t.dtype).type(t.zp))], [y], y)
    return y


def conv(b, n) -> None:
    """The integer sums: a float32 ``Conv`` of ``x - zp`` and the int8 weights when
    no sum can reach 2**24 (every partial sum is then an exact float32 integer;
    MLAS's float conv is several times faster than its ConvInteger), else
    ``ConvInteger``; then :func:`requant` with the bias folded in."""
    a, x = n.attrs, n.inputs[0]
    w, bias = b.qg.tensors[n.inputs[1]], b.qg.tensors[n.inputs[2]]
    t = b.qg.tensors[x]
    bb = _i64(bias.data)
    sums = _weight_bound(w.data) * _maxabs(b, x)
    geo = dict(kernel_shape=list(w.shape[2:]), strides=list(a["strides"]), pads=list(a["pads"]),
               dilations=list(a["dilations"]), group=int(a["group"]))
    part = b.unique(f"{n.outputs[0]}_sums")
    if FLOAT_CONV and sums < FLOAT_EXACT:
        b.node("Conv", [_centred_float(b, x, n.name), b.const(f"{w.name}_float", w.data.astype(np.float32))],
               [part], n.name, **geo)
    else:
        b.node("ConvInteger", [x, b.const(w.name, w.data.astype(np.int8)),
                               b.const(f"{x}_zero_point_{n.name}", np.dtype(t.dtype).type(t.zp))], [part], n.name, **geo)
    _out_requant(b, n, part, sums + int(np.abs(bb).max(initial=0)), (1, -1, 1, 1), add=bb)


def fully_connected(b, n) -> None:
    x = n.inputs[0]
    w, bias = b.qg.tensors[n.inputs[1]], b.qg.tensors[n.inputs[2]]
    t = b.qg.tensors[x]
    acc = b.unique(f"{n.outputs[0]}_acc32")
    b.node("MatMulInteger", [x, b.const(f"{w.name}_t", np.ascontiguousarray(w.data.astype(np.int8).T)),
                             b.const(f"{x}_zero_point_{n.name}", np.dtype(t.dtype).type(t.zp))], [acc], n.name)
    bb = _i64(bias.data)
    bound = _weight_bound(w.data) * _maxabs(b, x) + int(np.abs(bb).max(initial=0))
    _out_requant(b, n, acc, bound, (1, -1), add=bb)


def conv_transpose(b, n) -> None:
    a, x = n.attrs, n.inputs[0]
    w, bias = b.qg.tensors[n.inputs[1]], b.qg.tensors[n.inputs[2]]
    o, cg, kh, kw = w.data.shape
    g = int(a["group"])
    bound = _weight_bound(w.data) * _maxabs(b, x)
    # every output is a sum of at most (taps per output) products; its partial sums are below
    # sum over input channels of |w| * max|x - zp| <= bound: float32 is exact below 2**24
    if bound >= FLOAT_EXACT:
        raise QDeployError(f"node '{n.name}' (TransposeConv2D): its sums may reach {bound} >= 2**24, beyond "
                           "float32's exact integers; emit the qdq artefact with exact=False")
    onnx_w = w.data.reshape(g, o // g, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(g * cg, o // g, kh, kw)
    accf = b.unique(f"{n.outputs[0]}_accf")
    b.node("ConvTranspose", [_centred_float(b, x, n.name), b.const(f"{w.name}_float", onnx_w.astype(np.float32))], [accf], n.name,
           kernel_shape=[kh, kw], strides=list(a["strides"]), pads=list(a["pads"]),
           dilations=list(a["dilations"]), group=g, output_padding=list(a.get("output_padding", [0, 0])))
    bb = _i64(bias.data)
    _out_requant(b, n, accf, bound + int(np.abs(bb).max(initial=0)), (1, -1, 1, 1), add=bb)


def _scaled(b, name: str, reader: str, m: int, s: int, zp: int, left: int) -> tuple[str, int]:
    """``mbqm_smaller_than_one((q - zp) << left, m, s)`` of int tensor ``name``
    (ADD's scaled input) as a float64 tensor: :func:`mbqm_double` of ``q - zp``
    (exact: |q - zp| <= 255), or a constant."""
    from ..quant import fixedpoint as fp
    t = b.qg.tensors[name]
    if t.is_const:
        v = fp.mbqm_smaller_than_one((_i64(t.data) - zp) * (1 << left), m, s)
        return b.const(f"{name}_scaled_{reader}", np.asarray(v, np.float64)), int(np.abs(v).max(initial=0))
    x, y = cast(b, name, DOUBLE, f"{name}_double_{reader}"), b.unique(f"{name}_centred_{reader}")
    b.node("Sub", [x, b.const(f"{reader}_{name}_zp", np.float64(zp))], [y], y)
    mp, right = int(m) << left, -int(s)
    bound = max(abs(v - zp) for v in _range(b, name))
    assert _double_plan(bound, [mp], [right], 0)[0]
    table = fp.mbqm_smaller_than_one((all_values(t.dtype).astype(np.int64) - zp) * (1 << left), m, s)
    return mbqm_double(b, y, [mp], [right], f"{reader}_{name}_scaled"), int(np.abs(table).max())


def add_sub(b, n) -> None:
    p = n.params
    a, ba = _scaled(b, n.inputs[0], n.name, p["multiplier1"], p["shift1"], p["zp1"], p["left_shift"])
    c, bc = _scaled(b, n.inputs[1], n.name, p["multiplier2"], p["shift2"], p["zp2"], p["left_shift"])
    raw = b.unique(f"{n.outputs[0]}_raw")
    b.node(n.op, [a, c], [raw], f"{n.name}_raw")
    _out_requant(b, n, raw, ba + bc, m=p["multiplier_out"], s=p["shift_out"], is_double=True)


def mul(b, n) -> None:
    p = n.params
    (ca, ba), (cb, bb) = (_centred(b, i, zp, n.name) for i, zp in zip(n.inputs, (p["zp1"], p["zp2"])))
    prod = b.unique(f"{n.outputs[0]}_product")
    b.node("Mul", [ca, cb], [prod], f"{n.name}_product")
    _out_requant(b, n, prod, ba * bb)


def _centred(b, name: str, zp: int, reader: str) -> tuple[str, int]:
    """``q - zp`` of int tensor ``name`` in int64, and its largest magnitude."""
    t = b.qg.tensors[name]
    if t.is_const:
        v = _i64(t.data) - zp
        return b.const(f"{name}_centred_{reader}", v), int(np.abs(v).max(initial=0))
    x, y = wide(b, name, reader), b.unique(f"{name}_centred_{reader}")
    b.node("Sub", [x, b.const(f"{reader}_{name}_zp", _i64(zp))], [y], y)
    return y, max(abs(v - zp) for v in _range(b, name))


def prelu(b, n) -> None:
    """TFLite's PRELU: ``x = q - zp_in``; ``x >= 0``: ``mbqm(x, m1, s1)``, else
    ``mbqm(x * (alpha - zp_alpha), m2, s2)``; ``+ zp_out``, clamped (float64, exact)."""
    p, x = n.params, n.inputs[0]
    t_out = b.qg.tensors[n.outputs[0]]
    xd, xc = cast(b, x, DOUBLE, f"{x}_double_{n.name}"), b.unique(f"{x}_centred_{n.name}")
    b.node("Sub", [xd, b.const(f"{n.name}_zp_in", np.float64(p["zp_in"]))], [xc], xc)
    alpha = b.qg.tensors[n.inputs[1]]
    slope, xa = np.asarray(alpha.data, np.float64) - p["zp_alpha"], b.unique(f"{n.outputs[0]}_slope_product")
    b.node("Mul", [xc, b.const(f"{n.name}_slope", slope)], [xa], xa)
    bound = max(abs(v - p["zp_in"]) for v in _range(b, x))
    branches = []
    for tag, src, bnd, k in (("pos", xc, bound, "1"), ("neg", xa, bound * int(np.abs(slope).max(initial=1)), "2")):
        mp, right, _ = _channels(p[f"multiplier_{k}"], p[f"shift_{k}"], 0)
        assert _double_plan(bnd, mp, right, 0)[0]
        branches.append(mbqm_double(b, src, mp, right, f"{n.name}_{tag}", zp=0))
    neg, y, yz, yc = (b.unique(f"{n.outputs[0]}_{k}") for k in ("negative", "selected", "offset", "clamped"))
    b.node("Less", [xc, b.const(f"{n.name}_zero", np.float64(0))], [neg], neg)
    b.node("Where", [neg, branches[1], branches[0]], [y], y)
    b.node("Add", [y, b.const(f"{n.name}_zp_out", np.float64(p["zp_out"]))], [yz], yz)
    lo, hi = _act(n, b)
    b.node("Clip", [yz, b.const(f"{n.name}_lo", np.float64(lo)), b.const(f"{n.name}_hi", np.float64(hi))], [yc], yc)
    b.node("Cast", [yc], [n.outputs[0]], f"{n.name}_cast", to=_ONNX_OF[t_out.dtype])


def mean(b, n) -> None:
    p, x = n.params, n.inputs[0]
    axes = list(n.attrs.get("axes", [2, 3]))
    total = b.unique(f"{n.outputs[0]}_sum")
    b.node("ReduceSum", [wide(b, x, n.name), b.const(f"{n.name}_axes", _i64(axes))], [total], f"{n.name}_sum",
           keepdims=1)
    t = b.qg.tensors[n.outputs[0]]
    kept = [1 if k in axes else d for k, d in enumerate(b.qg.tensors[x].shape)]
    out = n.outputs[0] if list(t.shape) == kept else b.unique(f"{n.outputs[0]}_kept")
    bound = p["count"] * max(abs(v - p["zp_in"]) for v in _range(b, x))
    _out_requant(b, n, total, bound, add=-p["zp_in"] * p["count"], out=out)
    if out != n.outputs[0]:
        b.node("Reshape", [out, b.const(f"{n.name}_shape", _i64(t.shape))], [n.outputs[0]], f"{n.name}_reshape")


def avg_pool(b, n) -> None:
    a, x = n.attrs, n.inputs[0]
    t = b.qg.tensors[x]
    c, h, w = t.shape[1:]
    kh, kw = a["kernel"]
    sums, acc = b.unique(f"{n.outputs[0]}_sums32"), b.unique(f"{n.outputs[0]}_sums")
    b.node("ConvInteger", [x, b.const(f"{n.name}_ones", np.ones((c, 1, kh, kw), np.int8)),
                           b.const(f"{n.name}_zero", np.dtype(t.dtype).type(0))], [sums], n.name,
           kernel_shape=[kh, kw], strides=list(a["strides"]), pads=list(a["pads"]), group=int(c))
    b.node("Cast", [sums], [acc], f"{n.name}_sums", to=INT64)
    counts = recipes.window_counts((h, w), a["kernel"], a["strides"], a["pads"]).astype(np.int64)
    sign, half, num, q, qc = (b.unique(f"{n.outputs[0]}_{k}") for k in ("sign", "half", "num", "avg", "clamped"))
    b.node("Sign", [acc], [sign], sign)
    b.node("Mul", [sign, b.const(f"{n.name}_half_counts", counts // 2)], [half], half)
    b.node("Add", [acc, half], [num], num)
    b.node("Div", [num, b.const(f"{n.name}_counts", counts)], [q], q)
    lo, hi = _act(n, b)
    b.node("Clip", [q, b.const(f"{n.name}_lo", _i64(lo)), b.const(f"{n.name}_hi", _i64(hi))], [qc], qc)
    b.node("Cast", [qc], [n.outputs[0]], f"{n.name}_cast", to=_ONNX_OF[b.qg.tensors[n.outputs[0]].dtype])


def unary_table(b, n) -> None:
    """An int -> int node of one input as a 256-entry table built by the
    reference kernel itself (Requantize)."""
    t_in, t_out = b.qg.tensors[n.inputs[0]], b.qg.tensors[n.outputs[0]]
    table = run_node(b.qg, n, [all_values(t_in.dtype)])[0].astype(np.dtype(t_out.dtype).type)
    idx = table_index(b, n.inputs[0], n.name)
    b.node("Gather", [b.const(n.name + "_table", rotate(table, t_in.dtype)), idx], [n.outputs[0]], n.name, axis=0)


def resize_bilinear(b, n) -> None:
    """TFLite's Q10 bilinear interpolation (recipes.resize): the row pass a
    float32 MatMul by the [W, OW] Q10 weight matrix (two products per sum, below
    255 * 2**10: exact), the column pass Gathers of two rows in float64 (sums
    below 2**28, exact), then ``acc / 2**20`` rounded half away from zero
    (exact: a power-of-two scaling, + 0.5, Floor)."""
    p, x = n.params, n.inputs[0]
    t = b.qg.tensors[x]
    h, w = t.shape[-2:]
    oh, ow = (int(v) for v in p["out_hw"])
    (y0, y1, fy), (x0, x1, fx) = (recipes.bilinear_taps(i, o, p["align_corners"], p["half_pixel_centers"])
                                  for i, o in ((h, oh), (w, ow)))
    one, out = 1 << 10, n.outputs[0]
    xf = cast(b, x, FLOAT, f"{x}_float_{n.name}")

    def blend(src, lo_idx, hi_idx, f, axis, shape, tag, dt):
        g0, g1, m0, m1, s = (b.unique(f"{out}_{tag}{k}") for k in ("lo", "hi", "wlo", "whi", "sum"))
        b.node("Gather", [src, b.const(f"{n.name}_{tag}_lo", _i64(lo_idx))], [g0], g0, axis=axis)
        b.node("Gather", [src, b.const(f"{n.name}_{tag}_hi", _i64(hi_idx))], [g1], g1, axis=axis)
        b.node("Mul", [g0, b.const(f"{n.name}_{tag}_wlo", (one - f).reshape(shape).astype(dt))], [m0], m0)
        b.node("Mul", [g1, b.const(f"{n.name}_{tag}_whi", f.reshape(shape).astype(dt))], [m1], m1)
        b.node("Add", [m0, m1], [s], s)
        return s

    wx = np.zeros((w, ow), np.float32)     # the row pass as a MatMul (a Gather on the last axis copies
    np.add.at(wx, (x0, np.arange(ow)), one - fx)   # element by element in onnxruntime)
    np.add.at(wx, (x1, np.arange(ow)), fx)
    rows = b.unique(f"{out}_rows")
    b.node("MatMul", [xf, b.const(f"{n.name}_column_weights", wx)], [rows], rows)
    acc = blend(cast(b, rows, DOUBLE, f"{out}_rows_double"), y0, y1, fy, 2, (-1, 1), "y", np.float64)
    signed = t.dtype == "int8"
    mag = b.unique(f"{out}_abs")
    if signed:
        b.node("Abs", [acc], [mag], mag)
    else:
        mag = acc
    sc, hf, fl = (b.unique(f"{out}_{k}") for k in ("scaled", "half", "floor"))
    b.node("Mul", [mag, b.const(f"{n.name}_two_m20", np.float64(2.0 ** -20))], [sc], sc)
    b.node("Add", [sc, b.const(f"{n.name}_half", np.float64(0.5))], [hf], hf)
    b.node("Floor", [hf], [fl], fl)
    if signed:
        sign, fs = b.unique(f"{out}_sign"), b.unique(f"{out}_signed")
        b.node("Sign", [acc], [sign], sign)
        b.node("Mul", [fl, sign], [fs], fs)
        fl = fs
    b.node("Cast", [fl], [out], f"{n.name}_cast", to=_ONNX_OF[b.qg.tensors[out].dtype])


def quantize(b, n) -> None:
    """TFLite's AffineQuantize (recipes.quantize_input): ``x / scale`` in float32,
    rounded half away from zero in float64 (onnxruntime's QuantizeLinear rounds
    half to even), ``+ zp``, saturated."""
    t = b.qg.tensors[n.outputs[0]]
    lo, hi = _range(b, n.outputs[0])
    out = n.outputs[0]
    v, vd, mag, hf, fl, sign, r, y, yc = (b.unique(f"{out}_{k}") for k in (
        "divided", "double", "abs", "half", "floor", "sign", "rounded", "offset", "clamped"))
    b.node("Div", [n.inputs[0], b.const(f"{out}_scale_float", np.float32(t.s))], [v], v)
    b.node("Cast", [v], [vd], vd, to=DOUBLE)
    b.node("Abs", [vd], [mag], mag)
    b.node("Add", [mag, b.const(f"{out}_half", np.float64(0.5))], [hf], hf)
    b.node("Floor", [hf], [fl], fl)
    b.node("Sign", [vd], [sign], sign)
    b.node("Mul", [fl, sign], [r], r)
    b.node("Add", [r, b.const(f"{out}_zp_double", np.float64(t.zp))], [y], y)
    b.node("Clip", [y, b.const(f"{out}_lo", np.float64(lo)), b.const(f"{out}_hi", np.float64(hi))], [yc], yc)
    b.node("Cast", [yc], [out], f"{n.name}_cast", to=_ONNX_OF[t.dtype])


def _op(b, op: str, ins, tag: str, **attrs) -> str:
    y = b.unique(tag)
    b.node(op, list(ins), [y], y, **attrs)
    return y


def _srdhm_i64(b, a: str, c: str, tag: str) -> str:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` of int64 tensors holding
    int32 values: ``floor((a * c + 2**30) / 2**31)`` (the floor by Mod, for
    either sign; the lone overflow a = c = INT32_MIN cannot occur where used)."""
    v = _op(b, "Add", [_op(b, "Mul", [a, c], f"{tag}_product"), b.const(f"{tag}_nudge", _i64(1 << 30))],
            f"{tag}_nudged")
    two31 = b.const(f"{tag}_two31", _i64(1 << 31))
    return _op(b, "Div", [_op(b, "Sub", [v, _op(b, "Mod", [v, two31], f"{tag}_rem")], f"{tag}_floored"), two31],
               f"{tag}_high")


def _wrap32(b, v: str, tag: str) -> str:
    """Two's-complement int32 wrap-around (gemmlowp's int32 + and -) of an int64 tensor."""
    two31 = b.const(f"{tag}_two31", _i64(1 << 31))
    m = _op(b, "Mod", [_op(b, "Add", [v, two31], f"{tag}_lifted"), b.const(f"{tag}_two32", _i64(1 << 32))],
            f"{tag}_mod")
    return _op(b, "Sub", [m, two31], f"{tag}_wrapped")


def _sat_shl(b, v: str, k: int, tag: str) -> str:
    return _op(b, "Clip", [_op(b, "Mul", [v, b.const(f"{tag}_pot", _i64(1 << k))], f"{tag}_shifted"),
                           b.const(f"{tag}_min", _i64(-(1 << 31))), b.const(f"{tag}_max", _i64((1 << 31) - 1))],
               f"{tag}_saturated")


def _reciprocal(b, total: str, tag: str) -> tuple[str, str]:
    """``gemmlowp.get_reciprocal(total, 12)`` (recipes.gemmlowp) of a positive
    int64 tensor, step by step: the F0 raw reciprocal and ``num_bits_over_unit``
    (both of ``total``'s shape)."""
    pot = b.const(f"{tag}_powers", _i64([1 << k for k in range(33)]))
    below = _op(b, "Less", [_op(b, "Unsqueeze", [total, b.const(f"{tag}_last", _i64([-1]))], f"{tag}_col"),
                            b.const(f"{tag}_powers32", _i64([1 << k for k in range(32)]))], f"{tag}_below")
    hp1 = _op(b, "ReduceSum", [_op(b, "Cast", [below], f"{tag}_below_int", to=INT64),
                               b.const(f"{tag}_axis", _i64([-1]))], f"{tag}_clz", keepdims=0)   # leading zeros
    bits = _op(b, "Sub", [b.const(f"{tag}_twelve", _i64(12)), hp1], f"{tag}_bits_over_unit")
    shifted = _op(b, "Mul", [total, _op(b, "Gather", [pot, hp1], f"{tag}_scale", axis=0)], f"{tag}_normalised")
    half_den = _op(b, "Div", [shifted, b.const(f"{tag}_two", _i64(2))], f"{tag}_half_denominator")
    x = _wrap32(b, _op(b, "Add", [b.const(f"{tag}_c48", _i64(1515870810)),
                                  _srdhm_i64(b, half_den, b.const(f"{tag}_c32", _i64(-1010580540)), f"{tag}_x0")],
                       f"{tag}_x0_sum"), f"{tag}_x0w")
    for k in range(3):
        one_minus = _wrap32(b, _op(b, "Sub", [b.const(f"{tag}_one_f2", _i64(1 << 29)),
                                               _srdhm_i64(b, half_den, x, f"{tag}_d{k}")], f"{tag}_om{k}"),
                            f"{tag}_om{k}w")
        step = _sat_shl(b, _srdhm_i64(b, x, one_minus, f"{tag}_e{k}"), 2, f"{tag}_s{k}")
        x = _wrap32(b, _op(b, "Add", [x, step], f"{tag}_x{k + 1}"), f"{tag}_x{k + 1}w")
    return _sat_shl(b, x, 1, f"{tag}_f0"), bits


def softmax(b, n) -> None:
    """TFLite's int8 SOFTMAX (recipes.softmax): per-element tables of the row
    difference ``q - max`` (the Q5.26 exp and its Q12.19 share, both from the
    recipe's own functions), the row sum, gemmlowp's reciprocal per row (int64,
    a few ops on a [rows] tensor), ``rdbpot(srdhm(reciprocal, exp), bits + 23)
    - 128``. int8 output only; a row of 4096 or more would need the sum's int32
    wrap-around, and keeps the fused form."""
    from . import qdq
    from ..quant import fixedpoint as fp
    from ..quant.recipes import gemmlowp as gl
    p, x, out = n.params, n.inputs[0], n.outputs[0]
    shape = b.qg.tensors[x].shape
    axis = int(n.attrs.get("axis", -1)) % len(shape)
    if b.qg.tensors[out].dtype != "int8" or shape[axis] >= 4096:
        return qdq.HANDLERS["Softmax"](b, n)
    diff = np.arange(-255, 1, dtype=np.int64)                # index = diff + 255
    used = diff >= p["diff_min"]
    exps = gl.exp_on_negative_values(fp.mbqm_greater_than_one(np.where(used, diff, 0), p["multiplier"],
                                                              p["left_shift"]), 5)
    share = np.where(used, gl.rescale(exps, 0, 12), 0)
    tag = n.name
    xi = wide(b, x, n.name)
    mx = _op(b, "ReduceMax", [xi], f"{tag}_max", axes=[axis], keepdims=1)
    idx = _op(b, "Add", [_op(b, "Sub", [xi, mx], f"{tag}_diff"), b.const(f"{tag}_255", _i64(255))], f"{tag}_index")
    e = _op(b, "Gather", [b.const(f"{tag}_exp_table", _i64(exps)), idx], f"{tag}_exp", axis=0)
    a = _op(b, "Gather", [b.const(f"{tag}_share_table", _i64(share)), idx], f"{tag}_share", axis=0)
    total = _op(b, "ReduceSum", [a, b.const(f"{tag}_axes", _i64([axis]))], f"{tag}_sum", keepdims=1)
    rec, bits = _reciprocal(b, total, f"{tag}_rcp")
    pot = b.const(f"{tag}_pot", _i64([1 << k for k in range(63)]))
    expo = _op(b, "Add", [bits, b.const(f"{tag}_23", _i64(23))], f"{tag}_exponent")
    hi = _op(b, "Div", [_op(b, "Add", [_op(b, "Mul", [rec, e], f"{tag}_re"), b.const(f"{tag}_n30", _i64(1 << 30))],
                            f"{tag}_ren"), b.const(f"{tag}_t31", _i64(1 << 31))], f"{tag}_high")   # >= 0: Div floors
    half = _op(b, "Gather", [pot, _op(b, "Sub", [expo, b.const(f"{tag}_1", _i64(1))], f"{tag}_em1")], f"{tag}_h",
               axis=0)
    q = _op(b, "Div", [_op(b, "Add", [hi, half], f"{tag}_hh"), _op(b, "Gather", [pot, expo], f"{tag}_d", axis=0)],
            f"{tag}_q")                                        # RoundingDivideByPOT of a non-negative value
    mask = _op(b, "Gather", [b.const(f"{tag}_used", used.astype(np.int64)), idx], f"{tag}_mask", axis=0)
    y = _op(b, "Sub", [_op(b, "Mul", [q, mask], f"{tag}_masked"), b.const(f"{tag}_128", _i64(128))], f"{tag}_y")
    yc = _op(b, "Clip", [y, b.const(f"{tag}_lo", _i64(-128)), b.const(f"{tag}_hi", _i64(127))], f"{tag}_clamped")
    b.node("Cast", [yc], [out], f"{tag}_cast", to=_ONNX_OF["int8"])


# QGraph op -> exact handler on the arm profile (qdq.HANDLERS keeps the float form for the others)
HANDLERS = {
    "Conv2D": conv, "FullyConnected": fully_connected, "TransposeConv2D": conv_transpose,
    "Add": add_sub, "Sub": add_sub, "Mul": mul, "PRelu": prelu, "Mean": mean, "AvgPool": avg_pool,
    "Requantize": unary_table, "Quantize": quantize, "Softmax": softmax,
}
