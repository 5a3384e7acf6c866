"""``qdeploy quantize`` writes OUT/model.qdq.onnx (the ort and arm targets' default,
or --emit qdq) with its size and sha256 in the manifest; ``qdeploy run --backend
qdq`` runs it on onnxruntime like the other backends; bad input is one line."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from qdeploy.pipeline import run_artifact
from qdeploy.quant.error import sqnr_db
from tests.cli_helpers import (DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, assert_error, assert_verdict_exit, cli,
                               two_output_model)


@pytest.fixture(scope="module")
def outs(tmp_path_factory):
    d = tmp_path_factory.mktemp("qdq")
    res = cli("quantize", DIGITS_MODEL, "--target", "ort", "--calib", DIGITS_CALIB, "--emit", "qdq", "-o",
              d / "digits", "-q")
    assert res.exit_code == 0, res.stderr
    res = cli("quantize", two_output_model(d / "two.onnx"), "--target", "arm", "--limit", "4", "--emit", "qdq",
              "-o", d / "two", "-q")
    assert res.exit_code == 0, res.stderr
    return d


def test_ort_and_arm_emit_qdq_by_default():
    import tomllib
    from tests.helpers import ROOT
    for t in ("ort", "arm"):
        assert "qdq" in tomllib.loads((ROOT / "targets" / f"{t}.toml").read_text())["emit"]
    assert "qdq" not in tomllib.loads((ROOT / "targets" / "fpga.toml").read_text())["emit"]


def test_manifest_lists_the_qdq_model(outs):
    out = outs / "digits"
    m = json.loads((out / "manifest.json").read_text())
    data = (out / "model.qdq.onnx").read_bytes()
    assert m["emitted"] == {"qdq": "model.qdq.onnx"}
    assert m["artefacts"]["model.qdq.onnx"] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_run_backend_qdq_on_digits(outs, tmp_path):
    x, y = np.load(DIGITS_EVAL)["x"], np.load(DIGITS_EVAL)["y"]
    np.save(tmp_path / "x.npy", x)
    res = cli("run", outs / "digits", "--backend", "qdq", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert res.exit_code == 0 and res.stderr == "", res.stderr
    got = np.load(tmp_path / "y.npy")
    ref = run_artifact(outs / "digits", "ref", x)["logits"]
    flt = run_artifact(outs / "digits", "float", x)["logits"]
    assert got.shape == ref.shape and got.dtype == np.float32
    top1 = {k: 100 * np.mean(v.argmax(1) == y) for k, v in (("float", flt), ("ref", ref), ("qdq", got))}
    agree = 100 * np.mean(got.argmax(1) == ref.argmax(1))
    print(f"digits ort: top-1 {top1}, qdq/ref top-1 agreement {agree:.1f} %, SQNR vs float qdq "
          f"{sqnr_db(flt, got):.1f} dB ref {sqnr_db(flt, ref):.1f} dB")
    assert agree >= 99.0 and top1["qdq"] >= top1["float"] - 1.0
    assert sqnr_db(flt, got) >= sqnr_db(flt, ref) - 1.0


def test_several_outputs_by_name(outs, tmp_path):
    res = run_artifact(outs / "two", "qdq", np.random.default_rng(0).standard_normal((3, 3, 8, 8)))
    ref = run_artifact(outs / "two", "ref", np.random.default_rng(0).standard_normal((3, 3, 8, 8)))
    assert list(res) == list(ref) and all(res[k].shape == ref[k].shape for k in ref)


def test_same_inputs_same_bytes(outs, tmp_path):
    res = cli("quantize", DIGITS_MODEL, "--target", "ort", "--calib", DIGITS_CALIB, "--emit", "qdq", "-o",
              tmp_path / "again", "-q")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "again" / "model.qdq.onnx").read_bytes() == (outs / "digits" / "model.qdq.onnx").read_bytes()


def test_fpga_cannot_emit_qdq(tmp_path):
    res = cli("quantize", DIGITS_MODEL, "--target", "fpga", "--emit", "qdq", "--limit", "4", "-o", tmp_path / "o")
    assert_error(res, "--emit qdq", "fpga")
    assert not (tmp_path / "o").exists()


def test_unknown_artefact(tmp_path):
    res = cli("quantize", DIGITS_MODEL, "--target", "ort", "--emit", "qdq,onnx", "-o", tmp_path / "o")
    assert_error(res, "'onnx'")
    assert not (tmp_path / "o").exists()


def test_backend_qdq_without_the_artefact(tmp_path):
    res = cli("quantize", DIGITS_MODEL, "--target", "fpga", "--limit", "4", "-o", tmp_path / "o", "-q")
    assert_verdict_exit(res, tmp_path / "o")   # 3 calibration samples: a FAIL verdict is possible
    np.save(tmp_path / "x.npy", np.load(DIGITS_EVAL)["x"][:2])
    res = cli("run", tmp_path / "o", "--backend", "qdq", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert_error(res, "model.qdq.onnx", "--emit qdq")
    assert not (tmp_path / "y.npy").exists()
