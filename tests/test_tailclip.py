"""The default calibration ``tailclip``: min/max ranges, a tensor's tail clipped only
where clipping lowers its own int8 error by more than ``HEAVY_DB`` (observers.py)."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qdeploy.calibration import observers as O
from qdeploy.calibration.calibrate import calibrate
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes


def _light(n=1_000_000, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def _heavy(n=1_000_000, seed=0):
    """The light tensor plus a sparse tail: 20 values spread from 3 to 8 sigma (either
    sign) stretch its range 1.7x."""
    x = _light(n, seed)
    x[:20] = np.linspace(3.0, 8.0, 20) * np.where(np.arange(20) % 2, 1.0, -1.0)
    return x


def _error(x, lo, hi):
    """int8 asymmetric quantize-dequantize mean squared error of x with range [lo, hi]."""
    s = (hi - lo) / 255.0
    zp = np.round(-lo / s)
    q = np.clip(np.round(x.astype(np.float64) / s) + zp, 0, 255)
    return float(np.mean(((q - zp) * s - x) ** 2))


def _observe(x, **kw):
    o = O.TailClip(**kw)
    for part in np.array_split(x, 4):
        o.update(part)
    return o


def test_heavy_tail_is_clipped_and_light_one_is_not():
    heavy, light = _observe(_heavy()), _observe(_light())
    assert light.clip_gain_db() < O.HEAVY_DB < heavy.clip_gain_db()
    assert not light.heavy() and light.range() == (float(light.min), float(light.max))
    assert heavy.heavy()
    lo, hi = heavy.range()
    assert -8.0 < lo < -4.0 and 4.0 < hi < 8.0          # clipped inside the sparse tail
    p = O.Percentile(O.TAIL_PERCENTILE)
    p.update(_heavy())
    assert (lo, hi) == p.range()                         # at the 99.999th percentiles
    # and the clipped range is what it should be: a smaller int8 error on that data
    assert _error(_heavy(), lo, hi) < _error(_heavy(), heavy.min, heavy.max) / 10 ** (O.HEAVY_DB / 10)


def test_may_clip_false_keeps_the_covering_range_and_round_trips():
    o = _observe(_heavy(), may_clip=False)
    cover = (float(_heavy().min()), 8.0)
    assert o.clip_gain_db() > O.HEAVY_DB and not o.heavy() and o.range() == cover
    back = O.from_dict(o.to_dict())
    assert back.may_clip is False and back.range() == o.range()
    assert O.merge(o, _observe(_light(seed=1), may_clip=False)).range() == cover


def _scale_model() -> onnx.ModelProto:
    """y = 2 * x (one Mul by a constant): x is the input, y the graph output."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["y"], name="mul")]
    g = helper.make_graph(nodes, "scale", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 100, 100])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 100, 100])],
                          [numpy_helper.from_array(np.float32(2.0), "two")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_calibrate_clips_inner_tensors_but_not_graph_outputs():
    g = run_passes(import_onnx(_scale_model()))
    x = _heavy(n=100 * 100 * 100).reshape(100, 1, 100, 100)
    r = calibrate(g, x, method="tailclip", progress=False)
    (inp,), (out,) = g.inputs, g.outputs
    assert r.observers[inp].heavy() and r[inp][1] < 8.0            # the input's tail is clipped
    assert r.observers[out].clip_gain_db() > O.HEAVY_DB            # the output's is as heavy,
    assert not r.observers[out].may_clip and r[out] == (2 * float(x.min()), 16.0)  # but keeps its range


def test_float_tail_branches_keep_their_range():
    """A float tail (quant/float_tail.py) makes a concat's branches graph outputs after
    calibration: tailclip must not clip them either."""
    from qdeploy.pipeline import QuantizeOptions, quantize_samples
    nodes = [helper.make_node("Mul", ["x", "two"], ["box"], name="box"),
             helper.make_node("Mul", ["x", "tiny"], ["score"], name="score"),
             helper.make_node("Concat", ["box", "score"], ["y"], axis=1, name="cat")]
    g = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 100, 100])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 100, 100])],
                          [numpy_helper.from_array(np.float32(300.0), "two"),
                           numpy_helper.from_array(np.float32(0.01), "tiny")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    g = run_passes(import_onnx(m))
    x = _heavy(n=100 * 100 * 100).reshape(100, 1, 100, 100)
    qg, r, *_ = quantize_samples(g, x, "arm", QuantizeOptions(method="tailclip", progress=False), widen=False)
    assert g.records.get("float_tail"), "the concat of a 0..2400 and a 0..0.08 branch runs in float"
    assert set(g.outputs) == {"box", "score"}
    assert r.observers["x"].heavy()                                   # the input is clipped,
    for t in g.outputs:                                               # the branches are not
        assert not r.observers[t].heavy() and r[t][1] == float(r.observers[t].max)
