"""End-to-end: a MobileNet-like model through every profile on the reference
interpreter, against onnxruntime's float result; batch, keep, speed, file round trip."""

import numpy as np
import pytest

from qdeploy.float_run import run_samples
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.interpreter import quantize_inputs, run, run_int
from qdeploy.quant.qgraph import load_qgraph, save_qgraph
from tests.quant.mobilenet import mobilenet_like
from tests.quant.oneop import pipeline


@pytest.mark.parametrize("target, min_sqnr", [("arm", 30), ("ort", 30), ("fpga", 18)])
def test_mobilenet_like_end_to_end(target, min_sqnr):
    m = mobilenet_like(32)
    x = {"x": np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32)}
    g, qg = pipeline(m, x, target)
    got, ref = run(qg, x)["logits"], run_samples(g, x)["logits"]
    assert sqnr_db(ref, got) > min_sqnr
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75
    ops = set(qg.op_counts())
    assert {"Conv2D", "FullyConnected", "Add", "Mul", "Concat", "Lut", "MaxPool"} <= ops


def test_batch_keep_and_saved_file_agree(tmp_path):
    m = mobilenet_like(32)
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
    g, qg = pipeline(m, {"x": x})
    whole = run(qg, x)["logits"]
    one_by_one = np.concatenate([run(qg, x[i:i + 1])["logits"] for i in range(4)])
    np.testing.assert_array_equal(whole, one_by_one)
    kept = run_int(qg, quantize_inputs(qg, {"x": x}), keep=True)
    for n in qg.nodes[1:-1]:
        for o in n.outputs:
            assert kept[o].dtype == np.int8 and kept[o].shape[0] == 4, o
    save_qgraph(qg, tmp_path / "m.qgraph")
    np.testing.assert_array_equal(run(load_qgraph(tmp_path / "m.qgraph"), x)["logits"], whole)


def test_fake_quant_mode_tracks_the_integer_interpreter():
    from qdeploy.quant.interpreter import run_fake
    m = mobilenet_like(32)
    x = np.random.default_rng(4).standard_normal((1, 3, 32, 32)).astype(np.float32)
    g, qg = pipeline(m, {"x": x})
    fake = run_fake(qg, g, {"x": x})["logits"]
    ints = run(qg, x)["logits"]
    ref = run_samples(g, {"x": x})["logits"]
    assert sqnr_db(ints, fake) > 30 and sqnr_db(ref, fake) > 25
