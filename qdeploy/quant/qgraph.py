"""The QGraph: every integer of a quantized model, decided once by the quantizer.

Emitters (QDQ, TFLite, C) and ``qdeploy run`` read a QGraph and never
re-decide numerics. Layout is the model's own (ONNX NCHW); the emitters own the
NHWC conversion.

Tensors (:class:`QTensor`)
    ``real = scale * (q - zero_point)``. Activations are per-tensor (``scale``
    and ``zero_point`` have one element, ``axis`` is None) with dtype ``int8``
    or ``uint8``; the graph's float inputs/outputs have dtype ``float32``, and
    so have the float weights of a ``Float`` node (``data``, no scale).
    Constants carry ``data``: weights int8 symmetric (zero point 0; per output
    channel along ``axis`` or per tensor), biases int32 with ``scale = s_in *
    s_w[c]`` (per channel along axis 0), element-wise operands int8/uint8
    per-tensor.

Nodes (:class:`QNode`): ``attrs`` hold geometry (ints, lists, strings),
``params`` hold every integer the kernel needs (numpy arrays or ints), and
``source`` the float node name(s) it came from. Unless noted, an int output is
saturated to ``[params.act_min, params.act_max]`` (the fused activation
intersected with the dtype range). Requantisation ``requant`` is ``"q31"``
(``MultiplyByQuantizedMultiplier`` with ``multiplier``/``shift``, double
rounding as TFLite) or ``"shift"`` (fpga: ``shift_round(acc, shift)``, a
rounding arithmetic right shift; negative = left) or, on the ``ort`` profile with
``requant = "float32"``, onnxruntime's own arithmetic: Conv2D / FullyConnected /
TransposeConv2D ``rint(float32(acc) * scale[o])`` (``scale`` = float32 ``s_x *
s_w / s_y``, round half to even), Mul ``rint(float32((a - zp1) * (b - zp2)) *
scale + zp_out)``, Mean ``rint(float32(sum - zp_in * count) * scale)``
(QLinearGlobalAveragePool), Requantize ``rint(float32((x - zp_x) * in_scale) /
out_scale)`` (DequantizeLinear then QuantizeLinear), Quantize ``rint(x /
scale)`` (params ``{"requant": "float32"}``); Add keeps TFLite's recipe.

============== ======================== ===============================================
op             inputs -> outputs        attrs / params
============== ======================== ===============================================
Quantize       float x -> q             (output tensor's scale/zp; TFLite rounding
                                        half away from zero, saturate)
Dequantize     q -> float               --
Conv2D         x, w[O,I/g,kh,kw], b     attrs: strides, pads [t,l,b,r], dilations, group,
               -> y                     depthwise (group == C_in), depth_multiplier.
                                        params: requant, multiplier[O], shift[O],
                                        act_min, act_max.
                                        acc[o] = b[o] + sum (x - zp_x) * w (padding
                                        contributes 0); y = requant(acc) + zp_y
TransposeConv2D x, w[O,I/g,kh,kw], b     ONNX ConvTranspose as TFLite TRANSPOSE_CONV. w is
               -> y                     output-channel first (ONNX's [I, O/g, kh, kw]
                                        reordered; TFLite OHWI = w.transpose(0,2,3,1)).
                                        attrs: strides, dilations, group, pads [t,l,b,r],
                                        output_padding (explicit; out = (H-1)*s +
                                        (k-1)*d + 1 + output_padding - t - b). params
                                        as Conv2D. acc = b + sum of (x - zp_x) * w
                                        scattered to y[i*s + k*d - t] (TFLite's order)
FullyConnected x[N,K], w[M,K], b[M]      as Conv2D (per output row M)
Add / Sub      a, b -> y (broadcast)    params: recipe dict of recipes.add_params /
                                        sub_params (q31) or {"requant": "shift",
                                        a_shift, b_shift, out_shift}; act_min/max
Mul            a, b -> y (broadcast)    recipes.mul_params (q31) or shift form
                                        {"requant": "shift", out_shift}; act_min/max.
                                        Also ONNX Div by a constant (b = 1/c)
Maximum /      xs -> y (broadcast, all  act_min/max; y = max/min of the integers
Minimum        the output's scale)      (operands requantized to y's params first)
PRelu          x, alpha -> y            recipes.prelu_params (q31), or fpga {"requant":
                                        "shift", pos_shift, neg_shift}; act_min/max
AvgPool        x -> y                   attrs: kernel, strides, pads (never overlapping
                                        padded values: count_include_pad=1 is an explicit
                                        Pad first). q31: same scale as x, TFLite's rounded
                                        mean over the non-padded window. fpga: y has its
                                        own scale; params recipes.avg_pool_shift_params
                                        {"requant": "shift", counts[K], multiplier[K]
                                        (7-bit), shift[K]}: a window with counts[k] valid
                                        elements gives shift_round(multiplier[k] *
                                        sum(x), shift[k]) (border windows have smaller
                                        counts; no division). act_min/max
Mean           x -> y                   attrs: axes (2, 3), keepdims; params:
                                        recipes.mean_params (q31), or fpga
                                        recipes.mean_shift_params {"requant": "shift",
                                        multiplier (7-bit), shift, count}: y =
                                        shift_round(multiplier * sum(x), shift)
MaxPool        x -> y (same scale)      attrs: kernel, strides, pads, dilations
                                        (padding never wins); act_min/max
Concat         xs -> y (same scale)     attrs: axis
Reshape        x -> y                   attrs: shape (batch dim 1 = the batch)
Transpose      x -> y                   attrs: perm
Pad            x -> y                   attrs: pads (ONNX order); params: value (int)
Slice          x -> y                   attrs: starts, ends, axes, steps
Split          x -> ys                  attrs: axis, split
Resize         x -> y                   attrs: mode nearest|linear,
                                        coordinate_transformation_mode, nearest_mode,
                                        sizes; bilinear params: recipes' (TFLite
                                        RESIZE_BILINEAR, half_pixel / align_corners)
DepthToSpace   x -> y                   attrs: blocksize, mode DCR|CRD
SpaceToDepth   x -> y                   attrs: blocksize
Lut            x -> y                   attrs: func, source (float|tflite|onnxruntime: ort's
                                        tables are what onnxruntime computes, quant/ort_luts.py),
                                        the function's
                                        alpha (leaky_relu, hardsigmoid), beta (hardsigmoid);
                                        params: table[256] (indexed by q - qmin of the
                                        input dtype)
Softmax        x -> y                   attrs: axis; params: recipes.softmax_params
Requantize     x -> y                   params: requant, multiplier, shift, act_min,
                                        act_max (y = requant(x - zp_x) + zp_y)
LeakyShift     x -> y                   fpga: params pos_shift, neg_multiplier,
                                        neg_shift: y = x >= 0 ? shift_round(x, pos_shift)
                                        : shift_round(x * neg_multiplier, neg_shift)
Float          x, w, b -> y             a layer kept in float (``quantize --keep-float``,
                                        ort only: quant/float_island.py). attrs: ``op``
                                        (Conv2D | TransposeConv2D | FullyConnected, the
                                        op it stands for) and that op's attrs; w, b are
                                        float32 constants (no scale) in that op's layout.
                                        params: act_min, act_max, requant "float32".
                                        x_f = float32(x - zp_x) * s_x (DequantizeLinear);
                                        y_f = the float op on x_f, w, b (float32); y =
                                        clamp(rint(y_f / s_y) + zp_y) (QuantizeLinear,
                                        half to even). A float sum's order is the
                                        runtime's: onnxruntime's y_f may differ in the
                                        last float32 bits, so y agrees to 1 LSB (not bit
                                        for bit) where y_f / s_y lies at a .5 tie
============== ======================== ===============================================

File format (``save_qgraph``/``load_qgraph``): an uncompressed .npz with
deterministic bytes. Entry ``__qgraph__`` is the UTF-8 JSON of the structure
(``{"format": "qdeploy.qgraph", "version": 1, ...}``); every array (tensor
data, scales, zero points, array-valued params) is its own entry ``aNNNN`` and
is referenced in the JSON as ``{"$array": "aNNNN"}``.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QDeployError
from ..fsutil import npz_bytes, write_bytes

FORMAT = "qdeploy.qgraph"
VERSION = 1


@dataclass
class QTensor:
    name: str
    shape: tuple[int, ...]
    dtype: str                       # int8 | uint8 | int32 | float32
    scale: np.ndarray | None = None  # float32 [1] or [C]
    zero_point: np.ndarray | None = None  # int32 [1] or [C]
    axis: int | None = None          # per-channel axis, None = per tensor
    data: np.ndarray | None = None   # constant integer data

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def s(self) -> float:
        """The per-tensor scale."""
        return float(self.scale.reshape(-1)[0])

    @property
    def zp(self) -> int:
        """The per-tensor zero point."""
        return int(self.zero_point.reshape(-1)[0])


@dataclass
class QNode:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    source: list[str] = field(default_factory=list)


@dataclass
class QGraph:
    name: str
    target: str
    profile: str
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, QTensor]
    nodes: list[QNode]
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    def tensor(self, name: str) -> QTensor:
        return self.tensors[name]

    def producer(self, name: str) -> QNode | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def readers(self) -> dict[str, list[QNode]]:
        """Tensor name -> the nodes that read it, in graph order."""
        out: dict[str, list[QNode]] = {}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))


# ------------------------------------------------------------------ output grids
def output_grids(qg) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of each graph output's int tensor (the input of its Dequantize)."""
    deq = {n.outputs[0]: n for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] in qg.outputs}
    grids = {}
    for o in qg.outputs:
        t = qg.tensors[deq[o].inputs[0]] if o in deq else qg.tensors[o]
        grids[o] = (t.s, t.zp) if t.scale is not None else (None, None)
    return grids


def on_grid(y: np.ndarray, grid: tuple[float, int]) -> np.ndarray:
    """Float values back on an int grid: ``round(y / scale) + zero_point``."""
    s, zp = grid
    return np.round(np.asarray(y, np.float64) / s).astype(np.int64) + zp


# ------------------------------------------------------------------ file format
class _Arrays:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def put(self, value):
        if isinstance(value, np.ndarray):
            key = f"a{len(self.arrays):05d}"
            self.arrays[key] = value
            return {"$array": key}
        if isinstance(value, dict):
            return {k: self.put(v) for k, v in sorted(value.items())}
        if isinstance(value, (list, tuple)):
            return [self.put(v) for v in value]
        if isinstance(value, np.generic):
            return value.item()
        return value


def _get(value, arrays):
    if isinstance(value, dict):
        if set(value) == {"$array"}:
            return arrays[value["$array"]]
        return {k: _get(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_get(v, arrays) for v in value]
    return value


def qgraph_bytes(qg: QGraph) -> bytes:
    """The serialised QGraph (same QGraph -> same bytes)."""
    arr = _Arrays()
    doc = {
        "format": FORMAT, "version": qg.version, "name": qg.name, "target": qg.target,
        "profile": qg.profile, "inputs": list(qg.inputs), "outputs": list(qg.outputs),
        "metadata": arr.put(qg.metadata),
        "tensors": [arr.put({"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                             "scale": t.scale, "zero_point": t.zero_point, "axis": t.axis,
                             "data": t.data}) for t in qg.tensors.values()],
        "nodes": [arr.put({"op": n.op, "name": n.name, "inputs": list(n.inputs),
                           "outputs": list(n.outputs), "attrs": n.attrs, "params": n.params,
                           "source": list(n.source)}) for n in qg.nodes],
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    arr.arrays["__qgraph__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    return npz_bytes(arr.arrays)


def save_qgraph(qg: QGraph, path) -> None:
    write_bytes(path, qgraph_bytes(qg))


def load_qgraph(path) -> QGraph:
    path = Path(path)
    if not path.is_file():
        raise QDeployError(f"{path}: no such quantized-graph file; run `qdeploy quantize` first")
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        doc = json.loads(arrays.pop("__qgraph__").tobytes().decode())
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise QDeployError(f"{path}: not a qdeploy quantized-graph file; run `qdeploy quantize` "
                           "to write one") from None
    if doc.get("format") != FORMAT:
        raise QDeployError(f"{path}: not a qdeploy quantized-graph file (format "
                           f"'{doc.get('format')}'); run `qdeploy quantize` to write one")
    if doc.get("version") != VERSION:
        raise QDeployError(f"{path}: quantized-graph format version {doc.get('version')} is not "
                           f"supported (this qdeploy reads version {VERSION}); quantize the model again")
    tensors = {}
    for t in doc["tensors"]:
        t = _get(t, arrays)
        tensors[t["name"]] = QTensor(t["name"], tuple(t["shape"]), t["dtype"], t["scale"],
                                     t["zero_point"], t["axis"], t["data"])
    nodes = []
    for n in doc["nodes"]:
        n = _get(n, arrays)
        nodes.append(QNode(n["op"], n["name"], n["inputs"], n["outputs"], n["attrs"],
                           n["params"], n["source"]))
    return QGraph(doc["name"], doc["target"], doc["profile"], doc["inputs"], doc["outputs"],
                  tensors, nodes, _get(doc["metadata"], arrays), doc["version"])
