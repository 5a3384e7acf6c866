"""Import folds to a fixed point: once the input shapes are fixed, every shape
subgraph disappears, including a Shape of a tensor that only gets a static
shape after an earlier Reshape folded (Paddle's and PyTorch's head patterns)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, shape_inference

from qdeploy.onnx_import import import_onnx
from tests.helpers import model
from tests.passes.build import rand
from tests.test_import import assert_same_as_original, i64, ops

RNG = np.random.default_rng(3)
SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Concat", "Cast", "Slice", "Div", "ConstantOfShape", "Size"}


def paddle_head():
    """Paddle's classifier head: the logits come out of a Reshape whose target is
    computed (Shape -> Cast -> Div -> Cast -> Slice -> Concat), and the softmax
    is reshaped back to ``Shape(logits)``."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[1, 1]),
             n("Shape", ["y"], ["s"], name="shape_y"),
             n("Cast", ["s"], ["sf"], name="to_float", to=TensorProto.FLOAT),
             n("Div", ["sf", "one_f"], ["sh"], name="div"),
             n("Cast", ["sh"], ["si"], name="to_int", to=TensorProto.INT64),
             n("Slice", ["si", "z", "o", "z"], ["s0"], name="batch"),
             n("Concat", ["s0", "m1"], ["target"], name="cat", axis=0),
             n("Reshape", ["y", "target"], ["logits"], name="flatten"),
             n("Softmax", ["logits"], ["p"], name="softmax", axis=-1),
             n("Shape", ["logits"], ["ls"], name="Shape_232"),
             n("Reshape", ["p", "ls"], ["out"], name="reshape_back")]
    return model(nodes, {"x": ("N", 8, "H", "W")}, ["out"],
                 {"w": rand(RNG, 8, 8, 1, 1), "one_f": np.float32(1), "z": i64(0), "o": i64(1), "m1": i64(-1)})


def torch_head():
    """PyTorch's ``y = x.view(x.size(0), -1); z = fc(y).view(y.size(0), y.size(1) // 4, 2, 2)``:
    the second view reads the shape of the first view's output."""
    n = helper.make_node
    nodes = [n("Relu", ["x"], ["r"], name="relu"),
             n("Shape", ["r"], ["s"], name="shape_r"),
             n("Gather", ["s", "zero"], ["b"], name="g0", axis=0),
             n("Unsqueeze", ["b", "ax"], ["b1"], name="u0"),
             n("Concat", ["b1", "m1"], ["t1"], name="cat0", axis=0),
             n("Reshape", ["r", "t1"], ["flat"], name="view0"),
             n("Gemm", ["flat", "w", "bias"], ["fc"], name="fc", transB=1),
             n("Shape", ["flat"], ["s2"], name="shape_flat"),
             n("Gather", ["s2", "zero"], ["b2"], name="g1", axis=0),
             n("Gather", ["s2", "one"], ["c2"], name="g2", axis=0),
             n("Div", ["c2", "four"], ["c4"], name="div"),
             n("Unsqueeze", ["b2", "ax"], ["b3"], name="u1"),
             n("Unsqueeze", ["c4", "ax"], ["c5"], name="u2"),
             n("Concat", ["b3", "c5", "two2"], ["t2"], name="cat1", axis=0),
             n("Reshape", ["fc", "t2"], ["y"], name="view1")]
    return model(nodes, {"x": ("N", 4, "H", "W")}, ["y"],
                 {"zero": np.int64(0), "one": np.int64(1), "ax": i64(0), "m1": i64(-1), "four": np.int64(4),
                  "two2": i64(2, 2), "w": rand(RNG, 64, 64), "bias": rand(RNG, 64)})


def test_paddle_head_shape_of_folded_reshape_folds():
    m = paddle_head()
    g = import_onnx(m, (1, 8, 4, 4))
    assert ops(g) == ["Conv", "Reshape", "Softmax", "Reshape"]
    assert g.node("flatten").attrs["shape"] == (1, 128)
    assert g.node("reshape_back").attrs["shape"] == (1, 128)
    assert_same_as_original(m, g)


def test_torch_view_of_view_folds():
    m = torch_head()
    g = import_onnx(m, (1, 4, 4, 4))
    assert not SHAPE_OPS & set(ops(g))
    assert ops(g) == ["Relu", "Reshape", "Gemm", "Reshape"]
    assert g.node("view1").attrs["shape"] == (1, 16, 2, 2)
    assert_same_as_original(m, g)


@pytest.mark.parametrize("build", [paddle_head, torch_head])
def test_fixed_point_without_onnx_shape_inference(build, monkeypatch):
    """Where ONNX shape inference sees nothing, onnxruntime's shapes (the input
    shapes are fixed) still bring the fold to the same fixed point."""
    def broken(*a, **k):
        raise RuntimeError("no inference")
    m = build()
    monkeypatch.setattr(shape_inference, "infer_shapes", broken)
    g = import_onnx(m, (1, m.graph.input[0].type.tensor_type.shape.dim[1].dim_value, 4, 4))
    assert not SHAPE_OPS & set(ops(g))
    monkeypatch.undo()
    assert_same_as_original(m, g)
