"""Detector heads: boxes (0..640) concatenated with scores (0..1) into one output.
The shortcut check flags the concat, quantize runs the data-movement tail in
float after dequantization, and the scores keep their int8 resolution
(measured on the scores against onnxruntime on the original model)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from qdeploy.pipeline import QuantizeOptions, quantize_model, read_manifest, run_artifact
from qdeploy.quant import float_tail
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.qgraph import load_qgraph
from tests.helpers import model

RNG = np.random.default_rng(7)
A = 64   # anchors (8 x 8)


def yolo_head():
    """Boxes ``640 * sigmoid(conv)`` and class scores ``sigmoid(conv)`` concatenated
    over channels, flattened and transposed to ``[1, A, 4 + 3]`` (YOLOv8's layout
    after its decode)."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["f"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("Relu", ["f"], ["fr"], name="relu"),
             n("Conv", ["fr", "wb", "bb"], ["bl"], name="box_conv", kernel_shape=[1, 1]),
             n("Sigmoid", ["bl"], ["bs"], name="box_sig"),
             n("Mul", ["bs", "img"], ["box"], name="box_scale"),
             n("Conv", ["fr", "wc", "bc"], ["cl"], name="cls_conv", kernel_shape=[1, 1]),
             n("Sigmoid", ["cl"], ["cls"], name="cls_sig"),
             n("Concat", ["box", "cls"], ["cat"], name="head_concat", axis=1),
             n("Reshape", ["cat", "shape"], ["flat"], name="flatten"),
             n("Transpose", ["flat"], ["output0"], name="to_anchors", perm=[0, 2, 1])]
    return model(nodes, {"x": (1, 3, 8, 8)}, ["output0"],
                 {"w0": (RNG.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32),
                  "b0": RNG.standard_normal(8).astype(np.float32) * 0.1,
                  "wb": RNG.standard_normal((4, 8, 1, 1)).astype(np.float32),
                  "bb": np.zeros(4, np.float32),
                  "img": np.float32(640),
                  "wc": RNG.standard_normal((3, 8, 1, 1)).astype(np.float32),
                  "bc": np.full(3, -1.0, np.float32),
                  "shape": np.array([1, 7, A], np.int64)})


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


def _quantize(tmp_path, sub):
    m = yolo_head()
    path = tmp_path / "head.onnx"
    path.write_bytes(m.SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, RNG.standard_normal((16, 3, 8, 8)).astype(np.float32))
    out = tmp_path / sub
    res = quantize_model(path, out, QuantizeOptions(target="arm", calib=str(calib), progress=False))
    x = RNG.standard_normal((8, 3, 8, 8)).astype(np.float32)
    ref = _ort(path, x)
    got = run_artifact(out, "ref", x)
    return res, out, ref, got


def test_detector_head_scores_keep_their_resolution(tmp_path):
    res, out, ref, got = _quantize(tmp_path, "out")
    man = read_manifest(out)
    assert [o["name"] for o in man["outputs"]] == ["output0"] and man["outputs"][0]["shape"] == [A, 7]
    assert [b["name"] for b in man["float_tail"]["branches"]] == ["box", "cls"]
    assert [n["op"] for n in man["float_tail"]["nodes"]] == ["Concat", "Reshape", "Transpose"]
    # the check flags the concat, with what quantize did about it
    rec = [r for r in man["shortcuts"] if r["node"] == "head_concat"][0]
    assert rec["max_bits_lost"] > 8 and "float after dequantization" in rec["advice"]
    # the integer graph has one output per branch, each at its own scale
    qg = load_qgraph(out / "model.qgraph")
    assert qg.outputs == ["box", "cls"] and qg.tensors["cls_q"].s < 1 / 200
    assert got["output0"].shape == ref.shape
    scores = sqnr_db(ref[..., 4:], got["output0"][..., 4:])
    assert scores > 30, f"scores {scores:.1f} dB"
    assert sqnr_db(ref[..., :4], got["output0"][..., :4]) > 30
    # the float backend runs the same split graph and assembles the same outputs
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_artifact(out, "float", x)["output0"], _ort(tmp_path / "head.onnx", x),
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("backend", ["qdq", "tflite"])
def test_detector_head_artefacts_assemble_the_same_output(tmp_path, backend):
    """The emitted artefacts compute the branches; run assembles the model's output."""
    pytest.importorskip("ai_edge_litert" if backend == "tflite" else "onnxruntime")
    res, out, ref, got = _quantize(tmp_path, "out")
    if backend not in [b for a in read_manifest(out)["emitted"] for b in _backends(a)]:
        pytest.skip(f"target arm does not emit the artefact of backend {backend}")
    x = RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)
    art, want = run_artifact(out, backend, x)["output0"], run_artifact(out, "ref", x)["output0"]
    assert art.shape == want.shape == (4, A, 7)
    # the branch order and the assembly are right (a mix-up would be ~0 dB); the kernels'
    # own rounding differences (per op within 1 LSB, tests/emit) stay far above that
    assert sqnr_db(want[..., 4:], art[..., 4:]) > 30 and sqnr_db(want[..., :4], art[..., :4]) > 30


def test_model_h_tells_firmware_how_to_assemble_the_branches(tmp_path):
    """The C bundle's outputs are the branches: model.h says, per output, which
    concat input it is and what makes the model's output from it."""
    res, out, ref, got = _quantize(tmp_path, "out")
    h = (out / "c" / "model.h").read_text()
    o0, o1 = h.split("/* output 0:")[1].split("/* output 1:")
    flat0, flat1 = " ".join(o0.replace("*", " ").split()), " ".join(o1.replace("*", " ").split())
    assert "BRANCH" in flat0 and "Concat 'head_concat' (axis 1, as input 1 of 2)" in flat0, flat0
    assert "as input 2 of 2" in flat1 and "'output0' = Concat" in flat1 and "-> Reshape -> Transpose" in flat1
    assert "LOGITS" not in h


def _backends(artefact):
    from qdeploy.emit import ARTEFACTS
    return list(ARTEFACTS[artefact].backends)


def test_without_the_tail_the_scores_have_no_resolution(tmp_path, monkeypatch):
    """The measurement the design rests on: one shared int8 scale leaves the
    scores at about 0 dB."""
    monkeypatch.setattr(float_tail, "MIN_BITS", float("inf"))
    res, out, ref, got = _quantize(tmp_path, "plain")
    assert "float_tail" not in read_manifest(out)
    assert sqnr_db(ref[..., 4:], got["output0"][..., 4:]) < 6


@pytest.mark.parametrize("lost,cut", [(1.0, False), (3.0, True)])
def test_split_only_when_bits_are_lost(lost, cut):
    from qdeploy.pipeline import prepare_float
    import onnx
    g = prepare_float(onnx.load_from_string(yolo_head().SerializeToString()))
    recs = [{"node": "head_concat", "op": "Concat", "max_bits_lost": lost}]
    assert (float_tail.split_tail(g, recs) is not None) == cut
    assert g.outputs == (["box", "cls"] if cut else ["output0"])
