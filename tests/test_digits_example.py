"""The committed digits example: its accuracy is what the README says, its
data files are the documented split, and qdeploy imports it faithfully.
Reads only the committed files (no torch)."""
import importlib.util
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.helpers import ROOT

HERE = ROOT / "examples" / "digits"


def _accuracy_from_readme() -> tuple[float, int, int]:
    text = (HERE / "README.md").read_text()
    m = re.search(r"float top-1 accuracy: ([\d.]+)% \((\d+)/(\d+)\)", text)
    assert m, "README.md does not state the float accuracy"
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


@pytest.fixture(scope="module")
def data():
    ev = np.load(HERE / "eval.npz")
    return ev["x"], ev["y"]


def _logits(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_float_accuracy_matches_readme(data):
    x, y = data
    correct = int((_logits((HERE / "digits_cnn.onnx").read_bytes(), x).argmax(1) == y).sum())
    pct, stated_correct, stated_n = _accuracy_from_readme()
    assert (correct, len(y)) == (stated_correct, stated_n)
    assert round(100 * correct / len(y), 2) == pct
    assert correct / len(y) >= 0.97


def test_files_are_the_documented_split(data):
    """eval.npz is the held-out split and calib.npz comes from the training
    split, both with train.py's preprocessing (sklearn only, no torch)."""
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("digits_train", HERE / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    xtr, _, xev, yev = train.load_split()
    x, y = data
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (450, 1, 8, 8)
    np.testing.assert_array_equal(x, xev)
    np.testing.assert_array_equal(y, yev)
    calib = np.load(HERE / "calib.npz")["x"]
    np.testing.assert_array_equal(calib, xtr[:200])


def test_model_has_work_for_the_passes():
    m = onnx.load(str(HERE / "digits_cnn.onnx"))
    ops = {n.op_type for n in m.graph.node}
    assert {"BatchNormalization", "Clip", "Shape", "Reshape", "Gemm"} <= ops
    assert m.opset_import[0].version == 13
    assert (HERE / "digits_cnn.onnx").stat().st_size < 300_000


def test_import_and_passes_keep_every_prediction(data):
    """The whole eval set through qdeploy's import (batch fixed to 450, which
    folds the Shape subgraph) and graph passes gives the same logits."""
    from qdeploy.float_run import run_float
    from qdeploy.onnx_import import import_onnx
    from qdeploy.passes import run_passes
    x, y = data
    want = _logits((HERE / "digits_cnn.onnx").read_bytes(), x)
    g = import_onnx(HERE / "digits_cnn.onnx", input_shapes=x.shape)
    h = run_passes(g)
    assert not [n for n in h.nodes if n.op == "BatchNormalization"]
    for graph in (g, h):
        got = run_float(graph, x)[graph.outputs[0]]
        np.testing.assert_allclose(got, want, atol=1e-4 * float(np.abs(want).max()), rtol=0)
        assert (got.argmax(1) == want.argmax(1)).all()
