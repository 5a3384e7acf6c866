"""A concat cut into the float tail (quant/float_tail.py) is explained once: ``qdeploy
quantize`` prints the tail's note (which concat, which branch loses what, which int8
outputs replace the model's, what firmware does, where it is recorded) and not the
shortcut check's note on the same concat; the report's Decisions hold that explanation
and its Shortcut merges row points to it. A concat that is not cut keeps its own note:
an output concat losing under ``MIN_BITS``, a concat inside the network."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper, numpy_helper

from qdeploy.quant.float_tail import MIN_BITS
from tests.cli_helpers import cli
from tests.helpers import model
from tests.quant.test_float_tail import yolo_head


def _run(tmp_path, m, target="arm"):
    path = tmp_path / "head.onnx"
    path.write_bytes(m.SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(3).standard_normal((16, 3, 8, 8)).astype(np.float32))
    res = cli("quantize", path, "--target", target, "--calib", calib, "--no-verify", "-o", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    return res, tmp_path / "out"


def _with_box_scale(scale: float):
    """The YOLO head with its boxes scaled to 0..``scale`` instead of 0..640."""
    m = yolo_head()
    for init in m.graph.initializer:
        if init.name == "img":
            init.CopyFrom(numpy_helper.from_array(np.array(scale, np.float32), "img"))
    return m


@pytest.mark.parametrize("target", ["arm", "fpga"])
def test_a_cut_concat_is_explained_once(tmp_path, target):
    """Every target cuts a lossy output concat (arm numerics and fpga's per-tensor ones)."""
    res, out = _run(tmp_path, yolo_head(), target)
    err = res.stderr.splitlines()
    about = [ln for ln in err if "head_concat" in ln]
    assert len(about) == 1 and about[0].startswith("note: float tail: output(s) output0:"), res.stderr
    note = about[0]
    assert sum(ln.count("after dequantization") for ln in err) == 1, res.stderr
    for words in ("Concat 'head_concat' would lose", "on branch 'cls'", "the int8 outputs are 'box', 'cls'",
                  "firmware must do the same", "manifest.json float_tail", "model.h"):
        assert words in note, (words, note)
    # the report: Decisions hold the explanation, the shortcut row points to it
    rep = json.loads((out / "report.json").read_text())
    tail = [d for d in rep["decisions"] if d.startswith("float_tail:")]
    assert len(tail) == 1 and "Concat 'head_concat' would lose" in tail[0]
    row = [s for s in rep["shortcuts"] if s["node"] == "head_concat"]
    assert len(row) == 1 and row[0]["max_bits_lost"] > 8 and "float tail" in row[0]["advice"]
    assert "range mismatch" not in row[0]["advice"]
    html = (out / "report.html").read_text()
    assert html.count("would lose") == 1 and html.count("range mismatch") == 1


def test_an_output_concat_losing_little_stays_int8_and_keeps_its_note(tmp_path):
    """Boxes 0..3 against scores 0..1: 1.6 bits lost, under MIN_BITS, so nothing is cut and
    the check's note says it stays in int8 (it used to claim it ran in float)."""
    res, out = _run(tmp_path, _with_box_scale(3.0))
    assert "float_tail" not in json.loads((out / "manifest.json").read_text())
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: Concat 'head_concat': "), res.stderr
    assert "keeps it in int8" in notes[0] and f"under {MIN_BITS:g} bits" in notes[0]
    assert "runs it in float" not in notes[0] and "float tail" not in res.stderr


def test_a_concat_inside_the_network_keeps_its_note(tmp_path):
    """A 640x mismatched concat read by a conv: not a data-movement tail, nothing is cut,
    the check's own advice is printed."""
    rng = np.random.default_rng(11)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["f"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("Sigmoid", ["f"], ["s"], name="sig"),
             n("Mul", ["s", "big"], ["wide"], name="scale"),
             n("Concat", ["wide", "s"], ["cat"], name="mid_concat", axis=1),
             n("Conv", ["cat", "w1", "b1"], ["y"], name="mix", kernel_shape=[1, 1])]
    m = model(nodes, {"x": (1, 3, 8, 8)}, ["y"],
              {"w0": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b0": np.zeros(4, np.float32),
               "big": np.float32(640), "w1": rng.standard_normal((2, 8, 1, 1)).astype(np.float32),
               "b1": np.zeros(2, np.float32)})
    res, out = _run(tmp_path, m)
    assert "float_tail" not in json.loads((out / "manifest.json").read_text())
    notes = [ln for ln in res.stderr.splitlines() if "mid_concat" in ln]
    assert len(notes) == 1 and notes[0].startswith("note: Concat 'mid_concat': concat of branches"), res.stderr
    assert "an Add or a requantize of that branch would keep them" in notes[0]
