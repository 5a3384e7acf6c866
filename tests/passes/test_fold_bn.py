"""fold_bn: BatchNormalization folded into Conv / ConvTranspose / Gemm (or a
lone one made a depthwise Conv), outputs unchanged on onnxruntime; refusals."""
import numpy as np
import pytest
from onnx import helper

from qdeploy.onnx_import import import_onnx
from qdeploy.passes import fold_bn
from tests.helpers import model
from tests.passes.build import apply, ops, rand


def bn_params(rng, c, prefix="bn"):
    return {f"{prefix}_g": rand(rng, c, lo=0.5, hi=2.0), f"{prefix}_b": rand(rng, c),
            f"{prefix}_m": rand(rng, c), f"{prefix}_v": rand(rng, c, lo=0.1, hi=3.0)}


def bn_node(x, y, prefix="bn", eps=1e-3):
    return helper.make_node("BatchNormalization", [x, f"{prefix}_g", f"{prefix}_b", f"{prefix}_m",
                                                   f"{prefix}_v"], [y], name=prefix, epsilon=eps)


@pytest.mark.parametrize("group,bias", [(1, True), (1, False), (2, True), (8, False)])
def test_conv_bn_folded(group, bias):
    rng = np.random.default_rng(group)
    c_in, c_out = 8, 8
    inits = {"w": rand(rng, c_out, c_in // group, 3, 3), **bn_params(rng, c_out)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rand(rng, c_out)
        ins.append("b")
    m = model([helper.make_node("Conv", ins, ["c"], name="conv", group=group, pads=[1, 1, 1, 1]),
               bn_node("c", "y"), helper.make_node("Relu", ["y"], ["z"])],
              {"x": (1, c_in, 6, 5)}, ["z"], inits)
    _, after, msgs = apply(m, fold_bn)
    assert ops(after) == ["Conv", "Relu"]
    assert msgs == ["folded BatchNormalization 'bn' into Conv 'conv'"]
    assert len(after.node("conv").inputs) == 3


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_bn_folded(group):
    rng = np.random.default_rng(10 + group)
    c_in, c_out = 4, 6          # weight [C_in, C_out/g, kH, kW]
    m = model([helper.make_node("ConvTranspose", ["x", "w"], ["c"], name="deconv", group=group,
                                strides=[2, 2]),
               bn_node("c", "y")],
              {"x": (1, c_in, 5, 4)}, ["y"], {"w": rand(rng, c_in, c_out // group, 3, 3), **bn_params(rng, c_out)})
    _, after, msgs = apply(m, fold_bn)
    assert ops(after) == ["ConvTranspose"]
    assert after.outputs == ["y"] and after.nodes[0].outputs == ["y"]   # output name kept
    assert "into ConvTranspose 'deconv'" in msgs[0]


def test_gemm_bn_folded():
    rng = np.random.default_rng(3)
    m = model([helper.make_node("Gemm", ["x", "w", "b"], ["f"], name="fc", transB=1),
               bn_node("f", "y")],
              {"x": (2, 5)}, ["y"], {"w": rand(rng, 7, 5), "b": rand(rng, 7), **bn_params(rng, 7)})
    _, after, _ = apply(m, fold_bn)
    assert ops(after) == ["Gemm"]


def test_lone_bn_becomes_depthwise_conv():
    rng = np.random.default_rng(4)
    m = model([helper.make_node("Add", ["x", "x2"], ["s"]), bn_node("s", "y"),
               bn_node("x", "y2", prefix="bn2")],
              {"x": (1, 3, 4, 4), "x2": (1, 3, 4, 4)}, ["y", "y2"],
              {**bn_params(rng, 3), **bn_params(rng, 3, "bn2")})
    _, after, msgs = apply(m, fold_bn)
    assert ops(after) == ["Add", "Conv", "Conv"]
    for name in ("bn", "bn2"):
        conv = after.node(name)
        assert conv.attrs["group"] == 3 and after.shape(conv.inputs[1]) == (3, 1, 1, 1)
    assert all("depthwise 1x1 Conv (group=3)" in s for s in msgs)


def test_bn_after_shared_conv_output_is_not_folded():
    rng = np.random.default_rng(5)
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), bn_node("c", "y"),
               helper.make_node("Relu", ["c"], ["r"])],
              {"x": (1, 2, 4, 4)}, ["y", "r"], {"w": rand(rng, 3, 2, 1, 1), **bn_params(rng, 3)})
    before, after, _ = apply(m, fold_bn)
    assert after.node("conv").inputs == before.node("conv").inputs     # weights untouched
    assert after.node("bn").op == "Conv" and after.node("bn").attrs["group"] == 3


def test_bn_not_folded_into_clamped_producer():
    rng = np.random.default_rng(6)
    g = import_onnx(model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), bn_node("c", "y")],
                          {"x": (1, 2, 4, 4)}, ["y"], {"w": rand(rng, 3, 2, 1, 1), **bn_params(rng, 3)}))
    g.node("conv").attrs.update(q_clamp=(0.0, 6.0), q_act="relu6")   # as fuse_activation leaves it
    _, after, _ = apply(g, fold_bn)
    assert ops(after) == ["Conv", "Conv"] and after.node("bn").attrs["group"] == 3


def test_2d_lone_bn_is_left_alone():
    rng = np.random.default_rng(7)
    m = model([bn_node("x", "y")], {"x": (2, 4)}, ["y"], bn_params(rng, 4))
    _, after, msgs = apply(m, fold_bn)
    assert ops(after) == ["BatchNormalization"] and msgs == []


def test_scale_and_shift_match_numpy_reference():
    """The folded weights equal the BN formula applied by hand (not only on onnxruntime)."""
    rng = np.random.default_rng(8)
    p = bn_params(rng, 2)
    w = rand(rng, 2, 1, 1, 1)
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), bn_node("c", "y", eps=1e-5)],
              {"x": (1, 1, 2, 2)}, ["y"], {"w": w, **p})
    _, after, _ = apply(m, fold_bn)
    conv = after.node("conv")
    scale = p["bn_g"] / np.sqrt(p["bn_v"] + 1e-5)
    np.testing.assert_allclose(after.const(conv.inputs[1]).reshape(-1), w.reshape(-1) * scale, rtol=1e-6)
    np.testing.assert_allclose(after.const(conv.inputs[2]), p["bn_b"] - p["bn_m"] * scale, rtol=1e-5, atol=1e-7)
