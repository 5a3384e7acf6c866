"""Empirical bias correction: the mean-output formula against a direct
convolution, and a measured reduction of the mean output error on a model whose
weights round with a deliberate bias."""
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from qdeploy.calibration.calibrate import calibrate
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes
from qdeploy.quant.bias_correction import correct_bias, mean_output
from qdeploy.quant.interpreter import run
from qdeploy.quant.quantizer import quantize_graph


def _direct_conv(x, w, b, strides, pads, dilations, group):
    """Plain loops over output positions (float64), independent of the tap trick."""
    t, l, bo, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)))
    n, c, h, wd = xp.shape
    o, cpg, kh, kw = w.shape
    oh = (h - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, o, oh, ow))
    opg = o // group
    for oc in range(o):
        g = oc // opg
        for i in range(oh):
            for j in range(ow):
                win = xp[:, g * cpg:(g + 1) * cpg,
                         i * strides[0]:i * strides[0] + dilations[0] * (kh - 1) + 1:dilations[0],
                         j * strides[1]:j * strides[1] + dilations[1] * (kw - 1) + 1:dilations[1]]
                y[:, oc, i, j] = (win * w[oc]).sum(axis=(1, 2, 3)) + b[oc]
    return y


@pytest.mark.parametrize("strides,pads,dilations,group", [
    ((1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 2), (0, 1, 1, 0), (1, 1), 2),
    ((1, 2), (2, 2, 2, 2), (2, 1), 6),
])
def test_mean_output_equals_mean_of_direct_conv(strides, pads, dilations, group):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 9, 8)) + 0.5
    w = rng.standard_normal((12, 6 // group, 3, 3))
    b = rng.standard_normal(12)
    attrs = {"strides": list(strides), "pads": list(pads), "dilations": list(dilations), "group": group}
    want = _direct_conv(x, w, b, strides, pads, dilations, group).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(mean_output(x, w, b, attrs=attrs), want, rtol=1e-10, atol=1e-10)
    # fully connected
    w2 = rng.standard_normal((5, 7))
    x2 = rng.standard_normal((4, 7))
    np.testing.assert_allclose(mean_output(x2, w2, b[:5]), (x2 @ w2.T + b[:5]).mean(axis=0), rtol=1e-12)


def _biased_model(seed=0):
    """conv(3->16) + ReLU -> conv(16->16) + ReLU -> conv(16->8): the 2nd and 3rd
    layers' weights sit 0.45 LSB above a grid of their per-tensor int8 scale,
    so round-to-nearest truncates every weight in the same direction and the
    (positive, post-ReLU) inputs turn that into a mean output shift."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    cur, c_in = "x", 3
    for i, c_out in enumerate((16, 16, 8)):
        w = rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))
        if i > 0:
            step = np.abs(w).max() / 127
            w = (np.floor(w / step) + 0.45) * step
            w[0, 0, 0, 0] = 127 * step          # keeps the per-tensor scale on the grid
        b = rng.standard_normal(c_out) * 0.1
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        cur = f"c{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
            cur = f"r{i}"
        c_in = c_out
    graph = helper.make_graph(nodes, "biased", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return run_passes(import_onnx(model))


def _quantized(g, calib):
    r = calibrate(g, calib, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_graph(g, r.bounds(), "arm", per_tensor=True)


def _channel_mean_error(g, qg, x):
    from qdeploy.float_run import run_float
    ref = np.concatenate([run_float(g, x[i:i + 1])[g.outputs[0]] for i in range(len(x))])
    got = run(qg, x)[g.outputs[0]]
    return np.abs((got - ref).mean(axis=(0, 2, 3))), ref, got


@pytest.mark.parametrize("mode", ["weights", "full"])
def test_bias_correction_removes_a_deliberate_mean_shift(mode):
    g = _biased_model()
    rng = np.random.default_rng(1)
    calib = (rng.standard_normal((32, 3, 10, 10)) + 0.3).astype(np.float32)
    test = (rng.standard_normal((32, 3, 10, 10)) + 0.3).astype(np.float32)
    qg = _quantized(g, calib)
    before, ref, got0 = _channel_mean_error(g, qg, test)
    scale = qg.tensors[qg.outputs[0] + "_q"].s
    assert before.max() > 2 * scale, "the test model must have a real mean shift to correct"
    biases = {n.name: qg.tensors[n.inputs[2]].data.copy() for n in qg.nodes if n.op == "Conv2D"}
    msgs = correct_bias(g, qg, calib, mode=mode)
    assert len(msgs) == 3
    after, _, got1 = _channel_mean_error(g, qg, test)
    # measured on held-out inputs: the per-channel mean error shrinks several-fold
    assert after.mean() < before.mean() / 4, (before.mean(), after.mean())
    err0, err1 = np.mean((got0 - ref) ** 2), np.mean((got1 - ref) ** 2)
    assert err1 < err0 * 0.7
    # the correction is in the int32 biases only, and it moved them
    changed = [k for k, b in biases.items() if not np.array_equal(b, qg.tensors[
        next(n for n in qg.nodes if n.name == k).inputs[2]].data)]
    assert len(changed) >= 2


def test_bias_correction_converges():
    """Applying the correction a second time finds (almost) nothing left to
    correct: the fixed-point iteration has converged."""
    g = _biased_model(seed=3)
    rng = np.random.default_rng(2)
    calib = (rng.standard_normal((16, 3, 10, 10)) + 0.3).astype(np.float32)
    qg = _quantized(g, calib)
    correct_bias(g, qg, calib)
    before = _channel_mean_error(g, qg, calib)[0].mean()
    correct_bias(g, qg, calib)
    after = _channel_mean_error(g, qg, calib)[0].mean()
    assert after <= before * 1.5 + 1e-6


def test_bad_mode():
    g = _biased_model()
    x = np.zeros((2, 3, 10, 10), np.float32)
    with pytest.raises(ValueError):
        correct_bias(g, _quantized(g, x + 1), x, mode="bogus")
