"""Bad input through the command line: exit code 2, one line on stderr that
starts with ``error:`` and names the file or node, no traceback, no output."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.cli_helpers import assert_error, cli
from tests.helpers import model
from tests.passes.build import rand

RNG = np.random.default_rng(2)


def conv_model(w=None, opset=13):
    w = rand(RNG, 4, 3, 3, 3) if w is None else w
    return model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c"], ["y"], name="relu1")], {"x": (1, 3, 8, 8)}, ["y"],
                 {"w": w}, opset=opset)


def inspect(*args):
    return cli("inspect", *args)


def save(m, path):
    onnx.save(m, str(path))
    return path


# ---------------------------------------------------------------- the file itself
def test_not_onnx(tmp_path):
    p = tmp_path / "noise.onnx"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_error(inspect(p), str(p))


def test_truncated(tmp_path):
    blob = conv_model().SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(blob[: len(blob) // 2])
    assert_error(inspect(p), str(p))


def test_wrong_extension(tmp_path):
    p = save(conv_model(), tmp_path / "model.pb")
    assert_error(inspect(p), str(p), ".onnx")


def test_missing_file(tmp_path):
    assert_error(inspect(tmp_path / "nope.onnx"), "nope.onnx", "no such file")


def test_folder(tmp_path):
    d = tmp_path / "dir.onnx"
    d.mkdir()
    assert_error(inspect(d), str(d), "folder")


@pytest.mark.parametrize("opset", [5, 22, 25])
def test_unsupported_opset(tmp_path, opset):
    m = conv_model()
    m.opset_import[0].version = opset
    line = assert_error(inspect(save(m, tmp_path / "m.onnx")), f"opset {opset}")
    assert "re-export" in line


# ---------------------------------------------------------------- the graph
def test_unknown_ops_all_listed_at_once(tmp_path):
    nodes = [helper.make_node("FancyNorm", ["x"], ["a"], name="fancy1", domain="com.acme"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("WarpField", ["b"], ["c"], name="warp7", domain="com.acme"),
             helper.make_node("FancyNorm", ["c"], ["y"], name="fancy2", domain="com.acme")]
    m = model(nodes, {"x": (1, 3, 8, 8)}, ["y"])
    m.opset_import.append(helper.make_opsetid("com.acme", 1))
    line = assert_error(inspect(save(m, tmp_path / "m.onnx")), "3 node(s)")
    for nm, op in (("fancy1", "FancyNorm"), ("warp7", "WarpField"), ("fancy2", "FancyNorm")):
        assert f"'{nm}'" in line and op in line


def test_cycle(tmp_path):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add_a"),
             helper.make_node("Relu", ["a"], ["b"], name="relu_b"),
             helper.make_node("Relu", ["a"], ["y"], name="out")]
    line = assert_error(inspect(save(model(nodes, {"x": (1, 3, 4, 4)}, ["y"]), tmp_path / "m.onnx")),
                                 "cycle")
    assert "add_a" in line


def test_missing_initializer(tmp_path):
    m = conv_model()
    del m.graph.initializer[:]
    assert_error(inspect(save(m, tmp_path / "m.onnx")), "conv1", "'w'")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_weights(tmp_path, bad):
    w = rand(RNG, 4, 3, 3, 3)
    w[1, 2, 0, 0] = bad
    assert_error(inspect(save(conv_model(w), tmp_path / "m.onnx")), "NaN/Inf", "conv1", "'w'")


def _two_inputs():
    dyn = ["N", 3, "H", "W"]
    return model([helper.make_node("Add", ["a", "b"], ["y"], name="add")], {"a": dyn, "b": dyn}, ["y"],
                 name="two")


def test_several_inputs_with_unknown_shapes_and_the_fix(tmp_path):
    p = save(_two_inputs(), tmp_path / "two.onnx")
    line = assert_error(inspect(p), str(p), "name:")
    assert "'a'" in line and "'b'" in line
    # a nameless shape cannot say which input it is for
    assert_error(inspect(p, "--input-shape", "1x3x8x8"), "2 inputs")
    ok = inspect(p, "--json", "--input-shape", "a:1x3x8x8", "--input-shape", "b:1x3x8x8")
    assert ok.exit_code == 0, ok.output
    assert '"shape": [\n        1,\n        3,\n        8,\n        8\n      ]' in ok.stdout


@pytest.mark.parametrize("text", ["1x3xHx8", "1x3x0x8", "", "1x3x-2x8", "a:b:1x2", "x:"])
def test_bad_input_shape_string(tmp_path, text):
    p = save(conv_model(), tmp_path / "m.onnx")
    assert_error(inspect(p, "--input-shape", text), "--input-shape")


def test_input_shape_contradicting_the_model(tmp_path):
    p = save(conv_model(), tmp_path / "m.onnx")
    assert_error(inspect(p, "--input-shape", "1x3x16x16"), "contradicts")


# ---------------------------------------------------------------- external data
def _external(tmp_path, location="weights.bin"):
    """A model whose weight lives in an external file; returns its path."""
    d = tmp_path / "model"
    d.mkdir()
    p = d / "m.onnx"
    onnx.save_model(conv_model(), str(p), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    if location != "weights.bin":
        m = onnx.load(str(p), load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(m, str(p))
    return p


def test_external_data_inside_folder_works(tmp_path):
    """External data beside the model is read. Models over 2 GB (protobuf's
    limit) must use external data and take exactly this path."""
    p = _external(tmp_path)
    res = inspect(p, "--json")
    assert res.exit_code == 0, res.output
    assert '"count": 108' in res.stdout   # 4x3x3x3 weights read from weights.bin


def test_external_data_outside_folder_refused(tmp_path):
    p = _external(tmp_path, "../secret.bin")
    (tmp_path / "secret.bin").write_bytes((p.parent / "weights.bin").read_bytes())
    line = assert_error(inspect(p), "outside the model's folder", "'w'")
    assert "refused" in line


def test_external_data_absolute_path_refused(tmp_path):
    p = _external(tmp_path, "/etc/hostname")
    assert_error(inspect(p), "outside the model's folder")


def test_external_data_missing(tmp_path):
    p = _external(tmp_path)
    (p.parent / "weights.bin").unlink()
    assert_error(inspect(p), "weights.bin", "missing")


# ---------------------------------------------------------------- the input is never touched
def test_inspect_does_not_modify_the_model(tmp_path):
    p = _external(tmp_path)
    files = sorted(p.parent.iterdir())
    before = {f: (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files}
    assert inspect(p, "--target", "fpga").exit_code == 0
    assert inspect(p, "--json").exit_code == 0
    assert sorted(p.parent.iterdir()) == files
    assert {f: (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files} == before


def test_real_process_prints_one_line_no_traceback(tmp_path):
    """The installed entry point, not only click's test runner."""
    p = tmp_path / "noise.onnx"
    p.write_bytes(b"\x00garbage" * 100)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", "from qdeploy.cli import main; main()", "inspect", str(p)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
