"""fold_gap: GlobalAveragePool -> 1x1 Conv folded into one full-window conv,
outputs unchanged on onnxruntime; refusals; and what it is for: the folded
model's int8 output is more accurate (reference interpreter vs float)."""
import warnings

import numpy as np
import pytest
from onnx import helper

from qdeploy.calibration.calibrate import calibrate
from qdeploy.float_run import run_float
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import PIPELINE, fold_gap
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.interpreter import run
from qdeploy.quant.quantizer import quantize_graph
from tests.helpers import model
from tests.passes.build import apply, ops, rand

X = (1, 4, 5, 6)


def se_model(conv_attrs=None, w_shape=(3, 4, 1, 1), extra_reader=False, pool_out=False, act="Relu",
             column_scale=None):
    rng = np.random.default_rng(1)
    w = rand(rng, *w_shape) * (1 if column_scale is None else np.float32(column_scale)[:, None, None])
    inits = {"w": w, "b": rand(rng, w_shape[0])}
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["m"], name="pool"),
             helper.make_node("Conv", ["m", "w", "b"], ["c"], name="squeeze", **(conv_attrs or {})),
             helper.make_node(act, ["c"], ["y"], name="act")]
    outs = ["y"]
    if extra_reader:
        nodes.append(helper.make_node("Neg", ["m"], ["n"], name="other"))
        outs.append("n")
    if pool_out:
        outs.append("m")
    return model(nodes, {"x": X}, outs, inits)


def test_pool_and_1x1_conv_become_one_full_window_conv():
    before, after, msgs = apply(se_model(), fold_gap)
    assert ops(after) == ["Conv", "Relu"]
    conv = after.node("squeeze")
    assert conv.inputs[0] == "x" and conv.attrs["kernel_shape"] == [5, 6] and conv.attrs["pads"] == [0, 0, 0, 0]
    w0, w1 = before.const(before.node("squeeze").inputs[1]), after.const(conv.inputs[1])
    assert w1.shape == (3, 4, 5, 6) and np.allclose(w1, np.broadcast_to(w0 / 30, w1.shape))
    assert "m" not in after.tensors and after.const(conv.inputs[2]) is not None    # bias kept
    assert msgs == ["folded GlobalAveragePool 'pool' into Conv 'squeeze' (kernel 5x6: "
                    f"{29 * 4 * 3} more MACs and weights)"]


@pytest.mark.parametrize("case", [
    dict(extra_reader=True),                         # the mean is read elsewhere too
    dict(pool_out=True),                             # the mean is a graph output
    dict(w_shape=(4, 2, 1, 1), conv_attrs={"group": 2}),
    dict(w_shape=(3, 4, 3, 3), conv_attrs={"pads": [1, 1, 1, 1]}),
    dict(conv_attrs={"pads": [1, 1, 1, 1]}),        # a padded 1x1 conv makes a 3x3 map
])
def test_refusals_leave_the_graph_alone(case):
    _, after, msgs = apply(se_model(**case), fold_gap)
    assert msgs == [] and "GlobalAveragePool" in ops(after)


def test_not_in_the_default_pipeline():
    """It trades memory and MACs for precision: only `quantize --fold-gap` runs it."""
    assert fold_gap not in PIPELINE


def test_folded_int8_model_is_more_accurate():
    """One large channel sets the scale of the mean; the small channels, which
    the conv weighs heavily, vary by less than that scale's step, so the int8
    mean loses them. Folded, the conv sums their int8 values at the input's own
    (finer) step and only its output is rounded."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (48,) + X[1:]).astype(np.float32) * np.array([40, 1, 1, 1], np.float32)[:, None, None]
    g = import_onnx(se_model(act="Identity", column_scale=[0.01, 1, 1, 1]))
    folded = g.copy()
    assert fold_gap.run(folded)
    cal, ev = x[:32], x[32:]
    res = []
    for graph in (g, folded):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qg = quantize_graph(graph, calibrate(graph, cal, progress=False).bounds(), "arm")
        ref = np.concatenate([run_float(graph, {"x": ev[i:i + 1]})["y"] for i in range(len(ev))])
        res.append(sqnr_db(ref, run(qg, ev)["y"]))
    assert res[1] > res[0] + 3, res      # 22.2 -> 26.3 dB
