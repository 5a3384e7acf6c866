"""``qdeploy inspect`` on bad models and options: one line, exit 2, nothing written."""
import pytest

from tests.badinput.check import run_cases
from tests.badinput.files import target_with

CASES = {
    "no model": (lambda w: ["inspect"], ["Missing argument 'MODEL'"]),
    "missing file": (lambda w: ["inspect", "none.onnx"], ["none.onnx", "no such file"]),
    "a folder": (lambda w: ["inspect", "imgs"], ["imgs", "folder"]),
    "not .onnx": (lambda w: ["inspect", "model.txt"], ["model.txt", ".onnx"]),
    "truncated": (lambda w: ["inspect", "truncated.onnx"], ["truncated.onnx"]),
    "garbage": (lambda w: ["inspect", "garbage.onnx"], ["garbage.onnx"]),
    "empty file": (lambda w: ["inspect", "empty.onnx"], ["empty.onnx"]),
    "duplicate names": (lambda w: ["inspect", "dup_names.onnx"], ["'c'", "twice"]),
    "zero-size weight": (lambda w: ["inspect", "zero_weight.onnx"], ["'w'", "0x3x3x3"]),
    "huge ConstantOfShape": (lambda w: ["inspect", "huge_fold.onnx"], ["'huge'", "ConstantOfShape", "GiB"]),
    "huge Expand": (lambda w: ["inspect", "huge_expand.onnx"], ["'expand'", "Expand", "GiB"]),
    "NaN weights": (lambda w: ["inspect", "nan_weight.onnx"], ["NaN"]),
    "unknown op": (lambda w: ["inspect", "unknown_op.onnx"], ["LpNormalization"]),
    "missing initializer": (lambda w: ["inspect", "missing_init.onnx"], ["'w'"]),
    "zero-size input": (lambda w: ["inspect", "zero_input.onnx"], ["'x'"]),
    "output listed twice": (lambda w: ["inspect", "output_twice.onnx"], ["'y'", "twice"]),
    "opset 99": (lambda w: ["inspect", "opset99.onnx"], ["opset 99"]),
    "bad input shape": (lambda w: ["inspect", "m.onnx", "--input-shape", "1xthree"], ["--input-shape"]),
    "zero input shape": (lambda w: ["inspect", "m.onnx", "--input-shape", "1x1x0x8"], ["positive"]),
    "unknown target": (lambda w: ["inspect", "m.onnx", "--target", "tpu"], ["'tpu'"]),
    "quoted bool target": (lambda w: ["inspect", "m.onnx", "--target", target_with(
        w, "q.toml", "activation_symmetric = false", 'activation_symmetric = "false"')],
        ["q.toml", "activation_symmetric", "true or false"]),
    "unknown option": (lambda w: ["inspect", "m.onnx", "--colour"], ["--colour"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inspect_refuses(w, case):
    run_cases(w, case)
