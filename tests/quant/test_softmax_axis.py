"""Softmax over any axis (the passes make it Transpose -> last-axis Softmax ->
Transpose) and the other axis ops (Concat, Split, Slice) on non-channel axes:
exact in the reference interpreter, checked on YOLOv8's DFL head."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from qdeploy.float_run import run_samples
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import softmax_axis
from qdeploy.quant import recipes
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.interpreter import quantize_inputs, run, run_int
from tests.helpers import model
from tests.passes.build import apply
from tests.quant.oneop import lsb_check, pipeline

RNG = np.random.default_rng(10)
N = 48   # anchors


def dfl_head():
    """YOLOv8 ``Detect.dfl``: box logits [1, 64, N] -> view(1, 4, 16, N) ->
    transpose(2, 1) -> softmax over the 16 bins (axis 1) -> 1x1 Conv with
    weights arange(16) (the expected bin) -> view(1, 4, N)."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["feat"], name="box_conv", kernel_shape=[1, 1]),
             n("Reshape", ["feat", "s1"], ["v"], name="view"),
             n("Transpose", ["v"], ["t"], name="swap", perm=[0, 2, 1, 3]),
             n("Softmax", ["t"], ["p"], name="/model.22/dfl/Softmax", axis=1),
             n("Conv", ["p", "arange"], ["e"], name="dfl_conv", kernel_shape=[1, 1]),
             n("Reshape", ["e", "s2"], ["box"], name="view_out")]
    return model(nodes, {"x": (1, 8, 1, N)}, ["box"],
                 {"w0": (RNG.standard_normal((64, 8, 1, 1)) * 2).astype(np.float32),
                  "b0": RNG.standard_normal(64).astype(np.float32),
                  "s1": np.array([1, 4, 16, N], np.int64),
                  "arange": np.arange(16, dtype=np.float32).reshape(1, 16, 1, 1),
                  "s2": np.array([1, 4, N], np.int64)})


def test_pass_moves_softmax_to_last_axis():
    before, after, msgs = apply(dfl_head(), softmax_axis,
                                inputs={"x": RNG.standard_normal((1, 8, 1, N)).astype(np.float32)})
    assert [m.split("'")[1] for m in msgs] == ["/model.22/dfl/Softmax"]
    sm = after.node("/model.22/dfl/Softmax")
    assert sm.attrs["axis"] == 3 and after.shape(sm.inputs[0]) == (1, N, 4, 16)
    ops = [n.op for n in after.nodes]
    assert ops == ["Conv", "Reshape", "Transpose", "Transpose", "Softmax", "Transpose", "Conv", "Reshape"]


def test_softmax_with_unit_tail_becomes_reshapes():
    m = model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {"x": (1, 10, 1, 1)}, ["y"])
    _, after, msgs = apply(m, softmax_axis, inputs={"x": RNG.standard_normal((1, 10, 1, 1)).astype(np.float32)})
    assert [n.op for n in after.nodes] == ["Reshape", "Softmax", "Reshape"] and "Reshape" in msgs[0]
    assert after.outputs == ["y"] and after.shape("y") == (1, 10, 1, 1)


@pytest.mark.parametrize("target", ["arm", "ort"])
def test_dfl_head_quantizes_and_softmax_is_axis_exact(target):
    x = {"x": RNG.standard_normal((6, 8, 1, N)).astype(np.float32)}
    g, qg = pipeline(dfl_head(), x, target)
    sm = [q for q in qg.nodes if q.op == "Softmax"]
    assert len(sm) == 1 and sm[0].attrs["axis"] in (-1, 3)
    ints = run_int(qg, quantize_inputs(qg, x), keep=True)
    # the moved softmax gives exactly the same integers as the same recipe over axis 1
    t_in = ints[qg.producer(sm[0].inputs[0]).inputs[0]]
    want = recipes.softmax_eval(t_in, sm[0].params, axis=1).astype(np.int64)
    if target == "ort":
        want = want + 128
    out = qg.producer(sm[0].outputs[0])
    after = [q for q in qg.nodes if sm[0].outputs[0] in q.inputs][0]
    np.testing.assert_array_equal(ints[after.outputs[0]], want)
    assert out is sm[0]
    # 16 softmax bins at 1/256 summed with weights up to 15: measured 37-38 dB
    got, ref = run(qg, x)["box"], run_samples(g, x)["box"]
    assert sqnr_db(ref, got) > 32


def test_axis_ops_on_non_channel_axes_are_exact():
    """Concat over W, Split over H, Slice over the last axis of a rank-3 view:
    their integers are numpy's ops on the input integers."""
    n = helper.make_node
    m = model([n("Concat", ["a", "b"], ["c"], axis=3),
               n("Split", ["c", "sizes"], ["s0", "s1"], axis=2),
               n("Reshape", ["s1", "shape"], ["r"]),
               n("Slice", ["r", "st", "en", "ax"], ["sl"])],
              {"a": (1, 2, 4, 3), "b": (1, 2, 4, 5)}, ["s0", "sl"],
              {"sizes": np.array([1, 3], np.int64), "shape": np.array([1, 6, 8], np.int64),
               "st": np.array([2]), "en": np.array([7]), "ax": np.array([-1])})
    x = {"a": RNG.standard_normal((3, 2, 4, 3)).astype(np.float32),
         "b": (RNG.standard_normal((3, 2, 4, 5)) * 3).astype(np.float32)}
    g, qg = pipeline(m, x, "arm")
    ints = run_int(qg, quantize_inputs(qg, x), keep=True)
    c = ints["c"] if "c" in ints else ints["c_q"]
    np.testing.assert_array_equal(ints["s0"], c[:, :, :1])
    np.testing.assert_array_equal(ints["sl"], c[:, :, 1:].reshape(3, 6, 8)[:, :, 2:7])
    lsb_check(qg, g, x)


def test_imported_graph_keeps_axis_until_the_pass():
    g = import_onnx(dfl_head())
    assert g.node("/model.22/dfl/Softmax").attrs["axis"] == 1
