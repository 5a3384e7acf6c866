"""Real pre-trained models (../shared/realmodels): quantize for arm -> model.int8.tflite
-> TFLite Micro bit-exact with the reference interpreter on a held-out photograph,
preprocessed as each model expects (tests/quant/realmodel_inputs.py)."""
from __future__ import annotations

import numpy as np
import pytest

from qdeploy.pipeline import QuantizeOptions, quantize_model, run_artifact
from tests.quant.realmodel_inputs import inputs, photos

pytest.importorskip("tflite_micro")

CASES = {"ppocr_v5_cls": (1, 3, 48, 192), "ppocr_v5_det": (1, 3, 160, 160), "ddddocr_det": (1, 3, 416, 416)}


@pytest.mark.slow
@pytest.mark.realmodels
@pytest.mark.parametrize("name", list(CASES))
def test_realmodel_tflite_bit_exact_on_tflm(name, realmodels, tmp_path):
    shape = CASES[name]
    ph = photos()
    np.save(tmp_path / "calib.npy", inputs(name, ph[:4], shape[2:]))
    x = inputs(name, ph[12:13], shape[2:])
    out = tmp_path / "out"
    quantize_model(str(realmodels / f"{name}.onnx"), out,
                   QuantizeOptions(target="arm", calib=str(tmp_path / "calib.npy"), input_shape=shape,
                                   bias_correction=False, progress=False, emit="tflite"))
    ref = run_artifact(out, "ref", x)
    got = run_artifact(out, "tflm", x)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{name}: {k}")
    print(f"{name}: {(out / 'model.int8.tflite').stat().st_size} bytes, outputs bit-exact on TFLite Micro")
