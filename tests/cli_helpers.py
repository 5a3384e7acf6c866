"""Helpers of the command-line tests (quantize, run, end to end): invoking the
CLI, checking the one-line error contract, snapshots of files, small models."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import helper

from qdeploy.cli import main
from tests.helpers import ROOT, model

DIGITS = ROOT / "examples" / "digits"
DIGITS_MODEL, DIGITS_CALIB, DIGITS_EVAL = DIGITS / "digits_cnn.onnx", DIGITS / "calib.npz", DIGITS / "eval.npz"


def cli(*args):
    """Run ``qdeploy ARGS`` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def assert_error(res, *words: str) -> str:
    """The command failed as the contract says: exit 2, nothing on stdout, one
    stderr line ``error: ...`` containing ``words``, no traceback."""
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr, res.exception)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def assert_verdict_exit(res, out) -> dict | None:
    """quantize/report ran to the end: exit code 1 exactly when OUT's report gives a FAIL
    verdict (the artefacts written all the same), else 0. Returns the report (None: none written)."""
    p = Path(out) / "report.json"
    rep = json.loads(p.read_text()) if p.is_file() else None
    want = 1 if rep is not None and rep["verdict"]["pass"] is False else 0
    assert res.exit_code == want, (res.exit_code, want, res.stderr)
    return rep


def snapshot(*paths) -> dict:
    """sha256 and mtime of every file under ``paths`` (files or folders), by path."""
    out = {}
    for p in map(Path, paths):
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[str(f)] = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


def folder_bytes(path) -> dict[str, bytes]:
    """Every file of a folder by relative path."""
    p = Path(path)
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def _f32(arrays: dict) -> dict:
    return {k: np.asarray(v, np.float32) for k, v in arrays.items()}


def two_output_model(path) -> Path:
    """x[1,3,8,8] -> Conv+ReLU -> ``feat`` [1,4,8,8]; -> Conv 1x1 -> ``head`` [1,2,8,8]."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["feat"], name="relu1"),
             helper.make_node("Conv", ["feat", "w2", "b2"], ["head"], name="conv2")]
    inits = {"w1": rng.normal(0, 0.3, (4, 3, 3, 3)), "b1": rng.normal(0, 0.1, 4),
             "w2": rng.normal(0, 0.5, (2, 4, 1, 1)), "b2": rng.normal(0, 0.1, 2)}
    m = model(nodes, {"x": [1, 3, 8, 8]}, {"feat": [1, 4, 8, 8], "head": [1, 2, 8, 8]}, _f32(inits), name="two_out")
    onnx.save(m, str(path))
    return Path(path)


def lrn_softmax_model(path) -> Path:
    """Conv -> LRN (no int8 kernel anywhere) -> Softmax (refused by fpga)."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("LRN", ["c"], ["n"], size=3, name="norm1"),
             helper.make_node("Softmax", ["n"], ["y"], axis=-1, name="prob")]
    m = model(nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 4, 8, 8]}, _f32({"w": rng.normal(0, 0.3, (4, 3, 3, 3))}),
              name="lrn_softmax")
    onnx.save(m, str(path))
    return Path(path)
