"""The calibrator against onnxruntime run directly; ranges.json; ``calib ranges``."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from qdeploy.calibration import observers as O
from qdeploy.calibration.calibrate import batched, calibrate, default_tensors
from qdeploy.calibration.ranges import load_ranges, merge_ranges, save_ranges
from qdeploy.errors import QDeployError
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes


def _tiny(seed=0, transpose_batch=False) -> onnx.ModelProto:
    """conv-relu-conv + skip add, relu6, GAP, flatten, FC (batch 1, 3x8x8)."""
    rng = np.random.default_rng(seed)
    w = lambda name, *s: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.5, name)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Clip", ["a", "zero", "six"], ["r6"], name="relu6"),
        helper.make_node("GlobalAveragePool", ["r6"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["y"], transB=1, name="fc"),
    ]
    inits = [w("w1", 4, 3, 3, 3), w("b1", 4), w("w2", 4, 4, 3, 3), w("b2", 4), w("wf", 5, 4), w("bf", 5),
             numpy_helper.from_array(np.float32(0), "zero"), numpy_helper.from_array(np.float32(6), "six")]
    if transpose_batch:   # an op along the batch axis: the calibrator must not batch this graph
        nodes.append(helper.make_node("Transpose", ["y"], ["yt"], perm=[1, 0], name="t"))
        out = helper.make_tensor_value_info("yt", TensorProto.FLOAT, [5, 1])
    else:
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _samples(n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _ort_minmax(model: onnx.ModelProto, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """min/max of every tensor of the original model, one sample at a time."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = ["x"] + [o for n in m.graph.node for o in n.output]
    have = {o.name for o in m.graph.output}
    m.graph.output.extend([helper.make_empty_tensor_value_info(o) for o in names if o not in have])
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    out = {}
    for i in range(len(x)):
        for name, v in zip([o.name for o in s.get_outputs()], s.run(None, {"x": x[i:i + 1]})):
            lo, hi = out.get(name, (np.inf, -np.inf))
            out[name] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return out


@pytest.mark.parametrize("batch_size", [1, 4])
def test_minmax_equals_onnxruntime_directly(batch_size):
    model = _tiny()
    g = run_passes(import_onnx(model))
    x = _samples(10)                               # 10 = 2 batches of 4 + 2 left over
    r = calibrate(g, x, method="minmax", batch_size=batch_size, progress=False)
    ref = _ort_minmax(model, x)
    assert r.names() == default_tensors(g) and r.samples == 10
    checked = 0
    for t in r.names():
        node = g.producer(t)
        lo, hi = ref[t]
        if node is not None and "q_clamp" in node.attrs:     # fused activation: clamped output
            clo, chi = node.attrs["q_clamp"]
            lo, hi = float(np.clip(lo, clo, chi)), float(np.clip(hi, clo, chi))
        np.testing.assert_allclose(r[t], (min(lo, 0.0), max(hi, 0.0)), rtol=1e-5, atol=1e-6, err_msg=t)
        checked += 1
    assert checked == len(g.activations()) >= 5
    assert any("q_clamp" in n.attrs for n in g.nodes)      # the passes did fuse something


def test_batched_matches_one_at_a_time_and_iterables():
    g = run_passes(import_onnx(_tiny()))
    x = _samples(11)
    a = calibrate(g, x, method="percentile", batch_size=4, progress=False)
    b = calibrate(g, x, method="percentile", batch_size=1, progress=False)
    c = calibrate(g, (x[i:i + 3] for i in range(0, 11, 3)), method="percentile", batch_size=3, progress=False)
    for t in a.names():
        np.testing.assert_allclose(a[t], b[t], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(c[t], b[t], rtol=1e-5, atol=1e-5)
        assert a.observers[t].count == b.observers[t].count


def test_graph_with_batch_axis_op_runs_one_sample_at_a_time():
    g = import_onnx(_tiny(transpose_batch=True))
    assert batched(g, 4) is None
    assert batched(import_onnx(_tiny()), 4) is not None
    x = _samples(6)
    r = calibrate(g, x, method="minmax", batch_size=4, progress=False)
    ref = _ort_minmax(_tiny(transpose_batch=True), x)
    np.testing.assert_allclose(r["yt"], (min(ref["yt"][0], 0), max(ref["yt"][1], 0)), rtol=1e-6)


def test_bad_samples_are_one_line_errors():
    g = import_onnx(_tiny())
    with pytest.raises(QDeployError, match="takes 3x8x8"):
        calibrate(g, np.zeros((2, 3, 4, 4), np.float32), progress=False)
    bad = _samples(3)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(QDeployError, match="NaN"):
        calibrate(g, bad, progress=False)
    with pytest.raises(ValueError):
        calibrate(g, _samples(2), method="nope", progress=False)


@pytest.mark.parametrize("method", list(O.METHODS))
def test_ranges_json_round_trip(tmp_path, method):
    g = run_passes(import_onnx(_tiny()))
    r = calibrate(g, _samples(8), method=method, progress=False, recipe={"kind": "tensors"})
    p1, p2 = tmp_path / "a.json", tmp_path / "b.json"
    save_ranges(r, p1)
    back = load_ranges(p1, g)
    save_ranges(back, p2)
    assert p1.read_bytes() == p2.read_bytes()
    assert back.names() == r.names() and back.recipe == {"kind": "tensors"}
    for t in r.names():
        assert back[t] == r[t]
    d = json.loads(p1.read_text())
    assert d["format"] == "qdeploy-ranges" and d["version"] == 1 and d["samples"] == 8
    t0 = d["tensors"][r.names()[0]]
    assert {"lo", "hi", "min", "max", "clipped", "hist", "state"} <= set(t0)


def test_ranges_refuse_other_model_and_version(tmp_path):
    g = run_passes(import_onnx(_tiny()))
    other = run_passes(import_onnx(_tiny(transpose_batch=True)))
    p = tmp_path / "r.json"
    save_ranges(calibrate(g, _samples(4), progress=False), p)
    with pytest.raises(QDeployError, match="made for model") as e:
        load_ranges(p, other)
    assert "\n" not in str(e.value)
    d = json.loads(p.read_text())
    d["version"] = 99
    p.write_text(json.dumps(d))
    with pytest.raises(QDeployError, match="version 99"):
        load_ranges(p, g)
    p.write_text("{not json")
    with pytest.raises(QDeployError, match="not a readable"):
        load_ranges(p)


def test_hand_edited_range_is_kept(tmp_path):
    g = import_onnx(_tiny())
    p = tmp_path / "r.json"
    save_ranges(calibrate(g, _samples(4), progress=False), p)
    d = json.loads(p.read_text())
    d["tensors"]["x"]["lo"], d["tensors"]["x"]["hi"] = -1.0, 1.0
    p.write_text(json.dumps(d))
    assert load_ranges(p, g)["x"] == (-1.0, 1.0)


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse"])
def test_merged_shards_equal_whole_set(tmp_path, method):
    g = run_passes(import_onnx(_tiny()))
    x = _samples(16)
    x[8:] *= 5                                     # second shard wider: histograms re-bin
    whole = calibrate(g, x, method=method, batch_size=4, progress=False)
    files = []
    for k, part in enumerate((x[:8], x[8:])):
        files.append(tmp_path / f"s{k}.json")
        save_ranges(calibrate(g, part, method=method, batch_size=4, progress=False), files[-1])
    merged = merge_ranges(files)
    assert merged.samples == 16
    for t in whole.names():
        assert merged.observers[t].to_dict() == whole.observers[t].to_dict(), t
        assert merged[t] == whole[t]
    save_ranges(calibrate(g, x, method="minmax", progress=False), tmp_path / "mm.json")
    with pytest.raises(QDeployError, match="method"):
        merge_ranges([files[0], tmp_path / "mm.json"])


def _cli(args):
    from qdeploy.cli import main
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_calib_ranges(tmp_path):
    from qdeploy.calibration.dataset import build_set, save_set
    onnx.save(_tiny(), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", _samples(12))
    save_set(build_set([tmp_path / "x.npy"]), tmp_path / "set.npz")
    out = tmp_path / "r.json"
    res = _cli(["calib", "ranges", str(tmp_path / "m.onnx"), str(tmp_path / "set.npz"), "-o", str(out),
                "--method", "entropy", "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["samples"] == 12 and shown["method"] == "entropy"
    saved = json.loads(out.read_text())
    assert saved["recipe"]["kind"] == "tensors"
    assert {t: (v["lo"], v["hi"]) for t, v in saved["tensors"].items()} == \
        {t: (v["lo"], v["hi"]) for t, v in shown["tensors"].items()}
    res = _cli(["calib", "ranges", str(tmp_path / "m.onnx"), str(tmp_path / "set.npz"), "-o",
                str(tmp_path / "t.json")])
    assert res.exit_code == 0 and "widest ranges" in res.output


def test_cli_refuses_set_of_other_shape(tmp_path):
    from qdeploy.calibration.dataset import build_set, save_set
    onnx.save(_tiny(), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.zeros((3, 3, 4, 4), np.float32))
    save_set(build_set([tmp_path / "x.npy"]), tmp_path / "set.npz")
    out = tmp_path / "r.json"
    res = _cli(["calib", "ranges", str(tmp_path / "m.onnx"), str(tmp_path / "set.npz"), "-o", str(out)])
    assert res.exit_code == 2 and "error:" in res.output and not out.exists()
