"""One-op models through quantization and the QDQ emitter, judged by onnxruntime.

``check(case, target)`` builds the float ONNX model of a case, quantizes it
(tests/quant/oneop.py: min/max ranges from onnxruntime), emits the QDQ model,
runs it on onnxruntime with its default optimisations and compares with the
reference interpreter on the output's int grid. Returns (max LSB difference,
fraction exact, onnxruntime's optimized op counts).
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from qdeploy.emit import qdq
from qdeploy.emit.qdq_compare import end_to_end, optimized_ops
from qdeploy.quant.interpreter import run
from tests.helpers import model
from tests.quant.oneop import pipeline


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _conv(rng, cin=4, cout=6, k=3, group=1, relu=None, **attrs):
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y" if relu is None else "c"], group=group, **attrs)]
    if relu == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    elif relu == "relu6":
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
    inits = {"W": _w(rng, cout, cin // group, k, k), "B": _w(rng, cout, scale=0.1)}
    if relu == "relu6":
        inits.update(lo=np.float32(0), hi=np.float32(1.0))
    return nodes, {"x": (1, cin, 8, 8)}, inits


def _unary(op, shape=(1, 4, 8, 8), **attrs):
    return lambda rng: ([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": shape}, {})


def _binary(op, bshape=(1, 4, 8, 8), const=False):
    def make(rng):
        ins = {"x": (1, 4, 8, 8)}
        inits = {}
        if const:
            inits["b"] = (rng.uniform(0.5, 2.0, bshape)).astype(np.float32)
        else:
            ins["b"] = bshape
        return [helper.make_node(op, ["x", "b"], ["y"])], ins, inits
    return make


def _two_inputs(op, **attrs):
    return lambda rng: ([helper.make_node(op, ["x", "b"], ["y"], **attrs)],
                        {"x": (1, 4, 8, 8), "b": (1, 3, 8, 8)}, {})


def _const_in(op, consts: dict, shape=(1, 4, 8, 8), outputs=("y",), **attrs):
    return lambda rng: ([helper.make_node(op, ["x"] + list(consts), list(outputs), **attrs)], {"x": shape},
                        {k: np.asarray(v) for k, v in consts.items()})


def _silu(rng):
    return [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])], \
        {"x": (1, 4, 8, 8)}, {}


def _gemm(rng):
    return [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "W", "B"], ["y"], transB=1)], \
        {"x": (1, 4, 3, 3)}, {"W": _w(rng, 10, 36), "B": _w(rng, 10, scale=0.1)}


def _conv_transpose(rng, group=1):
    return [helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                             output_padding=[1, 1], group=group)], \
        {"x": (1, 4, 6, 6)}, {"W": _w(rng, 4, 6 // group, 3, 3), "B": _w(rng, 6, scale=0.1)}


def _resize(mode, **attrs):
    return lambda rng: ([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, **attrs)],
                        {"x": (1, 4, 6, 6)}, {"scales": np.array([1, 1, 2, 2], np.float32)})


def _prelu(rng):
    return [helper.make_node("PRelu", ["x", "a"], ["y"])], {"x": (1, 4, 8, 8)}, \
        {"a": rng.uniform(0.05, 0.3, (4, 1, 1)).astype(np.float32)}


# case -> (builder(rng) -> (nodes, inputs, inits), the op onnxruntime runs it as on the ort target, opset)
CASES = {
    "conv": (lambda r: _conv(r, pads=[1, 1, 1, 1]), "QLinearConv", 13),
    "conv_relu": (lambda r: _conv(r, relu="relu", strides=[2, 2], pads=[1, 0, 1, 0]), "QLinearConv", 13),
    "conv_clip_narrow": (lambda r: _conv(r, relu="relu6", pads=[1, 1, 1, 1]), "QLinearConv", 13),
    "conv_dilated": (lambda r: _conv(r, dilations=[2, 2], pads=[2, 2, 2, 2]), "QLinearConv", 13),
    "depthwise": (lambda r: _conv(r, cin=6, cout=6, group=6, pads=[1, 1, 1, 1]), "QLinearConv", 13),
    "grouped": (lambda r: _conv(r, cin=8, cout=4, k=1, group=2), "QLinearConv", 13),
    "conv_transpose": (_conv_transpose, None, 13),
    "gemm": (_gemm, "QGemm", 13),
    "add": (_binary("Add"), "QLinearAdd", 13),
    "add_broadcast": (_binary("Add", (1, 4, 1, 1)), "QLinearAdd", 13),
    "sub": (_binary("Sub"), None, 13),
    "mul": (_binary("Mul", (1, 4, 1, 1)), "QLinearMul", 13),
    "div_const": (_binary("Div", (1, 4, 1, 1), const=True), "QLinearMul", 13),
    "max": (_binary("Max"), None, 13),
    "min": (_binary("Min"), None, 13),
    "prelu": (_prelu, None, 13),
    "avgpool": (_unary("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                "QLinearAveragePool", 13),
    "global_avgpool": (_unary("GlobalAveragePool"), "QLinearGlobalAveragePool", 13),
    "reduce_mean": (_unary("ReduceMean", axes=[2, 3], keepdims=0), "QLinearGlobalAveragePool", 13),
    "maxpool": (_unary("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), "MaxPool", 13),
    "global_maxpool": (_unary("GlobalMaxPool"), None, 13),
    "concat": (_two_inputs("Concat", axis=1), "QLinearConcat", 13),
    "reshape": (_const_in("Reshape", {"s": np.array([1, 16, 16], np.int64)}), None, 13),
    "transpose": (_unary("Transpose", perm=[0, 2, 3, 1]), None, 13),
    "pad": (_const_in("Pad", {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}), None, 13),
    "slice": (_const_in("Slice", {"st": np.array([1, 2], np.int64), "en": np.array([3, 8], np.int64),
                                  "ax": np.array([1, 3], np.int64)}), None, 13),
    "split": (_const_in("Split", {"sp": np.array([1, 3], np.int64)}, outputs=("y", "z"), axis=1), None, 13),
    "depth_to_space": (_unary("DepthToSpace", blocksize=2, mode="CRD"), None, 13),
    "space_to_depth": (_unary("SpaceToDepth", blocksize=2), None, 13),
    "resize_nearest": (_resize("nearest"), None, 13),
    "resize_linear": (_resize("linear", coordinate_transformation_mode="half_pixel"), None, 13),
    "sigmoid": (_unary("Sigmoid"), "QLinearSigmoid", 13),
    "tanh": (_unary("Tanh"), None, 13),
    "hardswish": (_unary("HardSwish"), None, 14),
    "hardsigmoid": (_unary("HardSigmoid", alpha=0.2, beta=0.5), None, 13),
    "silu": (_silu, None, 13),
    "leaky_relu": (_unary("LeakyRelu", alpha=0.1), "QLinearLeakyRelu", 13),
    "softmax": (_unary("Softmax", shape=(1, 10), axis=-1), None, 13),
    "relu": (_unary("Relu"), None, 13),
}


def build_case(case: str, seed: int = 0):
    make, kernel, opset = CASES[case]
    rng = np.random.default_rng(seed)
    nodes, ins, inits = make(rng)
    outs = [o for n in nodes[-1:] for o in n.output]
    m = model(nodes, ins, outs, inits, opset=opset)
    x = {k: rng.standard_normal((6,) + tuple(s[1:])).astype(np.float32) for k, s in ins.items()}
    return m, x, kernel


def check(case: str, target: str, tmp_path, lut: str | None = None, seed: int = 0):
    m, x, _ = build_case(case, seed)
    g, qg = pipeline(m, x, target)
    data = qdq.build(qg, lut=lut).SerializeToString()
    got = qdq.run_session(qdq.session(data), x)
    ref = run(qg, x)
    diffs = end_to_end(qg, got, ref)
    ops = optimized_ops(data, tmp_path / f"{case}_{getattr(target, 'name', target)}.opt.onnx")
    return diffs, ops, qg
