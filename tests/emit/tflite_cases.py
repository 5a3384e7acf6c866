"""One-op cases for the TFLite emitter: the QDQ emitter's cases
(tests/emit/qdq_oneop.py) plus the awkward geometry TFLite makes explicit —
TF-style SAME with stride 2 (pads bottom/right only) for depthwise, pooling
and convolutions, pads that match neither SAME nor VALID, Slice with steps,
PAD with a non-zero value, every Resize mode, DepthToSpace in both modes,
Flatten -> FC of a map with several channels, ConvTranspose with output
padding.

``case_graph(case)`` returns (quantized QGraph for the arm target, float inputs).
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from tests.emit.qdq_oneop import CASES as QDQ_CASES, _conv, _w
from tests.helpers import model
from tests.quant.oneop import pipeline


def _node(op, shape=(1, 4, 8, 8), consts=None, outputs=("y",), **attrs):
    consts = consts or {}
    return lambda rng: ([helper.make_node(op, ["x"] + list(consts), list(outputs), **attrs)], {"x": shape},
                        {k: np.asarray(v) for k, v in consts.items()})


def _resize(mode, shape=(1, 3, 5, 7), sizes=(1, 3, 10, 11), **attrs):
    return lambda rng: ([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, **attrs)],
                        {"x": shape}, {"sizes": np.array(sizes, np.int64)})


def _flatten_fc(rng):
    return [helper.make_node("Conv", ["x", "W0", "B0"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Flatten", ["c"], ["f"]),
            helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1)], \
        {"x": (1, 3, 4, 5)}, {"W0": _w(rng, 6, 3, 3, 3), "B0": _w(rng, 6, scale=0.1),
                              "W": _w(rng, 7, 120, scale=0.1), "B": _w(rng, 7, scale=0.1)}


def _conv_transpose_same(rng):
    return [helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], strides=[2, 2],
                             auto_pad="SAME_UPPER")], \
        {"x": (1, 4, 5, 5)}, {"W": _w(rng, 4, 3, 3, 3), "B": _w(rng, 3, scale=0.1)}


def _conv_transpose_grouped(rng):
    return [helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                             output_padding=[1, 1], group=2)], \
        {"x": (1, 4, 5, 5)}, {"W": _w(rng, 4, 3, 3, 3), "B": _w(rng, 6, scale=0.1)}


def _grouped3(rng):
    return _conv(rng, cin=6, cout=9, k=3, group=3, pads=[1, 1, 1, 1], strides=[2, 2])


def _channel_shuffle(rng):
    return [helper.make_node("Reshape", ["x", "s5"], ["r"]),
            helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", ["t", "s4"], ["y"])], \
        {"x": (1, 6, 4, 5)}, {"s5": np.array([1, 2, 3, 4, 5], np.int64), "s4": np.array([1, 6, 4, 5], np.int64)}


EXTRA = {
    "channel_shuffle": _channel_shuffle,
    "depthwise_same_s2": lambda r: _conv(r, cin=6, cout=6, group=6, auto_pad="SAME_UPPER", strides=[2, 2]),
    "depthwise_mult2_same_s2": lambda r: _conv(r, cin=3, cout=6, group=3, auto_pad="SAME_UPPER",
                                               strides=[2, 2]),
    "conv_same_s2": lambda r: _conv(r, auto_pad="SAME_UPPER", strides=[2, 2]),
    "conv_pads_odd": lambda r: _conv(r, pads=[2, 0, 1, 1]),
    "grouped_s2": _grouped3,
    "avgpool_same_s2": _node("AveragePool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "avgpool_valid": _node("AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
    "maxpool_same_s2": _node("MaxPool", kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "maxpool_pads_odd": _node("MaxPool", kernel_shape=[3, 3], strides=[1, 1], pads=[2, 0, 0, 2]),
    "pad_value": _node("Pad", consts={"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
                                      "v": np.array(0.7, np.float32)}),
    "pad_reflect": _node("Pad", consts={"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}, mode="reflect"),
    "slice_steps": _node("Slice", consts={"st": np.array([1, 1, 7], np.int64), "en": np.array([4, 8, 0], np.int64),
                                          "ax": np.array([1, 2, 3], np.int64),
                                          "sp": np.array([2, 3, -2], np.int64)}),
    "split_equal": _node("Split", outputs=("y", "z"), axis=2),
    "split_w": _node("Split", consts={"sp": np.array([3, 5], np.int64)}, outputs=("y", "z"), axis=3),
    "concat_h": lambda r: ([helper.make_node("Concat", ["x", "b"], ["y"], axis=2)],
                           {"x": (1, 4, 8, 8), "b": (1, 4, 3, 8)}, {}),
    "transpose_hw": _node("Transpose", perm=[0, 1, 3, 2]),
    "softmax_channels": _node("Softmax", axis=1),
    "depth_to_space_dcr": _node("DepthToSpace", blocksize=2, mode="DCR"),
    "resize_nearest_asym": _resize("nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    "resize_nearest_half": _resize("nearest", coordinate_transformation_mode="half_pixel",
                                   nearest_mode="round_prefer_ceil"),
    "resize_nearest_align": _resize("nearest", coordinate_transformation_mode="align_corners",
                                    nearest_mode="round_prefer_ceil"),
    "resize_nearest_onnx_default": _resize("nearest"),
    "resize_linear_align": _resize("linear", coordinate_transformation_mode="align_corners"),
    "resize_linear_asym": _resize("linear", coordinate_transformation_mode="asymmetric"),
    "flatten_fc": _flatten_fc,
    "conv_transpose_same": _conv_transpose_same,
    "conv_transpose_grouped": _conv_transpose_grouped,
    "reduce_mean_keep": _node("ReduceMean", axes=[2, 3], keepdims=1),
}

CASES = {**{k: v[0] for k, v in QDQ_CASES.items()}, **EXTRA}
OPSET = {k: v[2] for k, v in QDQ_CASES.items()}


def case_graph(case: str, seed: int = 0, target: str = "arm"):
    rng = np.random.default_rng(seed)
    nodes, ins, inits = CASES[case](rng)
    outs = list(nodes[-1].output)
    m = model(nodes, ins, outs, inits, opset=OPSET.get(case, 13))
    x = {k: rng.standard_normal((3,) + tuple(s[1:])).astype(np.float32) for k, s in ins.items()}
    g, qg = pipeline(m, x, target)
    return qg, x
