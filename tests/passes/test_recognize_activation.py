"""recognize_activation: decomposed h-swish / h-sigmoid / SiLU forms become one
op, outputs unchanged on onnxruntime; look-alikes that are left alone."""
import numpy as np
import pytest
from onnx import helper

from qdeploy.passes import PassOptions, recognize_activation
from tests.helpers import model
from tests.passes.build import apply, f32, ops

X = (1, 3, 4, 5)
# inputs spanning both knees of h-swish (-3 and 3) and the flat parts
WIDE = {"x": np.random.default_rng(0).uniform(-6, 6, X).astype(np.float32)}
CONSTS = {"three": f32(3.0), "zero": f32(0.0), "six": f32(6.0), "sixth": f32(1 / 6)}


def clip(i, o, opset):
    if opset < 11:
        return helper.make_node("Clip", [i], [o], min=0.0, max=6.0)
    return helper.make_node("Clip", [i, "zero", "six"], [o])


def hswish_nodes(scale_form, add_order, mul_order, opset=13):
    add = ["x", "three"] if add_order else ["three", "x"]
    mul = ["x", "c"] if mul_order else ["c", "x"]
    last = {"div": helper.make_node("Div", ["m", "six"], ["y"], name="last"),
            "mul": helper.make_node("Mul", ["m", "sixth"], ["y"], name="last"),
            "mul_first": helper.make_node("Mul", ["sixth", "m"], ["y"], name="last")}[scale_form]
    return [helper.make_node("Add", add, ["t"]), clip("t", "c", opset),
            helper.make_node("Mul", mul, ["m"]), last]


@pytest.mark.parametrize("scale_form", ["div", "mul", "mul_first"])
@pytest.mark.parametrize("add_order,mul_order", [(True, True), (False, False)])
def test_decomposed_hswish(scale_form, add_order, mul_order):
    m = model(hswish_nodes(scale_form, add_order, mul_order), {"x": X}, ["y"], CONSTS)
    _, after, msgs = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == ["HardSwish"]
    assert after.nodes[0].inputs == ["x"] and after.nodes[0].attrs == {"q_lut": True}
    assert len(msgs) == 1 and "HardSwish" in msgs[0]


def test_decomposed_hswish_with_clip_attribute_form_opset10():
    m = model(hswish_nodes("div", True, True, opset=10), {"x": X}, ["y"], CONSTS, opset=10)
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == ["HardSwish"]


def test_x_times_decomposed_hsigmoid_is_hswish():
    m = model([helper.make_node("Add", ["x", "three"], ["t"]), clip("t", "c", 13),
               helper.make_node("Div", ["c", "six"], ["h"]), helper.make_node("Mul", ["h", "x"], ["y"])],
              {"x": X}, ["y"], CONSTS)
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == ["HardSwish"]


def test_decomposed_hsigmoid():
    m = model([helper.make_node("Conv", ["x", "w"], ["x1"]), helper.make_node("Add", ["x1", "three"], ["t"]),
               clip("t", "c", 13), helper.make_node("Mul", ["c", "sixth"], ["y"])],
              {"x": X}, ["y"], {**CONSTS, "w": np.full((3, 3, 1, 1), 2.0, np.float32)})
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == ["Conv", "HardSigmoid"]
    hs = after.nodes[1]
    assert hs.attrs["alpha"] == pytest.approx(1 / 6) and hs.attrs["beta"] == 0.5 and hs.attrs["q_lut"]


@pytest.mark.parametrize("alpha,becomes", [(1 / 6, ["HardSwish"]), (0.2, ["HardSigmoid", "Mul"])])
def test_x_times_hardsigmoid(alpha, becomes):
    m = model([helper.make_node("HardSigmoid", ["x"], ["h"], alpha=alpha, beta=0.5),
               helper.make_node("Mul", ["x", "h"], ["y"])], {"x": X}, ["y"])
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == becomes
    assert after.nodes[0].attrs["q_lut"] is True


@pytest.mark.parametrize("order", [["x", "s"], ["s", "x"]])
def test_silu(order):
    m = model([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", order, ["y"])],
              {"x": X}, ["y"])
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == ["SiLU"] and after.nodes[0].attrs["q_lut"] is True


def test_sigmoid_times_other_tensor_is_not_silu():
    m = model([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x2", "s"], ["y"])],
              {"x": X, "x2": X}, ["y"])
    _, after, msgs = apply(m, recognize_activation)
    assert ops(after) == ["Sigmoid", "Mul"] and msgs == ["marked Sigmoid 'Sigmoid_0' for 256-entry LUT lowering"]


def test_intermediate_with_another_use_blocks_the_rewrite():
    # the Clip output is also a graph output: rewriting would lose it
    m = model(hswish_nodes("div", True, True), {"x": X}, ["y", "c"], CONSTS)
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == ["Add", "Clip", "Mul", "Div"]


def test_hand_typed_sixth_is_not_one_sixth():
    m = model(hswish_nodes("mul", True, True), {"x": X}, ["y"], dict(CONSTS, sixth=f32(0.16666)))
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert ops(after) == ["Add", "Clip", "Mul", "Mul"]


def test_other_clip_range_is_not_hswish():
    m = model(hswish_nodes("div", True, True), {"x": X}, ["y"], dict(CONSTS, six=f32(5.0)))
    _, after, _ = apply(m, recognize_activation, inputs=WIDE)
    assert "HardSwish" not in ops(after)


def test_tanh_and_sigmoid_are_marked_once():
    m = model([helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("Sigmoid", ["t"], ["y"])],
              {"x": X}, ["y"])
    _, after, msgs = apply(m, recognize_activation)
    assert [n.attrs.get("q_lut") for n in after.nodes] == [True, True] and len(msgs) == 2
    assert recognize_activation.run(after, PassOptions()) == []      # idempotent
