"""GPTQ weight rounding (quant/gptq.py): the patches it builds against
onnxruntime's convolution, and the layer error it removes, measured on inputs it
did not see with onnxruntime running the float layer and the dequantized one."""
import numpy as np
import pytest
from onnx import helper

from qdeploy.float_run import run_samples
from qdeploy.quant import gptq
from qdeploy.quant.interpreter import run
from tests.helpers import model
from tests.quant.oneop import pipeline


def _conv(c_in, c_out, hw, k, strides, pads, dilations, group, w, b):
    return model([helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=list(strides), pads=list(pads),
                                   dilations=list(dilations), group=group, kernel_shape=[k, k])],
                 {"x": [1, c_in, *hw]}, ["y"], {"w": w.astype(np.float32), "b": b.astype(np.float32)})


GEOMETRIES = [  # strides, pads (ONNX order: top, left, bottom, right), dilations, group
    ((1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 2), (0, 1, 1, 0), (1, 1), 2),        # asymmetric pads
    ((1, 2), (2, 2, 2, 2), (2, 1), 6),        # depthwise, dilated
]


@pytest.mark.parametrize("strides,pads,dilations,group", GEOMETRIES)
def test_patches_times_the_weights_is_onnxruntimes_conv(strides, pads, dilations, group):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((12, 6 // group, 3, 3))
    x = rng.standard_normal((1, 6, 9, 8)).astype(np.float32)
    m = _conv(6, 12, (9, 8), 3, strides, pads, dilations, group, w, np.zeros(12))
    want = run_samples(pipeline(m, {"x": x})[0], {"x": x})["y"][0]            # (O, oh, ow)
    cols = gptq.patches(x, w.shape, {"strides": list(strides), "pads": list(pads),
                                     "dilations": list(dilations), "group": group})
    wg = w.reshape(group, 12 // group, -1)
    got = np.matmul(cols, np.swapaxes(wg, 1, 2))                               # (G, positions, O/G)
    got = np.swapaxes(got, 1, 2).reshape(12, *want.shape[1:])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _cancelling(group: int, seed: int = 0):
    """A conv whose inputs are dominated by a common level (a smooth image plus a
    small texture) and whose filters hold large taps of opposite sign: the case of
    ppocr_v5_rec's first depthwise conv, where nearest rounding's errors add up."""
    rng = np.random.default_rng(seed)
    c = 8
    w = rng.standard_normal((c, c // group, 3, 3)) * 0.05
    w[:, 0, 1, 1] += 10.0
    w[:, 0, 2, 1] -= 10.0 - rng.uniform(-0.05, 0.05, c)
    m = _conv(c, c, (12, 12), 3, (1, 1), (1, 1, 1, 1), (1, 1), group, w, rng.standard_normal(c) * 0.1)

    def inputs(n, s):
        r = np.random.default_rng(s)
        level = r.uniform(0.5, 2.0, (n, c, 1, 1))
        return (level + 0.02 * r.standard_normal((n, c, 12, 12))).astype(np.float32)
    return m, inputs(32, seed + 1), inputs(16, seed + 2)


def _layer_error(g, qg, x):
    """Sum of squared output errors of the float conv (onnxruntime) with the
    QGraph's dequantized weights against the float weights, on the same float
    input; and the output's signal power."""
    from qdeploy.onnx_import import import_onnx
    conv = next(n for n in g.nodes if n.op == "Conv")
    t = next(qg.tensor(n.inputs[1]) for n in qg.nodes if n.op == "Conv2D")
    w = g.const(conv.inputs[1])
    a, group = conv.attrs, int(conv.attrs.get("group", 1))

    def out(weights):
        m = _conv(w.shape[1] * group, w.shape[0], x.shape[2:], 3, a["strides"], a["pads"], a["dilations"], group,
                  weights, np.zeros(w.shape[0]))
        return run_samples(import_onnx(m), {"x": x})["y"]
    ref = out(w)
    got = out(t.data.astype(np.float64) * t.scale.reshape(-1, 1, 1, 1))
    return float(np.sum((got - ref) ** 2)), float(np.sum(ref ** 2))


@pytest.mark.parametrize("group", [1, 8])
def test_gptq_lowers_the_layer_error_on_unseen_inputs(group):
    m, cal, held = _cancelling(group)
    g, qg = pipeline(m, {"x": cal})
    wt = next(qg.tensor(n.inputs[1]) for n in qg.nodes if n.op == "Conv2D")
    bias = next(qg.tensor(n.inputs[2]) for n in qg.nodes if n.op == "Conv2D")
    nearest, scale, b0 = wt.data.copy(), wt.scale.copy(), bias.data.copy()
    before, signal = _layer_error(g, qg, held)
    msgs = gptq.round_weights(g, qg, cal)
    after, _ = _layer_error(g, qg, held)
    assert msgs and msgs[0].startswith("weight rounding (gptq): 1 of 1 layers"), msgs
    assert 10 * np.log10(before / after) > 6.0, (before, after, signal)
    # only the integers moved: same scales, same biases, same range and dtype
    np.testing.assert_array_equal(wt.scale, scale)
    np.testing.assert_array_equal(bias.data, b0)
    assert wt.data.dtype == nearest.dtype and np.abs(wt.data).max() <= 127
    assert np.any(wt.data != nearest)


def test_nearest_where_gptq_has_nothing_to_fix():
    """Inputs that are white noise (H = I times a constant): the OBS update has
    nothing to move, and GPTQ returns nearest rounding exactly."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 5, 1, 1))
    m = _conv(5, 4, (16, 16), 1, (1, 1), (0, 0, 0, 0), (1, 1), 1, w, np.zeros(4))
    cal = rng.standard_normal((8, 5, 16, 16)).astype(np.float32)
    g, qg = pipeline(m, {"x": cal})
    node = next(n for n in qg.nodes if n.op == "Conv2D")
    t = qg.tensor(node.inputs[1])
    h = np.eye(5)[None] * 100.0
    q = gptq._gptq(g.const(next(n for n in g.nodes if n.op == "Conv").inputs[1]).astype(np.float64), h,
                   t.scale, 127, 1)
    np.testing.assert_array_equal(q, t.data)


@pytest.mark.parametrize("wmax", [127, 63])
def test_integers_stay_in_the_targets_weight_range(wmax):
    """A tap near the end of its grid whose input is a tenth of another's: the
    other tap's rounding error (0.45 step) comes back 4.5 steps on it, past the
    grid's end, and it is clipped."""
    w = np.array([wmax / 2 - 0.05, wmax - 1]).reshape(1, 2, 1, 1) / wmax
    h = np.array([[[1.0, 0.1], [0.1, 0.0101]]]) * 100
    s = np.full(1, 1.0 / wmax)
    assert np.abs(gptq._gptq(w, h, s, 10 * wmax, 1)).max() > wmax     # unclipped, it would leave the range
    assert np.abs(gptq._gptq(w, h, s, wmax, 1)).max() == wmax


def test_fully_connected_with_fewer_samples_than_inputs_keeps_nearest():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 40)).astype(np.float32)
    m = model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], {"x": [1, 40]}, ["y"],
              {"w": w, "b": np.zeros(3, np.float32)})
    cal = rng.standard_normal((8, 40)).astype(np.float32)
    g, qg = pipeline(m, {"x": cal})
    t = next(qg.tensor(n.inputs[1]) for n in qg.nodes if n.op == "FullyConnected")
    nearest = t.data.copy()
    msgs = gptq.round_weights(g, qg, cal)
    assert "0 of 1 layers" in msgs[0] and "nearest rounding kept for 1 (fewer calibration input rows" in msgs[0], msgs
    np.testing.assert_array_equal(t.data, nearest)
    out = run(qg, {"x": cal[:1]})
    assert out


def test_integers_not_rounded_from_the_float_layer_are_left_alone():
    """GPTQ re-rounds from the float graph's weights: where the QGraph's integers are
    not their nearest rounding (a layer the float graph does not hold as it was
    quantized), that layer keeps its integers and the message says why."""
    m, cal, _ = _cancelling(1)
    g, qg = pipeline(m, {"x": cal})
    t = next(qg.tensor(n.inputs[1]) for n in qg.nodes if n.op == "Conv2D")
    t.data = t.data.copy()
    t.data.flat[0] += 1 if t.data.flat[0] < 127 else -1
    before = t.data.copy()
    msgs = gptq.round_weights(g, qg, cal)
    assert "0 of 1 layers" in msgs[0] and "its weights are not the float layer's: 1" in msgs[0], msgs
    np.testing.assert_array_equal(t.data, before)


def test_blocked_updates_equal_column_by_column(monkeypatch):
    """Rounding in blocks (the rest of the matrix updated once per block) is the same
    algebra as updating every later column after each one: the same integers."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((400, 20)) @ rng.standard_normal((20, 20))     # correlated inputs
    h = (x.T @ x)[None]
    w = rng.standard_normal((6, 20, 1, 1))
    s = np.abs(w.reshape(6, -1)).max(axis=1) / 127
    monkeypatch.setattr(gptq, "BLOCK", 1000)
    whole = gptq._gptq(w, h, s, 127, 1)
    monkeypatch.setattr(gptq, "BLOCK", 3)
    np.testing.assert_array_equal(gptq._gptq(w, h, s, 127, 1), whole)
    assert np.any(whole.reshape(6, -1) != np.round(w.reshape(6, -1) / s[:, None]))
