"""Output Softmaxes wider than TFLite's int8 SOFTMAX run in float after dequantization
(quant/float_tail.py, recipes/softmax.py SOFTMAX_MAX_DEPTH).

TFLite's reference int8 SOFTMAX, the kernel TFLite Micro runs, stops the program
(TFLITE_CHECK) when a row's exponentials sum to 512 or more, so 512 equal logits
abort it: the ONNX "light" classifiers (every weight 0.02, 1000 equal logits) did,
inside `qdeploy quantize`'s verification. A classifier head: 1x1 conv to C classes,
GlobalAveragePool, Flatten, Softmax over the C classes; ``spread`` 0 makes every
class's filter the same (equal logits), larger spreads them."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from qdeploy.emit import ARTEFACTS
from qdeploy.pipeline import QuantizeOptions, quantize_model, read_manifest, run_artifact
from qdeploy.quant import float_tail
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.qgraph import load_qgraph
from tests.cli_helpers import assert_error, cli, snapshot
from tests.helpers import model


def head(classes: int, spread: float, seed: int = 0, extra=None):
    rng = np.random.default_rng(seed)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0", "b0"], ["f"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("Relu", ["f"], ["fr"], name="relu"),
             n("Conv", ["fr", "w1", "b1"], ["c"], name="classifier", kernel_shape=[1, 1]),
             n("GlobalAveragePool", ["c"], ["p"], name="gap"),
             n("Flatten", ["p"], ["logits"], name="flat", axis=1),
             n("Softmax", ["logits"], ["prob"], name="softmax", axis=1)]
    outs = ["prob"]
    for node, out in extra or []:
        nodes.append(node)
        outs.append(out)
    w1 = rng.standard_normal((1, 8, 1, 1)) * 0.5 + rng.standard_normal((classes, 8, 1, 1)) * spread
    return model(nodes, {"x": (1, 3, 8, 8)}, outs,
                 {"w0": (rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32),
                  "b0": (rng.standard_normal(8) * 0.1).astype(np.float32),
                  "w1": w1.astype(np.float32), "b1": np.zeros(classes, np.float32)})


def _quantize(tmp_path, m, sub, target="arm", **kw):
    rng = np.random.default_rng(7)
    path = tmp_path / "head.onnx"
    path.write_bytes(m.SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
    res = quantize_model(path, tmp_path / sub, QuantizeOptions(target=target, calib=str(calib), progress=False,
                                                             **kw))
    return res, tmp_path / sub, path, rng.standard_normal((6, 3, 8, 8)).astype(np.float32)


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize("classes,spread", [(512, 0.0), (600, 0.3)])
def test_wide_output_softmax_runs_in_float_on_every_backend(tmp_path, monkeypatch, classes, spread):
    """512 equal or 600 spread logits on arm: the logits are the int8 output, every artefact (TFLite Micro
    included, which aborted on equal logits before) agrees with the reference, and the
    assembled probabilities follow onnxruntime's float model far better than the int8
    SOFTMAX's 1/256 grid does (limit lifted, reference interpreter)."""
    res, out, path, x = _quantize(tmp_path, head(classes, spread), "out", verify=True, report=True)
    man = read_manifest(out)
    assert man["float_tail"]["functions"] == [{"node": "softmax", "op": "Softmax", "depth": classes}]
    # the Flatten (a Reshape after import) moves too: the pooled logits are the int8 output
    assert [b["name"] for b in man["float_tail"]["branches"]] == ["p"]
    assert any(p.startswith("float_tail:") and f"Softmax 'softmax' over {classes} values" in p for p in man["passes"])
    qg = load_qgraph(out / "model.qgraph")
    assert qg.outputs == ["p"] and not any(n.op == "Softmax" for n in qg.nodes)
    assert {v["status"] for v in res.report["verification"]} <= {"bit-exact", "within 1 LSB"}
    assert {v["backend"] for v in res.report["verification"]} >= {"tflm", "tflite", "c", "qdq"}
    h = (out / "c" / "model.h").read_text()
    note = h.split("/* output 0:")[1]
    assert "LOGITS" in note and "'prob' = Reshape -> Softmax" in note and "exp(x_i - max(x))" in note

    ref = _ort(path, x)
    want = run_artifact(out, "ref", x)["prob"]
    assert want.shape == ref.shape == (6, classes)
    np.testing.assert_allclose(want.sum(axis=1), 1.0, rtol=1e-5)
    if spread == 0.0:   # equal logits: exactly uniform, as the float model
        np.testing.assert_array_equal(want, np.full_like(want, want[0, 0]))
        np.testing.assert_allclose(want, ref, rtol=1e-5)
    else:
        from qdeploy.quant import recipes
        monkeypatch.setattr(recipes, "SOFTMAX_MAX_DEPTH", 1 << 20)
        _, grid, _, _ = _quantize(tmp_path, head(600, spread), "grid", emit="", verify=False, report=False)
        assert "float_tail" not in read_manifest(grid)
        tail_db, grid_db = sqnr_db(ref, want), sqnr_db(ref, run_artifact(grid, "ref", x)["prob"])
        assert tail_db > 16 and tail_db > grid_db + 10, (tail_db, grid_db)   # measured 18.3 vs 6.2
    for backend in [b for a in man["emitted"] for b in ARTEFACTS[a].backends]:
        got = run_artifact(out, backend, x)["prob"]
        # logits within 1 LSB; softmax moves by at most that step times its largest output
        step = float(qg.tensors[next(n.inputs[0] for n in qg.nodes if n.op == "Dequantize")].s)
        assert np.abs(got - want).max() <= step * 1.05 * want.max() + 1e-7, backend


def test_softmax_over_511_values_stays_int8_and_tflite_micro_agrees(tmp_path):
    """The widest int8 SOFTMAX: 511 equal logits sum to 511 < 512, TFLite Micro runs it
    bit-exactly with the reference; nothing is cut."""
    res, out, _, x = _quantize(tmp_path, head(511, 0.0), "out", emit="tflite,c", verify=True, report=True)
    assert "float_tail" not in read_manifest(out)
    assert any(n.op == "Softmax" for n in res.qgraph.nodes)
    assert {v["status"] for v in res.report["verification"]} == {"bit-exact"}
    ref = run_artifact(out, "ref", x)["prob"]
    np.testing.assert_array_equal(run_artifact(out, "tflm", x)["prob"], ref)


_TFLM = """
import sys, numpy as np
from tflite_micro import runtime
interp = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=1 << 20)
d = interp.get_input_details(0)
interp.set_input(np.zeros(d["shape"], d["dtype"]), 0)
interp.invoke()
print("ran")
"""


@pytest.mark.parametrize("classes,stops", [(511, False), (512, True)])
def test_tflite_micro_stops_on_512_equal_logits(tmp_path, monkeypatch, classes, stops):
    """Why SOFTMAX_MAX_DEPTH is 511, checked on TFLite Micro itself: with the limit lifted,
    an int8 SOFTMAX over 512 equal logits aborts the interpreter's process (SIGABRT), 511
    runs. Each run in its own process."""
    from qdeploy.quant import recipes
    monkeypatch.setattr(recipes, "SOFTMAX_MAX_DEPTH", 1 << 20)
    _, out, _, _ = _quantize(tmp_path, head(classes, 0.0), "out", emit="tflite", verify=False, report=False)
    assert "float_tail" not in read_manifest(out)
    script = tmp_path / "tflm.py"
    script.write_text(_TFLM)
    run = subprocess.run([sys.executable, str(script), str(out / "model.int8.tflite")], capture_output=True,
                         text=True, timeout=120)
    if stops:
        assert run.returncode < 0 and "ran" not in run.stdout, (run.returncode, run.stdout, run.stderr)
    else:
        assert run.returncode == 0 and "ran" in run.stdout, run.stderr


@pytest.mark.parametrize("extra", [
    # the probabilities feed another node: the Softmax is no tail node
    (helper.make_node("Mul", ["prob", "prob"], ["sq"], name="square"), "sq"),
    # the logits are an output too: they cannot become the softmax's own output
    (helper.make_node("Relu", ["logits"], ["lr"], name="relu_logits"), "lr"),
])
def test_wide_softmax_that_cannot_move_is_refused_on_arm(tmp_path, extra):
    """One line naming the node and the limit, exit 2, nothing written; the ort target
    (QDQ, no TFLite SOFTMAX) quantizes the same model."""
    path = tmp_path / "m.onnx"
    path.write_bytes(head(600, 0.3, extra=[extra]).SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32))
    before = snapshot(path, calib)
    for target in ("arm", "cortex-m"):
        res = cli("quantize", path, "--target", target, "--calib", calib, "-o", tmp_path / target, "-q")
        assert_error(res, "'softmax' (Softmax) is over 600 values", "at most 511")
        assert not (tmp_path / target).exists()
    assert snapshot(path, calib) == before
    res = cli("quantize", path, "--target", "ort", "--calib", calib, "-o", tmp_path / "ort", "-q")
    assert res.exit_code in (0, 1), res.stderr
    assert any(n.op == "Softmax" for n in load_qgraph(tmp_path / "ort" / "model.qgraph").nodes)


def test_apply_tail_softmax_is_stable_and_exact():
    """Logits of +-1e4 (no overflow, no NaN) against float64 softmax."""
    rec = {"outputs": [{"name": "prob", "shape": [1, 5]}], "branches": [{"name": "logits", "shape": [1, 5]}],
           "nodes": [{"op": "Softmax", "name": "s", "inputs": ["logits"], "outputs": ["prob"], "attrs": {"axis": 1}}]}
    x = np.array([[1e4, 1e4 - 1, -1e4, 0.0, 3.0], [0.5, -0.5, 2.0, 2.0, -3.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = float_tail.apply_tail(rec, {"logits": x})["prob"]
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-30)


def test_a_runtime_that_aborts_is_one_error_line(tmp_path, monkeypatch):
    """TFLite Micro and LiteRT run in a forked child (emit/tflite/runners.isolated): an
    abort inside their kernels (here the 512-wide int8 SOFTMAX, the limit lifted) ends
    `quantize`'s verification and `qdeploy run` with one error line naming the runtime
    and the signal, exit 2, nothing written; the parent process lives on."""
    from qdeploy.quant import recipes
    monkeypatch.setattr(recipes, "SOFTMAX_MAX_DEPTH", 1 << 20)
    path = tmp_path / "m.onnx"
    path.write_bytes(head(512, 0.0).SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(2).standard_normal((6, 3, 8, 8)).astype(np.float32))
    res = cli("quantize", path, "--calib", calib, "--emit", "tflite", "-o", tmp_path / "out", "-q")
    assert_error(res, "TFLite Micro stopped with SIGABRT running model.int8.tflite", "--no-verify")
    assert not (tmp_path / "out").exists()
    res = cli("quantize", path, "--calib", calib, "--emit", "tflite", "--no-verify", "-o", tmp_path / "nv", "-q")
    assert res.exit_code == 0, res.stderr
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    for backend, env, who in [("tflm", None, "TFLite Micro"), ("tflite", "reference", "LiteRT")]:
        if env:
            monkeypatch.setenv("QDEPLOY_TFLITE_KERNELS", env)
        res = cli("run", tmp_path / "nv", "-b", backend, "-i", tmp_path / "x.npy", "-o", tmp_path / f"{backend}.npy")
        assert_error(res, f"{who} stopped with SIGABRT")
        assert not (tmp_path / f"{backend}.npy").exists()
