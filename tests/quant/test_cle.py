"""Cross-layer equalization: float outputs preserved (onnxruntime before/after)
and per-channel weight ranges actually equalized."""
import math

import numpy as np
import pytest

from qdeploy.float_run import random_inputs, run_float
from qdeploy.ir import Graph, Node, Tensor
from qdeploy.quant.cle import equalize, find_pairs
from tests.helpers import assert_float_equal

RELU = (0.0, math.inf)


def _graph(layers, in_shape=(1, 3, 12, 12), seed=0):
    """A chain of layers: (op, c_out, group, q_clamp, act_node) where act_node is
    None or an unfused 'Relu'/'LeakyRelu' node after the layer. Per-channel
    weight magnitudes spread over ~3 decades, as in BN-folded MobileNets."""
    rng = np.random.default_rng(seed)
    tensors = {"x": Tensor("x", in_shape)}
    nodes, cur, c_in = [], "x", in_shape[1]
    for i, (op, c_out, group, clamp, act) in enumerate(layers):
        spread = 10.0 ** rng.uniform(-1.5, 1.5, size=c_out)
        if op == "Conv":
            w = rng.standard_normal((c_out, c_in // group, 3, 3)) * spread[:, None, None, None] * 0.2
            attrs = {"group": group, "pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}
        else:
            w = rng.standard_normal((c_out, c_in)) * spread[:, None] * 0.2
            attrs = {}
        b = rng.standard_normal(c_out) * spread * 0.1
        if clamp is not None:
            attrs["q_clamp"] = clamp
        wn, bn, out = f"w{i}", f"b{i}", f"t{i}"
        tensors[wn] = Tensor(wn, w.shape, "float32", w.astype(np.float32))
        tensors[bn] = Tensor(bn, b.shape, "float32", b.astype(np.float32))
        shape = (1, c_out) + (in_shape[2:] if op == "Conv" else ())
        tensors[out] = Tensor(out, shape)
        nodes.append(Node(op, f"layer{i}", [cur, wn, bn], [out], attrs))
        cur, c_in = out, c_out
        if act is not None:
            a = f"a{i}"
            tensors[a] = Tensor(a, shape)
            nodes.append(Node(act, f"act{i}", [cur], [a], {"alpha": 0.1} if act == "LeakyRelu" else {}))
            cur = a
    return Graph(nodes, tensors, ["x"], [cur])


def _spread(g, name):
    w = np.abs(g.const(name).reshape(g.const(name).shape[0], -1)).max(axis=1)
    return w.max() / w.min()


def _pair_ranges(g, w1, w2, group2=1):
    """Independent per-channel ranges: r1[c] over W1's output channel c, r2[c]
    over every weight of the next layer that reads channel c."""
    a, b = np.abs(g.const(w1)), np.abs(g.const(w2))
    r1 = a.reshape(a.shape[0], -1).max(axis=1)
    c = r1.size
    r2 = np.zeros(c)
    cpg, opg = b.shape[1], b.shape[0] // group2
    for ch in range(c):
        grp, local = divmod(ch, cpg)
        r2[ch] = b[grp * opg:(grp + 1) * opg, local].max()
    return r1, r2


def _check(layers, in_shape=(1, 3, 12, 12), **kw):
    g = _graph(layers, in_shape)
    before = g.copy()
    msgs = equalize(g, **kw)
    assert msgs and all("equalized" in m for m in msgs), msgs
    for seed in range(3):
        assert_float_equal(before, g, seed=seed)
    return before, g


def test_relu_chain_preserves_outputs_and_equalizes():
    before, g = _check([("Conv", 8, 1, RELU, None), ("Conv", 6, 1, None, None), ("Conv", 4, 1, RELU, None)])
    for w in ("w0", "w1"):
        assert _spread(g, w) < _spread(before, w) / 5
    r1, r2 = _pair_ranges(g, "w0", "w1")
    np.testing.assert_allclose(r1, r2, rtol=1e-2)


def test_depthwise_separable_chain():
    before, g = _check([("Conv", 8, 1, RELU, None), ("Conv", 8, 8, RELU, None), ("Conv", 5, 1, None, None)])
    # the depthwise layer sits in two pairs; the sweeps converge to the point
    # where both pairs are equalized at once (r1 = r2 per channel in each pair)
    for w1, w2, grp in (("w0", "w1", 8), ("w1", "w2", 1)):
        r1, r2 = _pair_ranges(g, w1, w2, grp)
        np.testing.assert_allclose(r1, r2, rtol=1e-2)
        r1b, r2b = _pair_ranges(before, w1, w2, grp)
        assert not np.allclose(r1b, r2b, rtol=0.5)
    assert _spread(g, "w1") < _spread(before, "w1") / 3
    assert len(find_pairs(g)) == 2


def test_grouped_second_layer_and_unfused_activation_nodes():
    _check([("Conv", 8, 1, None, "Relu"), ("Conv", 8, 2, None, "LeakyRelu"), ("Conv", 4, 4, None, None)])


def test_gemm_pair():
    before, g = _check([("Gemm", 16, 1, RELU, None), ("Gemm", 10, 1, None, None)], in_shape=(1, 20))
    assert _spread(g, "w0") < _spread(before, "w0") / 5


def _relu6_graph():
    g = _graph([("Conv", 8, 1, (0.0, 6.0), None), ("Conv", 8, 8, (0.0, 6.0), None), ("Conv", 4, 1, None, None)])
    x = random_inputs(g, 0)
    return g, x


def _minmax(g, x):
    acts = [n.output for n in g.nodes]
    out = run_float(g, x, expose=acts)
    return {k: (float(v.min()), float(v.max())) for k, v in out.items()}


def test_relu6_data_policy_equalizes_only_when_the_clamp_never_engages():
    g, x = _relu6_graph()
    ranges = _minmax(g, x)
    engaged = [n.name for n in g.nodes[:2] if ranges[n.output][1] >= 6.0]
    assert engaged, "test graph must reach the ReLU6 clip somewhere"
    # without ranges: nothing crosses a ReLU6, the graph is untouched
    g0 = g.copy()
    msgs = equalize(g0)
    assert all("skipped" in m for m in msgs) and len(msgs) == 2
    assert all(np.array_equal(g0.const(k), g.const(k)) for k in ("w0", "w1", "w2"))
    # with ranges: the pairs whose clamp never engaged are equalized, exactly
    g1 = g.copy()
    msgs = equalize(g1, ranges=ranges)
    done = [m for m in msgs if "equalized" in m]
    assert len(done) == 2 - len(engaged)
    assert_float_equal(g, g1, inputs=x)
    # scale the weights down so that no clamp engages: both pairs equalize, outputs identical
    small = g.copy()
    for k in ("w0", "b0"):
        small.tensors[k] = Tensor(k, small.shape(k), "float32", small.const(k) * np.float32(1e-3))
    ranges = _minmax(small, x)
    assert all(ranges[n.output][1] < 6.0 for n in small.nodes[:2])
    eq = small.copy()
    msgs = equalize(eq, ranges=ranges)
    assert sum("equalized" in m for m in msgs) == 2
    assert_float_equal(small, eq, inputs=x)
    assert _spread(eq, "w1") < _spread(small, "w1") / 3
    # the loosened clamp is above 6 and still finite
    assert all(6.0 <= n.attrs["q_clamp"][1] < math.inf for n in eq.nodes[:2])


def test_relu6_relax_policy_moves_the_clip_point():
    g, x = _relu6_graph()
    eq = g.copy()
    msgs = equalize(eq, relu6="relax")
    assert sum("equalized" in m for m in msgs) == 2
    # where no ReLU6 engages (tiny inputs) the function is unchanged ...
    tiny = {"x": x["x"] * np.float32(1e-3)}
    assert_float_equal(g, eq, inputs=tiny)
    # ... and where it does, the relaxed clamp lets values through: outputs differ
    big = {"x": x["x"] * np.float32(100.0)}
    a, b = run_float(g, big)[g.outputs[0]], run_float(eq, big)[g.outputs[0]]
    assert np.abs(a - b).max() > 1e-2 * np.abs(a).max()


def test_shared_or_exposed_intermediates_are_not_paired():
    g = _graph([("Conv", 8, 1, RELU, None), ("Conv", 6, 1, None, None)])
    g.outputs.append("t0")                     # layer0's output is a graph output too
    assert find_pairs(g) == []
    g = _graph([("Conv", 8, 1, (-1.0, 1.0), None), ("Conv", 6, 1, None, None)])
    msgs = equalize(g)
    assert len(msgs) == 1 and "lower bound" in msgs[0]


def test_zero_channel_is_left_alone():
    g = _graph([("Conv", 8, 1, RELU, None), ("Conv", 6, 1, None, None)])
    w = g.const("w0").copy()
    w[3] = 0
    g.tensors["w0"] = Tensor("w0", w.shape, "float32", w)
    before = g.copy()
    equalize(g)
    assert np.all(np.isfinite(g.const("w1"))) and not np.any(g.const("w0")[3])
    assert_float_equal(before, g)


@pytest.mark.parametrize("policy", ["bogus"])
def test_bad_policy(policy):
    with pytest.raises(ValueError):
        equalize(_graph([("Conv", 4, 1, None, None)]), relu6=policy)


# ---------------------------------------------------------------- per-channel selection
def _set_w(g, name, value):
    g.tensors[name] = Tensor(name, value.shape, "float32", value.astype(np.float32))


def _two_conv(first_rows):
    """Conv(1x1, 4 ch, per-row scale ``first_rows``) -> ReLU -> Conv: the
    tensor between them has per-channel ranges proportional to ``first_rows``
    (the input is positive and the first weights are a positive diagonal)."""
    g = _graph([("Conv", 4, 1, RELU, None), ("Conv", 3, 1, None, None)], in_shape=(1, 4, 6, 6))
    w1 = np.zeros((4, 4, 3, 3))
    w1[np.arange(4), np.arange(4), 1, 1] = first_rows
    _set_w(g, "w0", w1)
    _set_w(g, "b0", np.zeros(4))
    return g


def _samples(n=6):
    return np.abs(np.random.default_rng(3).standard_normal((n, 4, 6, 6))).astype(np.float32)


def test_int8_sqnr_model_matches_quantizing_the_tensor():
    """The selection's noise model (uniform rounding noise over one per-tensor
    step) against actually quantizing a tensor with uneven channels."""
    from qdeploy.quant.cle import _int8_sqnr
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((4, 20000))) * np.array([[0.1], [1.0], [3.0], [0.5]])
    hi, lo, m2 = x.max(axis=1), np.zeros(4), (x ** 2).mean(axis=1)
    for s in (np.ones(4), np.array([0.2, 1.0, 2.5, 0.4])):
        y = x / s[:, None]
        step = y.max() / 255
        err = np.round(y / step) * step - y
        measured = 10 * np.log10(np.sum((y ** 2).mean(axis=1)) / np.sum((err ** 2).mean(axis=1)))
        assert _int8_sqnr(hi, lo, m2, s) == pytest.approx(measured, abs=0.2)


def test_selection_keeps_pairs_that_even_out_the_activation_channels():
    """Per-channel weights: a pair is equalized when CLE's scales make the
    tensor between the layers more even (higher int8 SQNR), kept as is when they
    make it less even; either way the float outputs are unchanged."""
    from qdeploy.pipeline import equalize_graph
    from qdeploy.quant.cle import select_for_activations
    x = _samples()
    # uneven activation channels whose weight rows are uneven the same way: CLE evens both out
    g = _two_conv(np.array([0.05, 1.0, 8.0, 0.3]))
    keep, msgs = select_for_activations(g, x)
    assert keep == {"layer0"} and "CLE equalize Conv 'layer0'" in msgs[0]
    before = g.copy()
    assert equalize_graph(g, x, select=True)
    assert_float_equal(before, g)
    # even activation channels: equalizing the weights would make them uneven
    g = _two_conv(np.ones(4))
    g.tensors["w1"].data[:, 2] *= 50.0           # one input column of the second layer dominates
    keep, msgs = select_for_activations(g, x)
    assert keep == set() and "keep as is" in msgs[0]
    assert not equalize_graph(g, x, select=True)
    assert equalize_graph(g, x, select=False)  # per-tensor weights or --cle: every pair


def test_clamped_depthwise_channels_fill_the_clamp_range():
    """ReLU6 output that saturates in one channel, read by a depthwise conv:
    CLE skips the pair; fit_clamped_depthwise scales every unsaturated channel
    up to fill [0, 6] (with 1.25x headroom over its calibration max) and leaves
    the saturated one alone. The model is unchanged on the calibration samples
    (the new clip points are never reached there) and the clamp stays 6."""
    from qdeploy.calibration.calibrate import calibrate
    from qdeploy.float_run import channel_stats, run_samples
    from qdeploy.quant.cle import fit_clamped_depthwise
    g = _graph([("Conv", 4, 1, (0.0, 6.0), None), ("Conv", 4, 4, None, None)], in_shape=(1, 4, 6, 6))
    w1 = np.zeros((4, 4, 3, 3))
    w1[np.arange(4), np.arange(4), 1, 1] = [0.05, 1.0, 20.0, 0.3]
    _set_w(g, "w0", w1)
    _set_w(g, "b0", np.zeros(4))
    x = _samples(8)
    ranges = calibrate(g, x, method="minmax", progress=False)
    assert equalize(g.copy(), ranges) == [
        "CLE skipped Conv 'layer0' -> Conv 'layer1': the ReLU6 clamp at 6 is reached on the calibration data (max 6)"]
    before = channel_stats(g, x, ["t0"])["t0"][0]
    ref = run_samples(g, x)
    msgs = fit_clamped_depthwise(g, x, ranges)
    assert len(msgs) == 1 and "3 of 4 unsaturated channels scaled up" in msgs[0]
    after = channel_stats(g, x, ["t0"])["t0"][0]
    assert before[2] == after[2] == 6.0
    np.testing.assert_allclose(after[[0, 1, 3]], 6.0 / 1.25, rtol=1e-5)
    assert g.node("layer0").attrs["q_clamp"] == (0.0, 6.0)
    np.testing.assert_allclose(run_samples(g, x)["t1"], ref["t1"], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- pairs through channel-wise ops
def _onnx_graph(nodes, outputs, inits, in_shape=(1, 4, 8, 8)):
    from qdeploy.onnx_import import import_onnx
    from qdeploy.passes import run_passes
    from tests.helpers import model
    return run_passes(import_onnx(model(nodes, {"x": in_shape}, outputs, inits)))


def _uneven(rng, o, i, k=1):
    """Conv weights whose output rows span ~3 decades (as after BN folding)."""
    return (rng.standard_normal((o, i, k, k)) * 10.0 ** rng.uniform(-1.5, 1.5, (o, 1, 1, 1))).astype(np.float32)


def _se_graph(head=False):
    """x -> Conv P (ReLU) -> squeeze-excite: y = P * HardSigmoid(Conv2(ReLU(Conv1(GAP(P))))) -> Conv3.
    ``head``: P -> GAP -> Conv1 only (a pooled classifier head)."""
    from onnx import helper
    rng = np.random.default_rng(5)
    n = [helper.make_node("Conv", ["x", "Wp", "Bp"], ["p"]), helper.make_node("Relu", ["p"], ["pr"]),
         helper.make_node("GlobalAveragePool", ["pr"], ["gap"]), helper.make_node("Conv", ["gap", "W1"], ["s1"])]
    inits = {"Wp": _uneven(rng, 8, 4, 3), "Bp": rng.standard_normal(8).astype(np.float32),
             "W1": _uneven(rng, 4, 8), "W2": _uneven(rng, 8, 4), "W3": _uneven(rng, 6, 8)}
    if head:
        return _onnx_graph(n, ["s1"], inits)
    n += [helper.make_node("Relu", ["s1"], ["s1r"]), helper.make_node("Conv", ["s1r", "W2"], ["s2"]),
          helper.make_node("HardSigmoid", ["s2"], ["gate"], alpha=1 / 6, beta=0.5),
          helper.make_node("Mul", ["pr", "gate"], ["y"]), helper.make_node("Conv", ["y", "W3"], ["out"])]
    return _onnx_graph(n, ["out"], inits)


def test_squeeze_excite_block_is_one_pair_with_two_readers():
    g = _se_graph()
    pairs = {p.first.name: p for p in find_pairs(g)}
    first = next(n for n in g.nodes if n.op == "Conv" and n.inputs[0] == "x")
    p = pairs[first.name]
    assert [g.producer(t).op for t in p.between] == ["Conv", "GlobalAveragePool", "Mul"]
    assert len(p.seconds) == 2 and {n.inputs[0] for n in p.seconds} == set(p.between[1:])
    before = g.copy()
    msgs = equalize(g, only={first.name})
    assert len(msgs) == 1 and msgs[0].startswith(f"CLE equalized {p.label()}")
    for seed in range(3):          # the gate is unchanged: the squeeze conv absorbed the scales
        assert_float_equal(before, g, seed=seed)
    # r1 = max over both readers of r2, per channel
    r1 = np.abs(g.const(first.inputs[1])).reshape(8, -1).max(axis=1)
    r2 = np.max([np.abs(g.const(s.inputs[1])).max(axis=(0, 2, 3)) for s in p.seconds], axis=0)
    np.testing.assert_allclose(r1, r2, rtol=1e-3)


def test_pooled_head_is_not_a_pair():
    g = _se_graph(head=True)
    assert find_pairs(g) == []


def test_maxpool_and_fan_out_pairs_preserve_the_model():
    """Conv -> MaxPool -> Conv, and a conv read by two convs (a SqueezeNet fire
    module's squeeze -> expand 1x1 / expand 3x3)."""
    from onnx import helper
    rng = np.random.default_rng(6)
    g = _onnx_graph([helper.make_node("Conv", ["x", "Wa"], ["a"], pads=[1, 1, 1, 1]),
                     helper.make_node("Relu", ["a"], ["ar"]),
                     helper.make_node("MaxPool", ["ar"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
                     helper.make_node("Conv", ["m", "Wb"], ["b"]), helper.make_node("Relu", ["b"], ["br"]),
                     helper.make_node("Conv", ["br", "Wc"], ["c"]),
                     helper.make_node("Conv", ["br", "Wd"], ["d"], pads=[1, 1, 1, 1]),
                     helper.make_node("Concat", ["c", "d"], ["out"], axis=1)], ["out"],
                    {"Wa": _uneven(rng, 8, 4, 3), "Wb": _uneven(rng, 6, 8), "Wc": _uneven(rng, 5, 6),
                     "Wd": _uneven(rng, 5, 6, 3)})
    pairs = {p.first.inputs[1]: p for p in find_pairs(g)}
    assert [g.producer(t).op for t in pairs["Wa"].between] == ["Conv", "MaxPool"]
    assert sorted(s.inputs[1] for s in pairs["Wb"].seconds) == ["Wc", "Wd"]
    assert "Wc" not in pairs and "Wd" not in pairs          # their outputs meet in a Concat
    before = g.copy()
    unchecked = g.copy()
    assert len(equalize(g)) == 2
    for seed in range(3):
        assert_float_equal(before, g, seed=seed)
    # without a data check (per-tensor weights) a first layer with several readers is left alone
    msgs = equalize(unchecked, several=False)
    assert [m.split(":")[0] for m in msgs] == [f"CLE skipped {pairs['Wb'].label()}", f"CLE equalized {pairs['Wa'].label()}"]
    assert np.array_equal(unchecked.const("Wc"), before.const("Wc"))


def test_square_of_a_rescaled_tensor_stops_the_pair():
    """x * relu(x) is not homogeneous of degree 1: rescaling x changes it."""
    from onnx import helper
    rng = np.random.default_rng(7)
    g = _onnx_graph([helper.make_node("Conv", ["x", "Wa"], ["a"]), helper.make_node("Relu", ["a"], ["ar"]),
                     helper.make_node("Mul", ["a", "ar"], ["m"]), helper.make_node("Conv", ["m", "Wb"], ["out"])],
                    ["out"], {"Wa": _uneven(rng, 8, 4), "Wb": _uneven(rng, 6, 8)})
    assert find_pairs(g) == []


def test_selection_of_a_pair_with_two_readers_also_needs_less_noise_at_their_outputs(monkeypatch):
    """Two readers: kept only when the rescaled tensors' int8 SQNR rises and the
    noise model at the readers' outputs falls; the message gives both."""
    from qdeploy.quant import cle
    g = _se_graph()
    first = next(n for n in g.nodes if n.op == "Conv" and n.inputs[0] == "x").name
    x = np.random.default_rng(8).standard_normal((6, 4, 8, 8)).astype(np.float32)
    keep, msgs = cle.select_for_activations(g, x)
    msg = next(m for m in msgs if f"'{first}' ->" in m)
    assert first in keep and msg.startswith("CLE equalize ") and "int8 noise at the readers' outputs +" in msg
    monkeypatch.setattr(cle, "_second_noise", lambda g, p, stats, s: 1.0 if np.all(s == 1) else 2.0)
    keep, msgs = cle.select_for_activations(g, x)
    msg = next(m for m in msgs if f"'{first}' ->" in m)
    assert first not in keep and msg.startswith("CLE keep as is ") and "outputs -3.0 dB" in msg


def test_second_noise_model_matches_quantizing_input_and_weights():
    """_second_noise against actually quantizing a 1x1 reader's input per tensor
    and its weights per row, with and without a channel rescaling."""
    from qdeploy.ir import Graph, Node, Tensor
    from qdeploy.quant.cle import Pair, _second_noise
    rng = np.random.default_rng(9)
    c, o, n = 6, 5, 40000
    spread = np.array([0.05, 0.3, 1.0, 2.0, 0.1, 4.0])
    u = np.abs(rng.standard_normal((c, n))) * spread[:, None]
    w = rng.standard_normal((o, c, 1, 1)) * np.array([3.0, 1.0, 0.5, 0.2, 2.0, 0.1])[None, :, None, None]
    g = Graph([Node("Conv", "second", ["u", "w"], ["y"], {})],
              {"u": Tensor("u", (1, c, 1, 1)), "w": Tensor("w", w.shape, "float32", w.astype(np.float32)),
               "y": Tensor("y", (1, o, 1, 1))}, ["u"], ["y"])
    p = Pair(g.nodes[0], (g.nodes[0],), ("u",))
    stats = {"u": (u.max(axis=1), np.zeros(c), (u ** 2).mean(axis=1))}
    for s in (np.ones(c), spread / np.sqrt(spread.max() * spread)):
        us, ws = u / s[:, None], w[:, :, 0, 0].astype(np.float32).astype(np.float64) * s[None, :]
        step = us.max() / 255
        uq = np.round(us / step) * step
        rs = np.abs(ws).max(axis=1, keepdims=True) / 127
        wq = np.round(ws / rs) * rs
        noise = np.sum((wq @ uq - ws @ us) ** 2) / n
        assert 10 * np.log10(_second_noise(g, p, stats, s) / noise) == pytest.approx(0, abs=0.3)
