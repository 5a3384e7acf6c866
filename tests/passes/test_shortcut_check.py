"""shortcut_check: one record per Add/Concat merge, and the bits each branch
loses to the shared scale against int8 codes counted directly."""
import math

import numpy as np
import pytest
from onnx import helper

from qdeploy.passes import shortcut_check
from qdeploy.passes.shortcut_check import check_shortcuts
from tests.helpers import model
from tests.passes.build import apply, f32, rand


def merges_model():
    rng = np.random.default_rng(0)
    return model([helper.make_node("Conv", ["x", "w1"], ["a"], name="c1"),
                  helper.make_node("Conv", ["x", "w2"], ["b"], name="c2"),
                  helper.make_node("Add", ["a", "b"], ["s"], name="add"),
                  helper.make_node("Add", ["s", "bias"], ["sb"], name="add_const"),
                  helper.make_node("Concat", ["sb", "x"], ["y"], name="cat", axis=1)],
                 {"x": (1, 2, 4, 4)}, ["y"],
                 {"w1": rand(rng, 2, 2, 1, 1), "w2": rand(rng, 2, 2, 1, 1), "bias": f32(0.5)})


def test_pass_records_structure_of_every_merge():
    _, after, msgs = apply(merges_model(), shortcut_check)
    recs = after.records["shortcut"]
    assert [(r["node"], r["op"]) for r in recs] == [("add", "Add"), ("cat", "Concat")]   # not add_const
    assert recs[0]["branches"] == [{"tensor": "a", "producer": "c1"}, {"tensor": "b", "producer": "c2"}]
    assert recs[1]["branches"][1] == {"tensor": "x", "producer": None}
    assert "ratio" not in recs[0] and "advice" not in recs[1]
    assert msgs == ["Add 'add' merges 2 branches: 'a' (from c1), 'b' (from c2)",
                    "Concat 'cat' merges 2 branches: 'sb' (from add_const), 'x' (from graph input)"]
    shortcut_check.run(after, None)
    assert len(after.records["shortcut"]) == 2                     # re-running replaces, never duplicates


def measured_bits_lost(own_span: float, shared_span: float) -> float:
    """Quantize values spread over a branch's range with its own int8 scale and
    with the shared (concat output) scale; log2 of the ratio of distinct codes."""
    v = np.linspace(0.0, own_span, 100_001)
    own = np.unique(np.round(v / (own_span / 255))).size
    shared = np.unique(np.round(v / (shared_span / 255))).size
    return math.log2(own / shared)


def test_concat_bits_lost_match_measured_int8_codes():
    g = apply(merges_model(), shortcut_check)[1]
    recs = check_shortcuts(g, {"sb": (-1.0, 11.0), "x": (0.0, 1.0), "a": (-2, 2), "b": (-2, 2)})
    cat = recs[1]
    assert cat["ratio"] == pytest.approx(12.0)
    lost = cat["branches"][1]["bits_lost"]
    assert lost == pytest.approx(measured_bits_lost(1.0, 12.0), abs=0.05)
    assert cat["branches"][0]["bits_lost"] == 0.0 and cat["max_bits_lost"] == lost
    assert cat["advice"] == ("concat of branches with 12.0x range mismatch: loses 3.6 bits on branch 'x'; "
                             "an Add or a requantize of that branch would keep them")


def test_add_loses_nothing_at_inputs_but_output_scale_covers_the_sum():
    g = apply(merges_model(), shortcut_check)[1]
    ranges = {"a": (-0.5, 0.5), "b": (-8.0, 8.0), "s": (-8.5, 8.5)}
    add = check_shortcuts(g, ranges)[0]
    assert [b["bits_lost"] for b in add["branches"]] == [0.0, 0.0]
    assert add["branches"][0]["bits_coarser_in_output"] == pytest.approx(math.log2(17.0))
    assert "no bits are lost at the inputs" in add["advice"] and "branch 'a'" in add["advice"]


def test_unknown_or_zero_ranges():
    g = apply(merges_model(), shortcut_check)[1]
    assert "ratio" not in check_shortcuts(g, {"a": (0, 1)})[0]       # 'b' unknown: structure only
    cat = check_shortcuts(g, {"sb": (0.0, 0.0), "x": (0.0, 1.0)})[1]
    assert cat["ratio"] is None and cat["branches"][0]["bits_lost"] is None
    assert "constant zero" in cat["advice"]


def test_matched_concat_gets_no_warning():
    g = apply(merges_model(), shortcut_check)[1]
    cat = check_shortcuts(g, {"sb": (-1.0, 1.0), "x": (-1.5, 1.0)})[1]
    assert cat["ratio"] == pytest.approx(1.25) and "fine" in cat["advice"]
