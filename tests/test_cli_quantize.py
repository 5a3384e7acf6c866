"""``qdeploy quantize``: the bad-input contract (one line, exit 2, nothing written,
an existing OUT untouched), the user's files never modified, byte-identical
reruns, ``--ranges`` reuse (also with CLE), and ``--json`` / ``--quiet`` output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qdeploy.pipeline import MANIFEST, QGRAPH, RANGES, QuantizeOptions, quantize_model
from tests.cli_helpers import (DIGITS_CALIB, DIGITS_MODEL, assert_error, assert_verdict_exit, cli, folder_bytes,
                               lrn_softmax_model, snapshot, two_output_model)

FAST = ("--limit", "32")   # enough for the checks below, keeps each quantize well under a second


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Copies of the digits model and calibration data, a calibration set with its
    recipe, the ranges of that set, and one successful OUT."""
    d = tmp_path_factory.mktemp("quantize")
    model, calib = d / "digits.onnx", d / "calib.npz"
    shutil.copy(DIGITS_MODEL, model)
    shutil.copy(DIGITS_CALIB, calib)
    assert cli("calib", "build", calib, "-o", d / "set.npz").exit_code == 0
    assert cli("calib", "ranges", model, d / "set.npz", "-o", d / "r.json", "-q").exit_code == 0
    res = cli("quantize", model, "--calib", calib, *FAST, "-o", d / "good", "-q")
    assert res.exit_code == 0, res.stderr
    return d


# ---------------------------------------------------------------- bad input
def _other_ranges(w: Path, tmp: Path) -> list:
    two = two_output_model(tmp / "two.onnx")
    return [two, "--ranges", w / "r.json"]


def _old_version(w: Path, tmp: Path) -> list:
    d = json.loads((w / "r.json").read_text())
    d["version"] = 99
    (tmp / "old.json").write_text(json.dumps(d))
    return [w / "digits.onnx", "--calib", w / "set.npz", "--ranges", tmp / "old.json"]


def _bad_target(w: Path, tmp: Path) -> list:
    text = (Path(__file__).parents[1] / "targets" / "arm.toml").read_text()
    (tmp / "board.toml").write_text(text.replace('profile = "arm"', 'profile = "gpu"'))
    return [w / "digits.onnx", "--target", tmp / "board.toml"]


def _calib_file(name, x):
    def make(w: Path, tmp: Path) -> list:
        np.save(tmp / name, x)
        return [w / "digits.onnx", "--calib", tmp / name]
    return make


def _nan():
    x = np.zeros((8, 1, 8, 8), np.float32)
    x[3, 0, 2, 2] = np.nan
    return x


CASES = {
    "missing model": (lambda w, t: [t / "nope.onnx"], ["nope.onnx", "no such file"]),
    "model is a folder": (lambda w, t: [t], ["folder"]),
    "unknown target": (lambda w, t: [w / "digits.onnx", "--target", "tpu"], ["unknown target 'tpu'", "arm"]),
    "missing target file": (lambda w, t: [w / "digits.onnx", "--target", t / "x.toml"], ["x.toml", "no such file"]),
    "bad target file": (_bad_target, ["board.toml", "profile 'gpu'"]),
    "ranges of another model": (_other_ranges, ["r.json", "made for model 'digits'", "fingerprint"]),
    "ranges of another version": (_old_version, ["old.json", "version 99"]),
    "missing ranges": (lambda w, t: [w / "digits.onnx", "--ranges", t / "none.json"], ["none.json"]),
    "unsupported ops, all listed": (lambda w, t: [lrn_softmax_model(t / "m.onnx"), "--target", "fpga"],
                                    ["2 node(s)", "'norm1' (LRN)", "'prob' (Softmax)", "fpga",
                                     "retrain without local response normalisation"]),
    "calibration shape": (_calib_file("s.npy", np.zeros((4, 1, 9, 9), np.float32)), ["1x9x9", "1x8x8"]),
    "calibration NaN": (_calib_file("n.npy", _nan()), ["NaN"]),
    "missing calibration": (lambda w, t: [w / "digits.onnx", "--calib", t / "no.npz"], ["no.npz", "no such"]),
    "unknown method": (lambda w, t: [w / "digits.onnx", "--method", "kl"], ["--method", "'kl'", "entropy"]),
    "unknown weight rounding": (lambda w, t: [w / "digits.onnx", "--weight-rounding", "floor"],
                                ["--weight-rounding", "'floor'", "gptq", "nearest"]),
    "limit 0": (lambda w, t: [w / "digits.onnx", "--limit", "0"], ["--limit", "x>=1"]),
    "--cle with --ranges": (lambda w, t: [w / "digits.onnx", "--calib", w / "set.npz", "--ranges", w / "r.json",
                                          "--cle"], ["--ranges", "--cle"]),
    "ranges of an equalized graph": (
        lambda w, t: [w / "digits.onnx", "--ranges", _equalized_ranges(w, t), "--target", "fpga"],
        ["equalized", "--calib"]),
    "input shape": (lambda w, t: [w / "digits.onnx", "--input-shape", "1x1xfoo"], ["--input-shape"]),
}


def _equalized_ranges(w: Path, tmp: Path) -> Path:
    out = tmp / "fpga_out"
    assert cli("quantize", w / "digits.onnx", "--calib", w / "calib.npz", "--target", "fpga", *FAST,
               "-o", out, "-q").exit_code == 0
    assert json.loads((out / RANGES).read_text())["options"]["cle"] is True
    shutil.copy(out / RANGES, tmp / "eq.json")
    return tmp / "eq.json"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_one_line_nothing_written(case, work, tmp_path):
    args, words = CASES[case]
    args = args(work, tmp_path)
    before = snapshot(work, *(a for a in args if isinstance(a, Path) and a.exists()))
    out = tmp_path / "out"
    assert_error(cli("quantize", *args, "-o", out), *words)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]   # no temporary leftovers
    assert snapshot(work, *(a for a in args if isinstance(a, Path) and a.exists())) == before


@pytest.mark.parametrize("case", ["unknown target", "unsupported ops, all listed", "calibration NaN",
                                  "ranges of another model"])
def test_failed_run_leaves_existing_out_untouched(case, work, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(work / "good", out)
    before = snapshot(out)
    args, words = CASES[case]
    assert_error(cli("quantize", *args(work, tmp_path), "-o", out), *words)
    assert snapshot(out) == before


def test_write_failure_midway_leaves_existing_out_untouched(work, tmp_path, monkeypatch):
    """A disk error while OUT's files are written: the old OUT stays as it was,
    the temporary folder is gone, the error is one line."""
    import qdeploy.pipeline as pipeline
    out = tmp_path / "out"
    shutil.copytree(work / "good", out)
    before = snapshot(out)
    written = []

    def failing_write(path, data):
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(path)
        Path(path).write_bytes(data)
    monkeypatch.setattr(pipeline, "write_bytes", failing_write)
    assert_error(cli("quantize", work / "digits.onnx", "--calib", work / "calib.npz", *FAST, "-o", out),
                 "No space left on device")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("kind", ["file", "folder of other files", "file suffix", "holds the model"])
def test_out_that_is_not_ours_is_refused(kind, work, tmp_path):
    model = work / "digits.onnx"
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("keep me")
        words = ["existing file"]
    elif kind == "folder of other files":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
        words = ["not a qdeploy output"]
    elif kind == "file suffix":
        out = tmp_path / "model.onnx"
        words = ["folder", ".onnx"]
    else:
        shutil.copytree(work / "good", out)
        model = out / "digits.onnx"
        shutil.copy(work / "digits.onnx", model)
        words = ["inside", "another folder"]
    before = snapshot(out) if out.exists() else None
    assert_error(cli("quantize", model, "--calib", work / "calib.npz", *FAST, "-o", out), *words)
    assert (snapshot(out) if out.exists() else None) == before


def test_empty_folder_and_earlier_out_are_replaced(work, tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "again"):
        for _ in range(2):   # the second run replaces the first one's OUT
            res = cli("quantize", work / "digits.onnx", "--calib", work / "calib.npz", *FAST, "-o", out, "-q")
            assert res.exit_code == 0, res.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (work / "good").iterdir())


@pytest.mark.parametrize("change", ["version 2", "no outputs"])
def test_earlier_out_of_another_qdeploy_is_replaced(change, work, tmp_path):
    """An OUT whose manifest another qdeploy version wrote (or one damaged) is still a qdeploy
    output: quantizing again replaces it, as the error of `run` on it advises."""
    out = tmp_path / "out"
    shutil.copytree(work / "good", out)
    m = json.loads((out / MANIFEST).read_text())
    m.update(version=2) if change == "version 2" else m.pop("outputs")
    (out / MANIFEST).write_text(json.dumps(m))
    res = cli("quantize", work / "digits.onnx", "--calib", work / "calib.npz", *FAST, "-o", out, "-q")
    assert res.exit_code == 0, res.stderr
    assert folder_bytes(out) == folder_bytes(work / "good")


@pytest.mark.parametrize("command", ["quantize", "report"])
def test_help_states_option_ranges_without_none(command):
    """--min-sqnr has no bound: its help must not say '[x<=None]'."""
    res = cli(command, "--help")
    assert res.exit_code == 0 and "--min-sqnr" in res.stdout
    assert "None" not in res.stdout, res.stdout


def _strict_json(text: str):
    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_json_is_standard_json_when_an_output_is_exact(tmp_path):
    """A model whose int8 output equals the float one (SQNR inf) still gives standard JSON
    (no NaN/Infinity tokens) on stdout and in report.json / ranges.json, and no numpy
    warning on stderr."""
    from onnx import helper
    from tests.helpers import model
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    m = model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 4, 8, 8]},
              {"w": np.zeros((4, 3, 3, 3), np.float32), "b": np.zeros(4, np.float32)}, name="zero")
    (tmp_path / "zero.onnx").write_bytes(m.SerializeToString())
    np.save(tmp_path / "x.npy", np.abs(np.random.default_rng(0).normal(0, 1, (16, 3, 8, 8))).astype(np.float32))
    import warnings
    with warnings.catch_warnings(record=True) as caught:   # the command line prints them on stderr
        warnings.simplefilter("always")
        res = cli("quantize", tmp_path / "zero.onnx", "--calib", tmp_path / "x.npy", "--emit", "", "-o",
                  tmp_path / "out", "--json")
    assert res.exit_code == 0, res.stderr
    assert res.stderr == "" and not [str(w.message) for w in caught if w.category is RuntimeWarning]
    assert _strict_json(res.stdout)["verdict"]["pass"]
    for name in ("report.json", "ranges.json", "manifest.json"):
        _strict_json((tmp_path / "out" / name).read_text())


def test_model_with_external_data_is_quantized_from_another_folder(work, tmp_path):
    """Weights in an external data file beside the model (onnx's save_as_external_data, how
    large models are exported): the report's float reference finds them too, from any cwd."""
    import onnx
    (tmp_path / "m").mkdir()
    onnx.save_model(onnx.load(str(work / "digits.onnx")), str(tmp_path / "m" / "digits.onnx"),
                    save_as_external_data=True, location="digits.onnx.data", size_threshold=0)
    res = cli("quantize", tmp_path / "m" / "digits.onnx", "--calib", work / "calib.npz", *FAST, "--emit", "",
              "-o", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "out" / "report.json").is_file()


# ---------------------------------------------------------------- user files, determinism
def test_user_files_are_never_modified(work, tmp_path):
    files = [tmp_path / n for n in ("m.onnx", "set.npz", "r.json", "board.toml")]
    for src, dst in zip((work / "digits.onnx", work / "set.npz", work / "r.json",
                         Path(__file__).parents[1] / "targets" / "arm.toml"), files):
        shutil.copy(src, dst)
    before = snapshot(*files)
    res = cli("quantize", files[0], "--calib", files[1], "--ranges", files[2], "--target", files[3],
              "-o", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.stderr
    assert snapshot(*files) == before


@pytest.mark.parametrize("target", ["arm", "fpga"])
def test_same_inputs_give_byte_identical_out(target, work, tmp_path, monkeypatch):
    """Two runs from different folders, with the inputs at different absolute
    paths, write the same bytes in every file (no times, no absolute paths)."""
    outs = []
    for k in range(2):
        d = tmp_path / ("a" if k == 0 else "b/deeper")
        d.mkdir(parents=True)
        shutil.copy(work / "digits.onnx", d / "digits.onnx")
        shutil.copy(work / "calib.npz", d / "calib.npz")
        monkeypatch.chdir(d)
        res = cli("quantize", "digits.onnx", "--calib", "calib.npz", "--target", target, *FAST,
                  "-o", d / "out", "-q")
        assert res.exit_code == 0, res.stderr
        outs.append(folder_bytes(d / "out"))
    from qdeploy.emit import ARTEFACTS
    from qdeploy.quant.targets import load_target
    emitted = {ARTEFACTS[a].path for a in load_target(target).emit}   # the target's default artefacts
    top = {n.split("/")[0] + "/" if "/" in n else n for n in outs[0]}   # folder artefacts: c/
    assert top == {QGRAPH, RANGES, MANIFEST, "model.float.onnx", "report.json", "report.html"} | emitted
    for name in outs[0]:
        assert outs[0][name] == outs[1][name], name
    text = outs[0][MANIFEST].decode() + outs[0][RANGES].decode()
    assert str(tmp_path) not in text


# ---------------------------------------------------------------- --ranges
@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_ranges_reuse_equals_calibrating_inside(method, work, tmp_path):
    """``calib ranges`` + ``quantize --ranges`` == ``quantize`` calibrating itself
    with the same method and set and without CLE (the ranges describe the
    unequalized graph, so the automatic CLE is skipped, with a warning):
    byte-identical qgraph and ranges. (--eval: every sample of the set calibrates,
    none is held out for the report.)"""
    m, s = work / "digits.onnx", work / "set.npz"
    assert cli("calib", "ranges", m, s, "--method", method, "-o", tmp_path / "r.json", "-q").exit_code == 0
    a = cli("quantize", m, "--calib", s, "--ranges", tmp_path / "r.json", "--eval", s, "-o", tmp_path / "a")
    b = cli("quantize", m, "--calib", s, "--method", method, "--no-cle", "--eval", s, "-o", tmp_path / "b", "-q")
    assert a.exit_code == b.exit_code == 0, (a.stderr, b.stderr)
    assert "warning: cross-layer equalization skipped" in a.stderr
    assert (tmp_path / "a" / QGRAPH).read_bytes() == (tmp_path / "b" / QGRAPH).read_bytes()
    assert (tmp_path / "a" / RANGES).read_bytes() == (tmp_path / "b" / RANGES).read_bytes()
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["calibration"]["ranges_file"] == "r.json" and manifest["calibration"]["method"] == method


def test_ranges_with_automatic_cle_skip_it_with_a_warning(work, tmp_path):
    """fpga turns CLE on by default; with --ranges it is skipped (warned), which
    equals an explicit --no-cle run that calibrates itself."""
    m, s = work / "digits.onnx", work / "set.npz"
    a = cli("quantize", m, "--calib", s, "--ranges", work / "r.json", "--target", "fpga", "--eval", s,
            "-o", tmp_path / "a")
    b = cli("quantize", m, "--calib", s, "--no-cle", "--target", "fpga", "--eval", s, "-o", tmp_path / "b", "-q")
    assert a.exit_code == b.exit_code == 0, (a.stderr, b.stderr)
    assert "warning: cross-layer equalization skipped" in a.stderr
    assert (tmp_path / "a" / QGRAPH).read_bytes() == (tmp_path / "b" / QGRAPH).read_bytes()
    assert json.loads((tmp_path / "a" / MANIFEST).read_text())["options"]["cle"] is False


def test_ranges_of_another_calibration_set_warn(work, tmp_path):
    """Without --calib, bias correction runs on the bundled photos, not on the set
    the ranges were measured on: said in a warning."""
    res = cli("quantize", work / "digits.onnx", "--ranges", work / "r.json", "-o", tmp_path / "o", "--json")
    assert_verdict_exit(res, tmp_path / "o")   # digits judged on bundled photos: FAIL or not
    assert any("recipes differ" in w for w in json.loads(res.stdout)["warnings"])


# ---------------------------------------------------------------- output streams
def test_json_prints_only_json(work, tmp_path):
    res = cli("quantize", work / "digits.onnx", "--calib", work / "calib.npz", *FAST, "-o", tmp_path / "o",
              "--json")
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    # 32 samples: 6 (20 %) held out for the report, 26 calibrate
    assert summary["samples"] == 26 and summary["target"] == "arm" and summary["method"] == "tailclip"
    assert summary["files"] == sorted(p.name for p in (tmp_path / "o").iterdir())
    assert summary["ops"]["Conv2D"] == 5 and summary["ops"]["FullyConnected"] == 1
    manifest = json.loads((tmp_path / "o" / MANIFEST).read_text())
    assert summary["equalized_pairs"] == sum(p.startswith(("cle: CLE equalized", "cle: CLE fitted"))
                                             for p in manifest["passes"])
    assert summary["widened_outputs"] == sum(p.startswith("output_range: ") for p in manifest["passes"])


def test_quiet_prints_nothing_and_default_prints_one_line(work, tmp_path):
    args = (work / "digits.onnx", "--calib", work / "calib.npz", *FAST)
    quiet = cli("quantize", *args, "-o", tmp_path / "q", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""
    loud = cli("quantize", *args, "-o", tmp_path / "l")
    assert loud.exit_code == 0 and loud.stdout.startswith("quantized") and loud.stdout.count("\n") <= 20
    assert loud.stdout.splitlines()[1].startswith(("PASS", "FAIL"))   # the summary: verdict first


def test_progress_goes_to_stderr(work, tmp_path, capfd):
    quantize_model(work / "digits.onnx", tmp_path / "o",
                   QuantizeOptions(calib=str(work / "calib.npz"), limit=16, progress=True))
    assert capfd.readouterr().out == ""


# ---------------------------------------------------------------- --fold-gap
def test_fold_gap_folds_the_se_squeezes_and_keeps_the_float_model(tmp_path):
    """The bundled MobileNetV3 example: every GlobalAveragePool -> 1x1 Conv is
    folded, the float graph written to OUT computes what the model computes, and
    ranges measured on the unfolded model still fit (the fold changes no other
    tensor)."""
    import onnx
    from qdeploy.pipeline import prepare_float
    from tests.helpers import assert_float_equal
    example = Path(__file__).parent.parent / "examples" / "mobilenet_v3_small.onnx"
    g = prepare_float(example)
    pools = [n for n in g.nodes if n.op == "GlobalAveragePool"
             and [c.op for c in g.consumers(n.outputs[0])] == ["Conv"]]
    assert pools
    res = cli("quantize", example, "--fold-gap", "--limit", "8", "-o", tmp_path / "o", "--json")
    assert_verdict_exit(res, tmp_path / "o")   # 2 held-out photos: one changed top-1 fails the verdict
    summary = json.loads(res.stdout)
    assert summary["folded_pools"] == len(pools)
    manifest = json.loads((tmp_path / "o" / MANIFEST).read_text())
    assert manifest["options"]["fold_gap"] is True
    assert sum(p.startswith("fold_gap: folded GlobalAveragePool") for p in manifest["passes"]) == len(pools)
    folded = onnx.load(str(tmp_path / "o" / "model.float.onnx"))
    assert not any(n.op_type == "GlobalAveragePool" and n.name in {p.name for p in pools} for n in folded.graph.node)
    assert_float_equal(g, prepare_float(folded))
    calib = Path(__file__).parent.parent / "calib"
    assert cli("calib", "build", calib, "--size", "64x64", "--limit", "8", "-o", tmp_path / "s.npz",
               "-q").exit_code == 0
    assert cli("calib", "ranges", example, tmp_path / "s.npz", "-o", tmp_path / "r.json", "-q").exit_code == 0
    res = cli("quantize", example, "--fold-gap", "--no-cle", "--ranges", tmp_path / "r.json",
              "--calib", tmp_path / "s.npz", "-o", tmp_path / "o2", "-q")
    assert_verdict_exit(res, tmp_path / "o2")


@pytest.mark.parametrize("target", ["cortex-m", "ort"])
def test_weight_rounding_is_recorded_and_every_artefact_verified(target, work, tmp_path):
    """``--weight-rounding`` changes the integer weights only: the run verifies every
    emitted artefact against the reference (a mismatch would stop it), records the
    choice in manifest.json and the report's rerun command, and the two roundings
    give different QGraphs."""
    from qdeploy.quant.qgraph import load_qgraph
    runs = {}
    for wr in ("gptq", "nearest"):
        res = cli("quantize", work / "digits.onnx", "--calib", work / "calib.npz", "--target", target, *FAST,
                  "--weight-rounding", wr, "-o", tmp_path / wr, "-q")
        assert res.exit_code == 0, res.stderr
        manifest = json.loads((tmp_path / wr / MANIFEST).read_text())
        assert manifest["options"]["weight_rounding"] == wr
        assert any(p.startswith("weight_rounding: weight rounding (gptq)") for p in manifest["passes"]) == \
            (wr == "gptq")
        checked = {v["backend"]: v["status"] for v in json.loads((tmp_path / wr / "report.json").read_text())
                   ["verification"]}
        assert checked and all(st in ("bit-exact", "within 1 LSB") for st in checked.values()), checked
        assert all(checked[b] == "bit-exact" for b in ("tflm", "c") if b in checked), checked
        runs[wr] = load_qgraph(tmp_path / wr / QGRAPH)
    moved = [n.name for n in runs["gptq"].nodes if n.op in ("Conv2D", "FullyConnected")
             and np.any(runs["gptq"].tensor(n.inputs[1]).data != runs["nearest"].tensor(n.inputs[1]).data)]
    assert moved


def test_fail_verdict_exits_1_and_writes_everything(tmp_path):
    """A FAIL verdict is exit code 1 for quantize and report (scripts and CI see it), with the
    same output and the same complete OUT as a PASS; a PASS stays 0."""
    m = two_output_model(tmp_path / "two.onnx")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(0, 1, (4, 3, 8, 8)).astype(np.float32))
    q = ("quantize", m, "--limit", "8", "--emit", "qdq", "-o", tmp_path / "o")
    ok, fail = cli(*q, "--min-sqnr", "1"), cli(*q, "--min-sqnr", "99")
    assert ok.exit_code == 0 and ok.stdout.splitlines()[1].startswith("PASS"), (ok.exit_code, ok.stderr)
    assert fail.exit_code == 1 and fail.stdout.splitlines()[1].startswith("FAIL"), (fail.exit_code, fail.stderr)
    assert "error" not in fail.stderr and "Traceback" not in fail.stderr
    assert len(fail.stdout.splitlines()) == len(ok.stdout.splitlines())
    assert json.loads((tmp_path / "o" / "report.json").read_text())["verdict"]["pass"] is False
    assert {"model.qgraph", "model.qdq.onnx", "report.html", "manifest.json"} <= {p.name for p in (tmp_path / "o").iterdir()}
    quiet = cli(*q, "--min-sqnr", "99", "-q")
    assert quiet.exit_code == 1 and quiet.stdout == "" and quiet.stderr == ""
    js = cli(*q, "--min-sqnr", "99", "--json")
    assert js.exit_code == 1 and json.loads(js.stdout)["verdict"]["pass"] is False
    r = ("report", tmp_path / "o", "--eval", tmp_path / "x.npy", "-q")
    assert cli(*r, "--min-sqnr", "99").exit_code == 1
    assert cli(*r, "--min-sqnr", "1").exit_code == 0
    h = cli("quantize", "--help").stdout
    assert "FAIL verdict exits with code 1" in " ".join(h.split())
