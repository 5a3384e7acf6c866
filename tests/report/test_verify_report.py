"""quantize verifies what it emits and reports the accuracy drop (issue 15): default OUT,
held-out evaluation split, verification on the int grid (exact / 1 LSB / error with no
OUT), metrics against the ORIGINAL model, report.json keys, `qdeploy report`, the
Python API, bad evaluation input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from qdeploy.errors import QDeployError
from qdeploy.quant.error import sqnr_db
from qdeploy.report.evalset import holdout_split
from tests.cli_helpers import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, assert_error, cli
from tests.report import fake_artefact

FAST = ("--limit", "40")


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(fake_artefact.ARTEFACTS, "fake", fake_artefact.ROW)
    monkeypatch.delenv("FAKE_LSB", raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    shutil.copy(DIGITS_MODEL, d / "digits_cnn.onnx")
    shutil.copy(DIGITS_CALIB, d / "calib.npz")
    return d


def test_default_out_is_model_target_in_the_cwd(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", "--target", "fpga", *FAST)
    assert res.exit_code == 0, res.stderr
    assert "digits_cnn_fpga/" in res.stdout and (tmp_path / "digits_cnn_fpga" / "report.html").is_file()
    (tmp_path / "digits_cnn_arm").mkdir()
    (tmp_path / "digits_cnn_arm" / "mine.txt").write_text("not qdeploy's")
    assert_error(cli("quantize", digits / "digits_cnn.onnx", *FAST), "not a qdeploy output")
    assert (tmp_path / "digits_cnn_arm" / "mine.txt").read_text() == "not qdeploy's"


def test_holdout_split_is_seeded_disjoint_and_sized():
    for n in (1, 2, 5, 40, 200, 2000):
        cal, ev = holdout_split(n)
        assert sorted(np.concatenate([cal, ev]).tolist()) == list(range(n))
        assert len(ev) == (0 if n < 2 else min(100, max(1, round(n * 0.2))))
        assert np.array_equal(ev, holdout_split(n)[1])


def test_held_out_samples_are_not_calibrated_on(digits, tmp_path):
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST,
              "-o", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["samples"] == 32
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["eval"]["samples"] == 8 and "held out" in rep["eval"]["source"]


@pytest.mark.parametrize("lsb,status", [(0, "bit-exact"), (1, "within 1 LSB")])
def test_verification_states_agreement(lsb, status, digits, tmp_path, fake):
    fake.setenv("FAKE_LSB", str(lsb))
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST,
              "--emit", "fake", "-o", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    recs = {v["backend"]: v for v in rep["verification"]}
    assert recs["fake"]["status"] == status
    assert recs["fake-missing"]["status"] == "not run" and "not installed" in recs["fake-missing"]["reason"]
    pct = recs["fake"]["outputs"]["logits"]["off_by_one_pct"]
    assert pct == (0.0 if lsb == 0 else pytest.approx(100 * len(range(0, 80, 7)) / 80))
    assert "fake" in rep["metrics"] and json.loads(res.stdout)["verification"]["fake"] == status


def test_verification_failure_is_an_error_and_leaves_no_out(digits, tmp_path, fake):
    fake.setenv("FAKE_LSB", "3")
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST,
              "--emit", "fake", "-o", tmp_path / "o")
    assert_error(res, "verification failed", "backend 'fake'", "output 'logits'", "3 LSB")
    assert list(tmp_path.iterdir()) == []
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST,
              "--emit", "fake", "--no-verify", "-o", tmp_path / "o", "-q")
    assert res.exit_code == 0, res.stderr
    assert json.loads((tmp_path / "o" / "report.json").read_text())["verified"] is False


def test_one_calibration_sample_is_still_verified(digits, tmp_path, fake):
    """One sample cannot be split into calibration and evaluation: nothing is evaluated (the
    verdict says why), but every artefact is still verified, on that sample, and a backend
    that differs is still an error that leaves no OUT."""
    np.save(tmp_path / "one.npy", np.load(digits / "calib.npz")["x"][:1])
    args = ("quantize", digits / "digits_cnn.onnx", "--calib", tmp_path / "one.npy", "--emit", "fake")
    res = cli(*args, "-o", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["eval"]["samples"] == 0 and rep["verified"] is True
    assert {v["backend"]: v["status"] for v in rep["verification"]}["fake"] == "bit-exact"
    assert rep["verdict"]["pass"] is None and "verified on the 1 calibration sample" in rep["verdict"]["text"]
    assert any("verified on that sample" in w for w in json.loads(res.stdout)["warnings"])
    fake.setenv("FAKE_LSB", "3")
    assert_error(cli(*args, "-o", tmp_path / "o2"), "verification failed", "backend 'fake'", "3 LSB")
    assert not (tmp_path / "o2").exists()


def test_metrics_are_against_the_original_model(digits, tmp_path):
    """The float reference is the file as given on onnxruntime: recomputed here from it."""
    import onnxruntime as ort
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", "--eval", DIGITS_EVAL,
              "-o", tmp_path / "o", "-q")
    assert res.exit_code == 0, res.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    x, y = np.load(DIGITS_EVAL)["x"], np.load(DIGITS_EVAL)["y"]
    sess = ort.InferenceSession(str(DIGITS_MODEL), providers=["CPUExecutionProvider"])
    f = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    q = cli("run", tmp_path / "o", "--backend", "ref", "-i", _npy(tmp_path, x), "-o", tmp_path / "q.npy")
    assert q.exit_code == 0
    q = np.load(tmp_path / "q.npy")
    m = rep["metrics"]
    assert m["float"]["accuracy"] == pytest.approx(100 * np.mean(f.argmax(1) == y))
    assert m["ref"]["outputs"]["logits"]["sqnr_db"] == pytest.approx(sqnr_db(f, q), rel=1e-6)
    assert m["ref"]["drop"] == pytest.approx(m["float"]["accuracy"] - 100 * np.mean(q.argmax(1) == y))
    # the digits example's must-show: the drop on the labelled evaluation split is <= 0.5 points
    assert m["ref"]["drop"] <= 0.5 and rep["verdict"]["pass"] and rep["verdict"]["criterion"] == "accuracy drop"
    assert rep["format"] == "qdeploy-report" and rep["version"] == 1
    assert len(rep["worst_layers"]) == 3 and rep["layers"] and rep["histograms"]


def test_report_reruns_on_another_set(digits, tmp_path, monkeypatch):
    out = tmp_path / "o"
    assert cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST,
               "-o", out, "-q").exit_code == 0
    monkeypatch.chdir(digits)    # the original model is found by name and sha256
    res = cli("report", out, "--eval", DIGITS_EVAL, "--max-drop", "0.5")
    assert res.exit_code == 0, res.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["eval"]["samples"] == 450 and rep["eval"]["labels"] and res.stdout.startswith(("PASS", "FAIL"))
    assert rep["verdict"]["threshold"] == 0.5
    other = tmp_path / "other.onnx"
    m = onnx.load(str(DIGITS_MODEL))
    m.doc_string = "changed"
    onnx.save(m, str(other))
    assert_error(cli("report", out, "--eval", DIGITS_EVAL, "--model", other), "not the model")


@pytest.mark.parametrize("case", ["label count", "label range", "labels without eval", "eval shape"])
def test_bad_evaluation_input_one_line_no_out(case, digits, tmp_path):
    x, y = np.load(DIGITS_EVAL)["x"], np.load(DIGITS_EVAL)["y"]
    args = {"label count": lambda: ["--eval", _npy(tmp_path, x), "--labels", _npy(tmp_path, y[:10], "y.npy")],
            "label range": lambda: ["--eval", _npy(tmp_path, x), "--labels", _npy(tmp_path, y + 5, "y.npy")],
            "labels without eval": lambda: ["--labels", _npy(tmp_path, y, "y.npy")],
            "eval shape": lambda: ["--eval", _npy(tmp_path, x[:, :, :4])]}[case]()
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST, *args,
              "-o", tmp_path / "o")
    assert_error(res, {"label count": "450 integer class labels", "label range": "10 classes",
                       "labels without eval": "--labels needs --eval",
                       "eval shape": "evaluation samples are 1x4x8"}[case])
    assert not (tmp_path / "o").exists()


def test_python_api(digits, tmp_path, monkeypatch):
    import qdeploy
    monkeypatch.chdir(tmp_path)
    res = qdeploy.quantize(digits / "digits_cnn.onnx", target="arm", calib=digits / "calib.npz",
                           eval=str(DIGITS_EVAL))
    assert res.out.name == "digits_cnn_arm" and res.report["metrics"]["ref"]["drop"] <= 0.5
    y = qdeploy.run(res.out, np.load(DIGITS_EVAL)["x"][:3])
    assert y["logits"].shape == (3, 10)
    with pytest.raises(QDeployError):
        qdeploy.quantize(digits / "digits_cnn.onnx", calib=digits / "calib.npz", out=tmp_path / "x.onnx")


def _npy(d, a, name="x.npy"):
    np.save(d / name, a)
    return d / name


@pytest.mark.parametrize("case", ["not an OUT", "model not found", "eval missing", "labels range"])
def test_report_bad_input_one_line_nothing_changed(case, digits, tmp_path, monkeypatch):
    out = tmp_path / "o"
    assert cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST, "--no-verify",
               "-o", out, "-q").exit_code == 0
    before = (out / "report.json").read_bytes()
    monkeypatch.chdir(tmp_path)       # the original model is not beside OUT nor here
    y = np.load(DIGITS_EVAL)["y"]
    args, words = {
        "not an OUT": ([tmp_path, "--eval", DIGITS_EVAL], "not a qdeploy output folder"),
        "model not found": ([out, "--eval", DIGITS_EVAL], "cannot find the original digits_cnn.onnx"),
        "eval missing": ([out, "--eval", tmp_path / "none.npz", "--model", digits / "digits_cnn.onnx"],
                         "no such .npz/.npy file"),
        "labels range": ([out, "--eval", DIGITS_EVAL, "--model", digits / "digits_cnn.onnx",
                          "--labels", _npy(tmp_path, y * 3, "y.npy")], "10 classes"),
    }[case]
    assert_error(cli("report", *args), words)
    assert (out / "report.json").read_bytes() == before


@pytest.mark.parametrize("sibling", [True, False])
def test_drift_is_accepted_only_when_another_runtime_runs_the_file_exactly(sibling, digits, tmp_path, fake):
    """A backend that rounds per op its own way ("sibling" rule, like LiteRT beside TFLite
    Micro) may be 3 LSB off end to end when another runtime of the same file is exact."""
    from qdeploy.emit import Artefact
    from qdeploy.report import verify
    backends = {"fake": f"{fake_artefact.__name__}:run"}
    if sibling:
        backends["fake-exact"] = f"{fake_artefact.__name__}:run_exact"
    fake.setitem(fake_artefact.ARTEFACTS, "fake", Artefact("fake", fake_artefact.PATH, fake_artefact.__name__,
                                                           ("arm",), backends, "a test artefact"))
    fake.setattr(verify, "DRIFTING", {"fake": "sibling"})
    fake.setenv("FAKE_LSB", "3")
    res = cli("quantize", digits / "digits_cnn.onnx", "--calib", digits / "calib.npz", *FAST,
              "--emit", "fake", "-o", tmp_path / "o", "-q")
    if not sibling:
        assert_error(res, "backend 'fake'", "no other runtime of the same file agrees")
        return
    assert res.exit_code == 0, res.stderr
    recs = {v["backend"]: v for v in json.loads((tmp_path / "o" / "report.json").read_text())["verification"]}
    assert recs["fake"]["status"] == "drifts" and recs["fake-exact"]["status"] == "bit-exact"
    assert recs["fake"]["outputs"]["logits"]["max_lsb"] == 3


def test_float_tail_outputs_are_verified_as_branches_and_measured_assembled(tmp_path):
    """A detector head whose concat runs in float after dequantization (quant/float_tail.py):
    the artefacts are verified on the branches' int grids, the metrics compare the assembled
    output with the original model's."""
    from tests.quant.test_float_tail import yolo_head
    path = tmp_path / "head.onnx"
    path.write_bytes(yolo_head().SerializeToString())
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).standard_normal((20, 3, 8, 8)).astype(np.float32))
    res = cli("quantize", path, "--calib", tmp_path / "calib.npy", "-o", tmp_path / "o", "-q")
    assert res.exit_code == 0, res.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(rep["metrics"]["ref"]["outputs"]) == ["output0"]
    assert rep["metrics"]["ref"]["outputs"]["output0"]["sqnr_db"] > 20
    for v in rep["verification"]:
        assert set(v["outputs"]) == {"box", "cls"} and v["status"] in ("bit-exact", "within 1 LSB", "drifts"), v
