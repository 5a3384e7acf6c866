"""The rendered text lines of tests/quant/realmodel_inputs.py (bench/sqnr_real.py's
in-domain set for ppocr_v5_cls): seeded, both orientations, and in the classifier's
domain -- the float model reads their orientation, which it cannot on photo crops."""
import numpy as np
import onnxruntime as ort

from tests.quant.realmodel_inputs import photos, ppocr_cls, text_lines


def test_text_lines_are_seeded_and_labelled():
    a, ya = text_lines(photos()[:2], 12, seed=5)
    b, yb = text_lines(photos()[:2], 12, seed=5)
    c, _ = text_lines(photos()[:2], 12, seed=6)
    assert np.array_equal(ya, yb) and set(ya.tolist()) == {0, 1}
    assert all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(a, b))
    assert not all(p.size == q.size and np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(a, c))
    up, _ = text_lines(photos()[:2], 1, seed=7)
    assert up[0].width > up[0].height                  # a line, wider than tall


def test_float_classifier_reads_the_orientation(realmodels):
    ims, y = text_lines(photos()[8:], 64, seed=1)
    prep = ppocr_cls(48, 192)
    x = np.stack([prep(im) for im in ims])
    sess = ort.InferenceSession(str(realmodels / "ppocr_v5_cls.onnx"), providers=["CPUExecutionProvider"])
    p = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.mean(p.argmax(-1) == y) >= 0.9           # measured: 95-98 % over bench draws
    assert np.median(p.max(-1)) > 0.95                 # confident, unlike on photo crops
