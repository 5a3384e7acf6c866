"""Every piece of advice the report can print is a ``qdeploy quantize`` command the CLI
accepts, with the option it names set (each branch of report/advice.py triggered on
synthetic layer tables; the click parser of the real command reads it back)."""
from __future__ import annotations

import shlex

from qdeploy.cli.quantize_cmd import quantize as quantize_cmd
from qdeploy.report.advice import MIN_FLOAT_GAIN_DB, advise, command, float_candidate


def _layers():
    rows = [{"node": f"conv{k}", "tensor": f"t{k}", "op": "Conv2D", "local_sqnr_db": 40.0} for k in range(6)]
    rows[2].update(local_sqnr_db=20.0, depthwise=True)          # dominates: 20 dB below the median
    rows[4].update(op="Mean", node="pool", tensor="tp", local_sqnr_db=25.0)
    return rows


BASE = {"model": "/abs/m.onnx", "target": "ort", "calib": "c.npz", "method": "minmax", "per_tensor": True,
        "cle": False, "fold_gap": False, "bias_correction": False, "weight_rounding": "gptq",
        "keep_float": ["conv0"], "eval": "e.npz",
        "labels": "l.npy", "out": "o"}


def _parse(cmd: str) -> dict:
    args = shlex.split(cmd)
    assert args[:2] == ["qdeploy", "quantize"], cmd
    return quantize_cmd.make_context("quantize", args[2:]).params


def test_every_advice_branch_parses_back():
    hists = {"t2": {"p999_of_range": 0.1, "clipped_pct": 0.0}}
    adv = advise(BASE, _layers(), hists, target_per_channel=True, foldable=True, gap_nodes={"pool"},
                 ranges_given=False, float_gain=("conv2", 20.0, 20.0 + MIN_FLOAT_GAIN_DB + 5),
                 weight_gain={"conv2": MIN_FLOAT_GAIN_DB + 5})
    options = [a["option"] for a in adv]
    assert options == ["drop --per-tensor", "--method percentile", "--fold-gap", "--bias-correction",
                       "drop --no-cle", "--keep-float conv2"]
    want = {"drop --per-tensor": ("per_tensor", False), "--method percentile": ("method", "percentile"),
            "--fold-gap": ("fold_gap", True), "--bias-correction": ("bias_correction", True),
            "drop --no-cle": ("cle", None), "--keep-float conv2": ("keep_float", ("conv0", "conv2"))}
    for a in adv:
        p = _parse(a["command"])
        key, value = want[a["option"]]
        assert p[key] == value, (a["command"], key, p[key])
        assert p["model"] == "m.onnx" and p["target"] == "ort" and p["eval_set"] == "e.npz"
        assert p["keep_float"][0] == "conv0"      # the options already given stay in the command
        assert p["weight_rounding"] == "gptq"


def test_keep_float_only_with_a_measured_gain():
    small = ("conv2", 20.0, 20.0 + MIN_FLOAT_GAIN_DB / 2)
    base = {**BASE, "per_tensor": False, "cle": None, "keep_float": []}
    for gain in (None, small):
        adv = advise(base, _layers(), {}, True, False, set(), False, float_gain=gain)
        assert not any("--keep-float" in a["option"] for a in adv)
    assert float_candidate(_layers()) == "conv2"
    assert float_candidate([r for r in _layers() if r["node"] != "conv2"]) is None   # no weighted layer dominates


def test_the_plain_command_parses_back():
    plain = command({**BASE, "per_tensor": False, "cle": None, "keep_float": [], "weight_rounding": "nearest"})
    p = _parse(plain)
    assert p["keep_float"] == () and p["out"] == "o" and p["labels"] == "l.npy"
    assert p["weight_rounding"] == "nearest" and "--weight-rounding" not in plain   # the default is left out
