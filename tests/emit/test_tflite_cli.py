"""``qdeploy quantize`` writes OUT/model.int8.tflite (the arm and cortex-m
targets' default, or --emit tflite) with its size and sha256 in the manifest;
``qdeploy run --backend tflm`` (TFLite Micro) is bit-exact with ``--backend ref``,
``--backend tflite`` (LiteRT) runs it too; ``--io float`` puts QUANTIZE /
DEQUANTIZE at the edges (still bit-exact); the file carries a SignatureDef and
qdeploy's metadata; bad input is one line."""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from qdeploy.emit.tflite import schema_py_generated as fb
from qdeploy.pipeline import run_artifact
from tests.cli_helpers import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, assert_error, cli, two_output_model

pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module")
def outs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tflite")
    for name, extra in (("digits", []), ("digits_float", ["--io", "float", "--emit", "tflite"])):
        res = cli("quantize", DIGITS_MODEL, "--target", "arm", "--calib", DIGITS_CALIB, *extra, "-o", d / name, "-q")
        assert res.exit_code == 0, res.stderr
    res = cli("quantize", two_output_model(d / "two.onnx"), "--target", "cortex-m", "--limit", "4", "-o",
              d / "two", "-q")
    assert res.exit_code == 0, res.stderr
    return d


def test_arm_and_cortex_m_emit_tflite_by_default():
    import tomllib
    from tests.helpers import ROOT
    for t in ("arm", "cortex-m"):
        assert "tflite" in tomllib.loads((ROOT / "targets" / f"{t}.toml").read_text())["emit"]


def test_manifest_lists_the_file(outs):
    out = outs / "digits"
    m = json.loads((out / "manifest.json").read_text())
    data = (out / "model.int8.tflite").read_bytes()
    assert m["emitted"]["tflite"] == "model.int8.tflite"
    assert m["artefacts"]["model.int8.tflite"] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_run_tflm_bit_exact_and_litert(outs, tmp_path):
    x = np.load(DIGITS_EVAL)["x"][:40]
    np.save(tmp_path / "x.npy", x)
    res = cli("run", outs / "digits", "--backend", "tflm", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert res.exit_code == 0, res.stderr
    ref = run_artifact(outs / "digits", "ref", x)["logits"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref)
    float_io = run_artifact(outs / "digits_float", "tflm", x)["logits"]
    np.testing.assert_array_equal(float_io, ref)
    pytest.importorskip("ai_edge_litert")
    lt = run_artifact(outs / "digits", "tflite", x)["logits"]
    s = json.loads((outs / "digits" / "manifest.json").read_text())
    assert lt.shape == ref.shape
    assert np.mean(lt.argmax(1) == ref.argmax(1)) >= 0.95, s.get("target")


def test_several_outputs_nhwc_in_the_file_nchw_out(outs):
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    ref = run_artifact(outs / "two", "ref", x)
    got = run_artifact(outs / "two", "tflm", x)
    assert list(got) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    m = fb.Model.GetRootAs((outs / "two" / "model.int8.tflite").read_bytes(), 0)
    sg = m.Subgraphs(0)
    assert list(sg.Tensors(sg.Inputs(0)).ShapeAsNumpy()) == [1, 8, 8, 3]
    assert sg.Tensors(sg.Inputs(0)).Type() == fb.TensorType.INT8


def test_file_layout_signature_metadata(outs):
    blob = (outs / "digits_float" / "model.int8.tflite").read_bytes()
    assert blob[4:8] == b"TFL3"
    m = fb.ModelT.InitFromPackedBuf(blob, 0)
    sg = m.subgraphs[0]
    assert sg.tensors[sg.inputs[0]].type == fb.TensorType.FLOAT32
    sig = m.signatureDefs[0]
    assert sig.signatureKey == b"serving_default"
    assert [t.name for t in sig.inputs] == [b"image"] and [t.name for t in sig.outputs] == [b"logits"]
    meta = json.loads(bytes(m.buffers[m.metadata[0].buffer].data).decode())
    assert m.metadata[0].name == b"qdeploy"
    assert meta["producer"] == "qdeploy" and meta["version"] and meta["io"] == "float"
    assert meta["recipe"] is not None and meta["inputs"][0]["name"] == "image"
    mm = fb.Model.GetRootAs(blob, 0)   # constants of 16 bytes or more start on 16-byte boundaries
    base = np.frombuffer(blob, np.uint8).ctypes.data
    for i in range(mm.BuffersLength()):
        b = mm.Buffers(i)
        if b.DataLength():
            assert (b.DataAsNumpy().ctypes.data - base) % (16 if b.DataLength() >= 16 else 4) == 0


def test_same_inputs_same_bytes(outs, tmp_path):
    res = cli("quantize", DIGITS_MODEL, "--target", "arm", "--calib", DIGITS_CALIB, "-o", tmp_path / "again", "-q")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "again" / "model.int8.tflite").read_bytes() == \
        (outs / "digits" / "model.int8.tflite").read_bytes()


def test_fpga_cannot_emit_tflite(tmp_path):
    res = cli("quantize", DIGITS_MODEL, "--target", "fpga", "--emit", "tflite", "--limit", "4", "-o", tmp_path / "o")
    assert_error(res, "--emit tflite", "fpga")
    assert not (tmp_path / "o").exists()


def test_missing_runtime_is_one_line(outs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    np.save(tmp_path / "x.npy", np.load(DIGITS_EVAL)["x"][:2])
    res = cli("run", outs / "digits", "--backend", "tflite", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert_error(res, "pip install ai-edge-litert")
    monkeypatch.setitem(sys.modules, "tflite_micro", None)
    res = cli("run", outs / "digits", "--backend", "tflm", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert_error(res, "pip install tflite-micro")
