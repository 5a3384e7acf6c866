"""Bad input files for the corpus: broken models, sets, ranges, manifests and
targets, each made from a good one with one thing wrong."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qdeploy.fsutil import npz_bytes
from tests.cli_helpers import DIGITS_CALIB, DIGITS_MODEL, cli
from tests.helpers import ROOT, model

W = np.random.default_rng(0).normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)


def conv(nodes_extra=(), inits=None, inputs=None, outputs=("y",), name="t") -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c"], ["y"], name="relu1"), *nodes_extra]
    return model(nodes, inputs or {"x": [1, 3, 8, 8]}, list(outputs), {"w": W, **(inits or {})}, name=name)


def bad_models(d: Path) -> None:
    """Models that must be refused in one line, by file name."""
    save = lambda m, n: onnx.save(m, str(d / n))
    save(model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
                helper.make_node("Relu", ["c"], ["c"], name="relu1")],
               {"x": [1, 3, 8, 8]}, ["c"], {"w": W}), "dup_names.onnx")
    save(model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv1")], {"x": [1, 3, 8, 8]}, ["y"],
               {"w": np.zeros((0, 3, 3, 3), np.float32)}), "zero_weight.onnx")
    save(conv([helper.make_node("ConstantOfShape", ["s"], ["big"], name="huge",
                                value=numpy_helper.from_array(np.ones(1, np.float32))),
               helper.make_node("ReduceMax", ["big"], ["m"], keepdims=0, name="rmax"),
               helper.make_node("Add", ["y", "m"], ["z"], name="add")],
              {"s": np.array([100000, 100000], np.int64)}, outputs=("z",)), "huge_fold.onnx")
    save(conv([helper.make_node("Expand", ["one", "s"], ["big"], name="expand"),
               helper.make_node("ReduceMax", ["big"], ["m"], keepdims=0, name="rmax"),
               helper.make_node("Add", ["y", "m"], ["z"], name="add")],
              {"one": np.ones(1, np.float32), "s": np.array([100000, 4, 8, 8000], np.int64)},
              outputs=("z",)), "huge_expand.onnx")
    save(conv(inits={"w": np.full((4, 3, 3, 3), np.nan, np.float32)}), "nan_weight.onnx")
    save(conv([helper.make_node("LpNormalization", ["y"], ["z"], name="lpn")], outputs=("z",)),
         "unknown_op.onnx")
    save(model([helper.make_node("Add", ["a", "b"], ["y"], name="add")], {"a": [1, 3, 8, 8], "b": [1, 3, 8, 8]},
               ["y"]), "two_inputs.onnx")
    save(model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv1")], {"x": [1, 3, 8, 8]}, ["y"]),
         "missing_init.onnx")
    save(conv(inputs={"x": [1, 3, 0, 8]}), "zero_input.onnx")
    save(conv(inputs={"x": [1, 3, "H", "W"]}), "dynamic.onnx")
    save(conv(inputs={"x": [4, 3, 8, 8]}), "batch4.onnx")
    m = conv()
    m.graph.output.append(m.graph.output[0])
    save(m, "output_twice.onnx")
    m = conv()
    m.opset_import[0].version = 99
    save(m, "opset99.onnx")
    raw = DIGITS_MODEL.read_bytes()
    (d / "truncated.onnx").write_bytes(raw[: len(raw) // 3])
    (d / "garbage.onnx").write_bytes(b"\x00\xffnot a protobuf\xfe" * 50)
    (d / "empty.onnx").write_bytes(b"")
    (d / "model.txt").write_text("not a model")


def good(d: Path) -> None:
    """The good inputs every case starts from: the digits model, its tensors,
    a calibration set, its ranges, one quantize OUT, images, a run input."""
    shutil.copy(DIGITS_MODEL, d / "m.onnx")
    shutil.copy(DIGITS_CALIB, d / "c.npz")
    (d / "imgs").mkdir()
    from PIL import Image
    for k in range(2):
        Image.new("RGB", (24, 16), (40 * k, 90, 200)).save(d / "imgs" / f"p{k}.png")
    for args in (("calib", "build", "c.npz", "-o", "set.npz", "-q"),
                 ("calib", "ranges", "m.onnx", "set.npz", "-o", "r.json", "-q"),
                 ("quantize", "m.onnx", "--calib", "c.npz", "--limit", "16", "-o", "out", "-q"),
                 ("quantize", "m.onnx", "--calib", "c.npz", "--limit", "16", "--emit", "", "-o", "bare", "-q")):
        res = cli(*[d / a if a.endswith((".npz", ".onnx", ".json", "out", "bare")) else a for a in args])
        assert res.exit_code == 0, (args, res.stderr)
    np.save(d / "x.npy", np.load(d / "c.npz")["x"][:3])


def set_with(d: Path, name: str, x=None, recipe=None, drop=(), src="set.npz") -> str:
    """A copy of ``src`` (a calibration set) with its samples and/or recipe replaced."""
    with np.load(d / src) as z:
        arrays = {k: z[k] for k in z.files}
    if x is not None:
        arrays["x"] = x
    if recipe is not None:
        r = json.loads(str(arrays["recipe"][0]))
        r.update(recipe)
        arrays["recipe"] = np.array([json.dumps({k: v for k, v in r.items() if v != "DROP"})])
    for k in drop:
        arrays.pop(k)
    (d / name).write_bytes(npz_bytes(arrays))
    return name


def json_with(src: Path, dst: Path, change) -> str:
    """A copy of a JSON file with ``change(dict)`` applied."""
    d = json.loads(src.read_text())
    change(d)
    dst.write_text(json.dumps(d))
    return dst.name


def out_with(d: Path, name: str, change=None, files=None) -> str:
    """A copy of out/ with its manifest changed and/or files replaced."""
    shutil.copytree(d / "out", d / name)
    if change is not None:
        json_with(d / name / "manifest.json", d / name / "manifest.json", change)
    for f, data in (files or {}).items():
        (d / name / f).write_bytes(data)
    return name


def target_with(d: Path, name: str, old: str, new: str) -> str:
    """targets/arm.toml with ``old`` replaced (``emit = []`` stands for its emit line)."""
    text = re.sub(r"(?m)^emit = \[[^\]]*\]", "emit = []", (ROOT / "targets" / "arm.toml").read_text())
    assert old in text, old
    (d / name).write_text(text.replace(old, new, 1))
    return name
