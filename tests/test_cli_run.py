"""``qdeploy run`` (DESIGN.md §7): a batch of N samples along the first axis,
outputs stacked the same way, several outputs in an .npz, float and ref with the
same shapes and agreeing within a sane SQNR; bad input is one line, exit 2, and
no output file."""
from __future__ import annotations

import numpy as np
import pytest

from qdeploy.pipeline import calibration_samples, prepare_float, run_artifact
from qdeploy.quant.error import sqnr_db
from tests.cli_helpers import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, assert_error, cli, two_output_model

# digits, arm, the 200 calibration samples: ref vs float on the 450 held-out
# samples measured 37.1 dB (fpga 32.1 dB); floor with margin
SQNR_FLOOR_DB = 30.0


@pytest.fixture(scope="module")
def outs(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    res = cli("quantize", DIGITS_MODEL, "--calib", DIGITS_CALIB, "-o", d / "digits", "-q")
    assert res.exit_code == 0, res.stderr
    # --eval: all four samples calibrate (without it a held-out one would be evaluated on)
    x4, _ = calibration_samples(prepare_float(two_output_model(d / "two.onnx")), None, limit=4)
    np.save(d / "x4.npy", x4)
    res = cli("quantize", d / "two.onnx", "--limit", "4", "--eval", d / "x4.npy", "-o", d / "two", "-q")
    assert res.exit_code == 0, res.stderr
    x = np.load(DIGITS_EVAL)["x"]
    np.save(d / "x.npy", x)
    return d, x


@pytest.mark.parametrize("backend", ["float", "ref"])
def test_batch_along_first_axis_is_stacked(backend, outs, tmp_path):
    """N samples in -> N rows out, each the batch-1 model's result for that sample."""
    d, x = outs
    res = cli("run", d / "digits", "--backend", backend, "-i", d / "x.npy", "-o", tmp_path / "y.npy")
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == "", res.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (len(x), 10) and y.dtype == np.float32
    for i in (0, 7, len(x) - 1):
        one = run_artifact(d / "digits", backend, x[i:i + 1])["logits"]
        if backend == "ref":   # integer arithmetic: exactly the same
            np.testing.assert_array_equal(y[i:i + 1], one)
        else:
            np.testing.assert_allclose(y[i:i + 1], one, rtol=1e-5, atol=1e-5)


def test_ref_agrees_with_float(outs, tmp_path):
    d, x = outs
    for b in ("float", "ref"):
        assert cli("run", d / "digits", "-b", b, "-i", d / "x.npy", "-o", tmp_path / f"{b}.npy").exit_code == 0
    f, q = np.load(tmp_path / "float.npy"), np.load(tmp_path / "ref.npy")
    assert f.shape == q.shape
    assert sqnr_db(f, q) > SQNR_FLOOR_DB
    assert np.mean(f.argmax(1) == q.argmax(1)) > 0.98


def test_npz_input_by_name_and_npz_output(outs, tmp_path):
    d, x = outs
    np.savez(tmp_path / "in.npz", image=x[:5])
    assert cli("run", d / "digits", "-i", tmp_path / "in.npz", "-o", tmp_path / "y.npz").exit_code == 0
    with np.load(tmp_path / "y.npz") as z:
        assert z.files == ["logits"]
        np.testing.assert_array_equal(z["logits"], run_artifact(d / "digits", "ref", x[:5])["logits"])


@pytest.mark.parametrize("backend", ["float", "ref"])
def test_several_outputs_go_to_an_npz(backend, outs, tmp_path):
    d, _ = outs
    x = np.random.default_rng(0).normal(size=(3, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    res = cli("run", d / "two", "-b", backend, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npz")
    assert res.exit_code == 0, res.stderr
    with np.load(tmp_path / "y.npz") as z:
        assert sorted(z.files) == ["feat", "head"]
        assert z["feat"].shape == (3, 4, 8, 8) and z["head"].shape == (3, 2, 8, 8)
        assert (z["feat"] >= 0).all()   # the ReLU output stays non-negative


def test_float_and_ref_agree_on_several_outputs(outs):
    """On inputs like the calibration data (bundled photos, mirrored)."""
    d, _ = outs
    x, _ = calibration_samples(prepare_float(d / "two.onnx"), None)
    x = x[:4, ..., ::-1]
    f, q = run_artifact(d / "two", "float", x), run_artifact(d / "two", "ref", x)
    assert list(f) == list(q) == ["feat", "head"]
    for k in f:
        assert f[k].shape == q[k].shape
        assert sqnr_db(f[k], q[k]) > 30, k   # measured 40.8 (feat), 39.5 (head) dB


# ---------------------------------------------------------------- bad input
def _save(name, x):
    def make(d, tmp):
        np.save(tmp / name, x)
        return tmp / name
    return make


CASES = {
    "wrong per-sample shape": ("digits", _save("a.npy", np.zeros((3, 1, 9, 9), np.float32)), "y.npy", [],
                               ["'image'", "3x1x9x9", "N x 1x8x8"]),
    "no batch axis": ("digits", _save("a.npy", np.zeros((1, 8, 8), np.float32)), "y.npy", [], ["N x 1x8x8"]),
    "flat samples": ("digits", _save("a.npy", np.zeros((3, 64), np.float32)), "y.npy", ["-b", "float"],
                     ["3x64", "N x 1x8x8"]),
    "NaN input": ("digits", _save("a.npy", np.full((2, 1, 8, 8), np.nan, np.float32)), "y.npy", [], ["NaN"]),
    "no samples": ("digits", _save("a.npy", np.zeros((0, 1, 8, 8), np.float32)), "y.npy", [], ["no samples"]),
    "strings": ("digits", _save("a.npy", np.array([["a"]])), "y.npy", [], ["a.npy", "<U1", "not floats"]),
    "unknown backend": ("digits", lambda d, t: d / "x.npy", "y.npy", ["-b", "tpu"], ["backend 'tpu'", "float, ref"]),
    "output suffix": ("digits", lambda d, t: d / "x.npy", "y.txt", [], ["y.txt", ".npy", ".npz"]),
    "several outputs to .npy": ("two", _save("a.npy", np.zeros((2, 3, 8, 8), np.float32)), "y.npy", [],
                                ["2 outputs", "feat, head", ".npz"]),
    "missing input file": ("digits", lambda d, t: t / "none.npy", "y.npy", [], ["none.npy", "no such file"]),
    "corrupt input file": ("digits", lambda d, t: (t / "c.npy").write_bytes(b"junk") and t / "c.npy", "y.npy",
                           [], ["c.npy", "not a readable"]),
    "npz without the input's name": ("digits", lambda d, t: np.savez(t / "a.npz", a=1, b=2) or t / "a.npz",
                                     "y.npy", [], ["image", "given: a, b"]),
    "not an OUT folder": (None, lambda d, t: d / "x.npy", "y.npy", [], ["not a qdeploy output folder"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_no_output(case, outs, tmp_path):
    d, _ = outs
    which, make_input, out_name, extra, words = CASES[case]
    out = d / which if which else tmp_path
    assert_error(cli("run", out, "-i", make_input(d, tmp_path), "-o", tmp_path / out_name, *extra), *words)
    assert not (tmp_path / out_name).exists()
