"""Output Sigmoids with small scores run in float after dequantization (quant/float_tail.py).

A PicoDet-style head: one conv gives class logits and box regressions, a Split
separates them, the scores are ``Sigmoid -> Reshape -> Transpose`` and the boxes
``Reshape -> Transpose``. With logits biased to -5 the scores are ~0 (mean
~0.01), where arm's int8 LOGISTIC output (fixed scale 1/256) keeps one or two
steps of them; the float tail outputs the logits instead and applies the
sigmoid after dequantization. Measured against onnxruntime on the original
model, for every artefact backend."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from qdeploy.emit import ARTEFACTS
from qdeploy.pipeline import QuantizeOptions, prepare_float, quantize_model, read_manifest, run_artifact
from qdeploy.quant import float_tail
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.qgraph import load_qgraph
from qdeploy.quant.targets import load_target
from tests.helpers import model

A = 64   # anchors (8 x 8)


def picodet_head(bias: float, seed: int = 3, extra=None):
    """Class logits ``bias + small`` and box regressions from one 1x1 conv, split;
    ``extra``: more nodes (and outputs) reading the head's tensors (hostile cases)."""
    rng = np.random.default_rng(seed)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["f"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("Relu", ["f"], ["fr"], name="relu"),
             n("Conv", ["fr", "wh", "bh"], ["h"], name="head_conv", kernel_shape=[1, 1]),
             n("Split", ["h", "split"], ["cl", "bx"], name="split", axis=1),
             n("Sigmoid", ["cl"], ["cs"], name="cls_sig"),
             n("Reshape", ["cs", "shape_c"], ["csf"], name="cls_flat"),
             n("Transpose", ["csf"], ["scores"], name="cls_t", perm=[0, 2, 1]),
             n("Reshape", ["bx", "shape_b"], ["bxf"], name="box_flat"),
             n("Transpose", ["bxf"], ["boxes"], name="box_t", perm=[0, 2, 1])]
    outs = ["scores", "boxes"]
    for node, out in extra or []:
        nodes.append(node)
        outs.append(out)
    wh = rng.standard_normal((7, 8, 1, 1)) * np.array([0.15] * 3 + [0.5] * 4)[:, None, None, None]
    return model(nodes, {"x": (1, 3, 8, 8)}, outs,
                 {"w0": (rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32),
                  "b0": (rng.standard_normal(8) * 0.1).astype(np.float32),
                  "wh": wh.astype(np.float32), "bh": np.array([bias] * 3 + [0] * 4, np.float32),
                  "split": np.array([3, 4], np.int64), "shape_c": np.array([1, 3, A], np.int64),
                  "shape_b": np.array([1, 4, A], np.int64)})


def _graph(m):
    return prepare_float(onnx.load_from_string(m.SerializeToString()))


def _split(m, target, hi, records=()):
    """split_tail on ``m`` with the scores calibrated to [0, hi]."""
    g = _graph(m)
    bounds = {t: (-8.0, 8.0) for t in g.tensors}
    bounds["cs"] = (0.0, hi)
    return g, float_tail.split_tail(g, list(records), target=load_target(target), bounds=bounds)


@pytest.mark.parametrize("target,cut", [("arm", True), ("cortex-m", True), ("ort", False), ("fpga", False)])
def test_cut_only_where_the_sigmoid_output_grid_is_fixed(target, cut):
    """arm's LOGISTIC output is fixed at 1/256; ort and fpga calibrate it (nothing to gain)."""
    g, rec = _split(picodet_head(-5.0), target, 0.05)
    assert (rec is not None) == cut
    if cut:   # only the score component moves; the boxes keep their int8 tail
        assert g.outputs == ["cl", "boxes"] and [n["name"] for n in rec["nodes"]] == ["cls_sig", "cls_flat", "cls_t"]
        assert rec["functions"][0]["node"] == "cls_sig" and rec["functions"][0]["bits_lost"] > 4
        assert "concats" not in rec and "would lose up to 4.3 bits" in float_tail.describe(rec)
    else:
        assert g.outputs == ["scores", "boxes"]


@pytest.mark.parametrize("hi,cut", [(0.3, False), (0.2, True)])
def test_cut_only_when_bits_are_lost(hi, cut):
    """MIN_BITS = 2 against the fixed grid's span 255/256: a calibrated max under ~0.25."""
    assert (_split(picodet_head(-5.0), "arm", hi)[1] is not None) == cut


@pytest.mark.parametrize("extra", [
    # the scores are read outside the tail as well: the Sigmoid is no tail node
    (helper.make_node("Mul", ["cs", "cs"], ["sq"], name="square"), "sq"),
    # the logits are read outside the tail as well: they cannot become an output alone
    (helper.make_node("Relu", ["cl"], ["clr"], name="relu_logits"), "clr"),
])
def test_not_cut_when_a_tensor_is_read_outside_the_tail(extra):
    g, rec = _split(picodet_head(-5.0, extra=[extra]), "arm", 0.05)
    assert rec is None and g.outputs == ["scores", "boxes", extra[1]]


def test_sigmoid_that_is_a_graph_output_itself():
    m = picodet_head(-5.0)
    m.graph.output.append(helper.make_tensor_value_info("cs", onnx.TensorProto.FLOAT, None))
    del m.graph.node[5:7]   # drop the score Reshape/Transpose: the Sigmoid's output is the output
    m.graph.output.remove(m.graph.output[0])
    g, rec = _split(m, "arm", 0.05)
    assert [n["op"] for n in rec["nodes"]] == ["Sigmoid"] and g.outputs == ["boxes", "cl"]
    x = np.linspace(-100, 100, 2001, dtype=np.float32).reshape(1, 1, 1, -1)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # the stable form: no overflow for large |x|
        y = float_tail.apply_tail(rec, {"cl": x, "boxes": np.zeros(1)})["cs"]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=1e-37)


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    res = [sess.run(None, {"x": x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([r[k] for r in res]) for k in range(len(res[0]))]


def _quantize(tmp_path, m, target, sub, **kw):
    rng = np.random.default_rng(11)
    path = tmp_path / "head.onnx"
    path.write_bytes(m.SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.standard_normal((24, 3, 8, 8)).astype(np.float32))
    out = tmp_path / sub
    res = quantize_model(path, out, QuantizeOptions(target=target, calib=str(calib), progress=False, **kw))
    return res, out, path, rng.standard_normal((12, 3, 8, 8)).astype(np.float32)


def test_small_scores_every_backend_matches_and_beats_the_fixed_grid(tmp_path, monkeypatch):
    """arm, every artefact: the logits are the int8 outputs (verified on their grid), the
    assembled scores match the reference and onnxruntime's float model far better than
    the fixed 1/256 grid does."""
    res, out, path, x = _quantize(tmp_path, picodet_head(-5.0), "arm", "tail", verify=True, report=True)
    man = read_manifest(out)
    assert [o["name"] for o in man["outputs"]] == ["scores", "boxes"]
    assert man["outputs"][0]["shape"] == [A, 3]
    assert [b["name"] for b in man["float_tail"]["branches"]] == ["cl", "boxes"]
    assert any(p.startswith("float_tail:") and "Sigmoid score output" in p for p in man["passes"])
    assert any(d.startswith("float_tail:") for d in res.report["decisions"])
    assert {v["status"] for v in res.report["verification"]} <= {"bit-exact", "within 1 LSB"}
    qg = load_qgraph(out / "model.qgraph")
    assert qg.outputs == ["cl", "boxes"]
    # firmware reads in model.h that output 0 holds logits, and output 1 is the model's own
    h = (out / "c" / "model.h").read_text()
    o0, o1 = h.split("/* output 0:")[1].split("/* output 1:")
    assert "LOGITS" in o0 and "'scores' = Sigmoid -> Reshape -> Transpose" in o0 and "LOGITS" not in o1

    ref_scores, ref_boxes = _ort(path, x)
    want = run_artifact(out, "ref", x)
    assert want["scores"].shape == ref_scores.shape and float(ref_scores.mean()) < 0.03
    tail_db = sqnr_db(ref_scores, want["scores"])
    step = float(qg.tensors[next(n.inputs[0] for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] == "cl")].s)
    for backend in [b for a in man["emitted"] for b in ARTEFACTS[a].backends]:
        got = run_artifact(out, backend, x)
        # the contract: logits within 1 LSB, and sigmoid's slope is at most 1/4
        assert np.abs(got["scores"] - want["scores"]).max() <= step / 4 + 1e-6, backend
        assert sqnr_db(want["boxes"], got["boxes"]) > 30, backend
        assert sqnr_db(ref_scores, got["scores"]) > tail_db - 1, backend

    monkeypatch.setattr(float_tail, "MIN_BITS", float("inf"))
    _, plain, _, _ = _quantize(tmp_path, picodet_head(-5.0), "arm", "plain", emit="")
    assert "float_tail" not in read_manifest(plain)
    plain_db = sqnr_db(ref_scores, run_artifact(plain, "ref", x)["scores"])
    assert tail_db > 28 and tail_db > plain_db + 6, (tail_db, plain_db)


def test_large_scores_keep_the_int8_sigmoid(tmp_path):
    """Scores spread over 0..1: the fixed grid is as fine as a calibrated one, nothing is cut."""
    res, out, path, x = _quantize(tmp_path, picodet_head(0.0), "arm", "out", emit="")
    man = read_manifest(out)
    assert "float_tail" not in man and res.qgraph.outputs == ["scores", "boxes"]
    assert any(n.op == "Lut" for n in res.qgraph.nodes)


def test_quantize_cli_says_what_runs_in_float_and_why(tmp_path):
    """cortex-m (arm numerics, C bundle): the note names the outputs, the bits and the grid."""
    from tests.cli_helpers import cli
    path = tmp_path / "head.onnx"
    path.write_bytes(picodet_head(-5.0).SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(5).standard_normal((16, 3, 8, 8)).astype(np.float32))
    res = cli("quantize", path, "--target", "cortex-m", "--calib", calib, "--emit", "c", "--no-verify",
              "-o", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    note = [ln for ln in res.stderr.splitlines() if ln.startswith("note: float tail:")]
    assert len(note) == 1 and "output(s) scores:" in note[0] and "grid 1/256" in note[0], res.stderr
