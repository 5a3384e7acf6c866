"""Per-layer advice on a model whose float version amplifies small errors
(report/advice.py ``bound_by_sensitivity``): withheld when int8 is already near the float
model's own ceiling, with the reason in report.json, the terminal summary and the HTML
alike; still printed on the same network without the amplification; kept, with the ceiling
named, when int8 is far below it.

The models: a 2x1 conv on a smooth input (a near-constant field with a gentle ramp, seeded),
then conv -> relu -> conv whose first conv has one output channel 100x the others, quantized
with ``--per-tensor --no-cle`` so that conv's weights dominate the error (the advice:
drop --per-tensor, drop --no-cle). With taps (+30, -30), summing to 0, the first conv outputs
the ramp's small differences and amplifies the input rounding noise (as PP-OCRv5's recognizer
stem does: +10.7 / -10.8); with taps (0.5, 0.5) it averages."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from qdeploy.report.advice import HEADROOM_DB, bound_by_sensitivity
from qdeploy.report.sensitivity import SENSITIVE_DB
from tests.cli_helpers import assert_verdict_exit, cli
from tests.helpers import model

H, W = 17, 16


def chain(taps) -> object:
    rng = np.random.default_rng(4)
    w0 = np.zeros((4, 1, 2, 1), np.float32)
    w0[:, 0, 0, 0], w0[:, 0, 1, 0] = taps
    w0 *= np.array([1.0, 0.9, 1.1, 0.8], np.float32).reshape(4, 1, 1, 1)
    w1 = rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)
    w1[0] *= 100          # one wide channel: per-tensor weights leave the others a few steps
    w2 = rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0"], ["a"], name="amp"),
             n("Conv", ["a", "w1"], ["b"], name="conv1", pads=[1, 1, 1, 1]),
             n("Relu", ["b"], ["br"], name="relu1"),
             n("Conv", ["br", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    return model(nodes, {"x": (1, 1, H, W)}, ["y"], {"w0": w0, "w1": w1, "w2": w2})


def smooth(n: int, seed: int) -> np.ndarray:
    """Near-constant fields (0.85..0.95) with a ramp of at most 0.006 per pixel."""
    r = np.random.default_rng(seed)
    h, w = np.arange(H).reshape(1, 1, H, 1), np.arange(W).reshape(1, 1, 1, W)
    c, sh, sw = r.uniform(0.85, 0.95, (n, 1, 1, 1)), r.uniform(-1, 1, (n, 1, 1, 1)), r.uniform(-1, 1, (n, 1, 1, 1))
    return (c + 0.006 * (sh * h + sw * w)).astype(np.float32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("sens_advice")
    np.save(d / "calib.npy", smooth(20, 1))
    out = {}
    for name, taps in (("plain", (0.5, 0.5)), ("amp", (30.0, -30.0))):
        (d / f"{name}.onnx").write_bytes(chain(taps).SerializeToString())
        res = cli("quantize", d / f"{name}.onnx", "--calib", d / "calib.npy", "--per-tensor", "--no-cle",
                  "--no-verify", "-o", d / name)
        assert_verdict_exit(res, d / name)
        out[name] = (res.stdout, json.loads((d / name / "report.json").read_text()),
                     (d / name / "report.html").read_text())
    return out


def test_normal_model_gets_its_advice(runs):
    stdout, rep, html = runs["plain"]
    assert rep["sensitivity"]["note"] is None and rep["sensitivity"]["output_sqnr_db"] > SENSITIVE_DB
    assert [a["option"] for a in rep["advice"]] == ["drop --per-tensor", "drop --no-cle"]
    assert rep["advice_withheld"] is None
    assert "'conv1'" in rep["advice"][0]["why"] and "bounds the output SQNR" not in rep["advice"][0]["why"]
    assert stdout.count("\n  advice: ") == 2 and "withheld" not in stdout
    assert 'id="advice"' in html and "advice-withheld" not in html and "drop --per-tensor" in html


def test_amplifying_model_gets_the_reason_instead_of_advice(runs):
    stdout, rep, html = runs["amp"]
    sens, ref = rep["sensitivity"], min(o["sqnr_db"] for o in rep["metrics"]["ref"]["outputs"].values())
    print(f"float model under input noise {sens['output_sqnr_db']:.1f} dB, int8 {ref:.1f} dB")
    assert sens["note"] and sens["output_sqnr_db"] < 5
    assert ref >= sens["output_sqnr_db"] - HEADROOM_DB
    # the same per-layer analysis found advice (it blames the amplifying layer), none is printed
    assert rep["advice"] == []
    w = rep["advice_withheld"]
    assert w["options"] == ["drop --per-tensor", "drop --no-cle"]
    assert w["ceiling_db"] == pytest.approx(sens["output_sqnr_db"]) and w["sqnr_db"] == pytest.approx(ref)
    assert f"about {sens['output_sqnr_db']:.1f} dB" in w["why"]
    # the terminal summary: the note, then the one withheld line; no command to run
    lines = stdout.splitlines()
    note = [i for i, ln in enumerate(lines) if ln.startswith("  note: the float model amplifies")]
    held = [i for i, ln in enumerate(lines) if ln.startswith("  advice withheld (drop --per-tensor, drop --no-cle): ")]
    assert len(note) == 1 and len(held) == 1 and note[0] < held[0], stdout
    assert w["why"] in lines[held[0]]
    assert not any(ln.startswith("  advice: ") or ln.startswith("    qdeploy quantize") for ln in lines), stdout
    # the HTML: the sensitivity section, then the withheld options and why; no command block
    assert html.index('id="sensitivity"') < html.index('id="advice-withheld"')
    assert "<code>drop --per-tensor</code>" in html and "<code>drop --no-cle</code>" in html
    assert "<pre>qdeploy quantize" not in html


ADVICE = [{"why": "per-tensor weight scales on 'c' (3.0 dB)", "option": "drop --per-tensor", "command": "qdeploy"}]


@pytest.mark.parametrize("ceiling,now,kept", [(2.0, 0.3, False),     # rec_cnn: withheld
                                              (2.0, 5.0, False),     # at or above the ceiling
                                              (15.0, 3.0, True),     # far below: a layer still costs more
                                              (40.0, 3.0, True)])    # not flagged (no note): unchanged
def test_the_rule(ceiling, now, kept):
    sens = {"output_sqnr_db": ceiling, "note": "amplifies" if ceiling < SENSITIVE_DB else None}
    adv, held = bound_by_sensitivity(ADVICE, sens, now)
    assert (held is None) == kept and bool(adv) == kept
    if not kept:
        assert held["options"] == ["drop --per-tensor"] and "at or above" in held["why"] if now >= ceiling \
            else f"within {HEADROOM_DB:g} dB" in held["why"]
    elif sens["note"]:
        assert f"about {ceiling:.1f} dB" in adv[0]["why"] and adv[0]["why"].startswith(ADVICE[0]["why"])
    else:
        assert adv == ADVICE
