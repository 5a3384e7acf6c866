"""fuse_activation: ReLU / ReLU6 / Clip / Max-Min clamps fused into their
producer as ``q_clamp``, outputs unchanged on onnxruntime; what is not fused."""
import math

import numpy as np
import pytest
from onnx import helper

from qdeploy.passes import fuse_activation
from tests.helpers import model
from tests.passes.build import apply, f32, ops, rand

X = (1, 2, 5, 5)
WIDE = {"x": np.random.default_rng(0).uniform(-8, 8, X).astype(np.float32)}


def conv_then(act_nodes, extra_inits=None, opset=13, outputs=("y",)):
    rng = np.random.default_rng(1)
    inits = {"w": rand(rng, 4, 2, 3, 3, lo=-2, hi=2), "b": rand(rng, 4), "zero": f32(0.0),
             "six": f32(6.0), **(extra_inits or {})}
    return model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv")] + act_nodes,
                 {"x": X}, list(outputs), inits, opset=opset)


@pytest.mark.parametrize("nodes,clamp,act", [
    ([helper.make_node("Relu", ["c"], ["y"])], (0.0, math.inf), "relu"),
    ([helper.make_node("Clip", ["c", "zero", "six"], ["y"])], (0.0, 6.0), "relu6"),
    ([helper.make_node("Clip", ["c", "", "six"], ["y"])], (-math.inf, 6.0), "clip"),
    ([helper.make_node("Max", ["c", "zero"], ["m"]), helper.make_node("Min", ["m", "six"], ["y"])],
     (0.0, 6.0), "relu6"),
    ([helper.make_node("Min", ["six", "c"], ["m"]), helper.make_node("Max", ["zero", "m"], ["y"])],
     (0.0, 6.0), "relu6"),
    ([helper.make_node("Relu", ["c"], ["m"]), helper.make_node("Min", ["m", "six"], ["y"])],
     (0.0, 6.0), "relu6"),
])
def test_clamps_fuse_into_conv(nodes, clamp, act):
    _, after, msgs = apply(conv_then(nodes), fuse_activation, inputs=WIDE)
    assert ops(after) == ["Conv"]
    conv = after.nodes[0]
    assert conv.attrs["q_clamp"] == clamp and conv.attrs["q_act"] == act
    assert conv.outputs == ["y"] and len(msgs) == len(nodes)


def test_clip_attribute_form_opset10():
    m = conv_then([helper.make_node("Clip", ["c"], ["y"], min=-1.0, max=1.5)], opset=10)
    _, after, _ = apply(m, fuse_activation, inputs=WIDE)
    assert ops(after) == ["Conv"] and after.nodes[0].attrs["q_clamp"] == (-1.0, 1.5)


def test_clamp_on_intermediate_tensor_keeps_graph_outputs():
    m = conv_then([helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Neg", ["r"], ["y"])])
    _, after, _ = apply(m, fuse_activation, inputs=WIDE)
    assert ops(after) == ["Conv", "Neg"] and after.nodes[1].inputs == after.nodes[0].outputs


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Concat", "MaxPool", "AveragePool"])
def test_fuses_into_every_tflite_fused_op(op):
    attrs = {"axis": 1} if op == "Concat" else {"kernel_shape": [2, 2]} if "Pool" in op else {}
    ins = ["x"] if "Pool" in op else ["x", "x2"]
    m = model([helper.make_node(op, ins, ["p"], name="prod", **attrs),
               helper.make_node("Clip", ["p", "lo"], ["y"])],
              {"x": X, "x2": X}, ["y"], {"lo": f32(-0.5)})
    _, after, _ = apply(m, fuse_activation)
    assert ops(after) == [op] and after.nodes[0].attrs["q_clamp"] == (-0.5, math.inf)


def test_fuses_into_gemm_and_conv_transpose():
    rng = np.random.default_rng(2)
    m = model([helper.make_node("ConvTranspose", ["x", "wt"], ["d"]), helper.make_node("Relu", ["d"], ["y"]),
               helper.make_node("Gemm", ["v", "wg"], ["f"], transB=1), helper.make_node("Relu", ["f"], ["z"])],
              {"x": X, "v": (1, 6)}, ["y", "z"], {"wt": rand(rng, 2, 3, 2, 2), "wg": rand(rng, 4, 6)})
    _, after, _ = apply(m, fuse_activation)
    assert ops(after) == ["ConvTranspose", "Gemm"]


@pytest.mark.parametrize("case", ["global_pool", "graph_input", "shared", "producer_is_output", "vector"])
def test_not_fused(case):
    rng = np.random.default_rng(3)
    inits = {"w": rand(rng, 2, 2, 1, 1), "v": rand(rng, 1, 2, 1, 1)}
    nodes, outs = [], ["y"]
    if case == "global_pool":
        nodes = [helper.make_node("GlobalAveragePool", ["x"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    elif case == "graph_input":
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
    elif case == "vector":   # per-channel Max is not a scalar clamp
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Max", ["c", "v"], ["y"])]
    else:
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
        if case == "shared":
            nodes.append(helper.make_node("Neg", ["c"], ["n"]))
            outs.append("n")
        else:
            outs.append("c")
    before, after, msgs = apply(model(nodes, {"x": X}, outs, inits), fuse_activation)
    assert ops(after) == ops(before) and msgs == []
    assert not any("q_clamp" in n.attrs for n in after.nodes)


def test_disjoint_ranges_are_not_merged():
    m = conv_then([helper.make_node("Clip", ["c", "zero", "six"], ["m"]),
                   helper.make_node("Max", ["m", "seven"], ["y"])], {"seven": f32(7.0)})
    _, after, _ = apply(m, fuse_activation, inputs=WIDE)
    assert ops(after) == ["Conv", "Max"] and after.nodes[0].attrs["q_clamp"] == (0.0, 6.0)
