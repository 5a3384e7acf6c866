"""``qdeploy report OUT --eval SET`` on bad input: one line, exit 2, OUT and
inputs untouched."""
import numpy as np
import pytest

from tests.badinput.check import run_cases
from tests.badinput.files import out_with, set_with

E = ["--eval", "set.npz"]


def _labels(w, n, dtype=np.int64):
    np.save(w / "l.npy", np.zeros(n, dtype))
    return "l.npy"


CASES = {
    "no OUT": (lambda w: ["report"] + E, ["Missing argument 'OUT'"]),
    "no --eval": (lambda w: ["report", "out"], ["Missing option", "--eval"]),
    "OUT missing": (lambda w: ["report", "none"] + E, ["none"]),
    "OUT not ours": (lambda w: ["report", "imgs"] + E, ["imgs"]),
    "manifest without inputs": (lambda w: ["report", out_with(w, "o2", lambda d: d.pop("inputs"))] + E,
                                ["inputs"]),
    "eval missing": (lambda w: ["report", "out", "--eval", "none.npz"], ["none.npz"]),
    "eval not an array file": (lambda w: ["report", "out", "--eval", "model.txt"], ["model.txt"]),
    "eval with NaN": (lambda w: ["report", "out", "--eval", set_with(
        w, "nan.npz", x=np.full((2, 1, 8, 8), np.nan, np.float32))], ["NaN"]),
    "eval uint8 pixels": (lambda w: np.save(w / "e.npy", np.zeros((2, 1, 8, 8), np.uint8)) or [
        "report", "out", "--eval", "e.npy"], ["--eval e.npy", "uint8", "float", "calib build"]),
    "labels missing": (lambda w: ["report", "out"] + E + ["--labels", "none.npy"], ["none.npy"]),
    "labels wrong count": (lambda w: ["report", "out"] + E + ["--labels", _labels(w, 3)], ["labels"]),
    "labels floats": (lambda w: ["report", "out"] + E + ["--labels", _labels(w, 200, np.float32)], ["labels"]),
    "max-drop negative": (lambda w: ["report", "out"] + E + ["--max-drop", "-1"], ["--max-drop"]),
    "min-sqnr nan": (lambda w: ["report", "out"] + E + ["--min-sqnr", "nan"], ["--min-sqnr"]),
    "model given is missing": (lambda w: ["report", "out"] + E + ["--model", "none.onnx"], ["--model none.onnx"]),
    "manifest model mistyped": (lambda w: ["report", out_with(w, "o2", lambda d: d.update(model=5))] + E,
                                ["manifest.json", "model"]),
    "manifest without options": (lambda w: ["report", out_with(w, "o2", lambda d: d.pop("options"))] + E,
                                 ["manifest.json", "options"]),
    "manifest keep_float mistyped": (lambda w: ["report", out_with(w, "o2", lambda d: d["options"].update(
        keep_float=5))] + E, ["manifest.json", "keep_float"]),
    "manifest weight rounding unknown": (lambda w: ["report", out_with(w, "o2", lambda d: d["options"].update(
        weight_rounding="floor"))] + E, ["manifest.json", "weight_rounding", "floor"]),
    "manifest target a string": (lambda w: ["report", out_with(w, "o2", lambda d: d.update(target="fpga"))] + E,
                                 ["manifest.json", "target"]),
    "manifest calibration mistyped": (lambda w: ["report", out_with(w, "o2", lambda d: d.update(calibration=5))]
                                      + E, ["manifest.json", "calibration"]),
    "tflite unlisted and corrupt": (lambda w: ["report", out_with(w, "o2", lambda d: d["artefacts"].pop(
        "model.int8.tflite"), files={"model.int8.tflite": b"junk"})] + E, ["model.int8.tflite", "manifest.json"]),
    "artefacts dropped": (lambda w: ["report", out_with(w, "o2", lambda d: d.pop("artefacts"))] + E,
                          ["model.qgraph", "manifest.json"]),
    "manifest input renamed": (lambda w: ["report", out_with(w, "o2", lambda d: d["inputs"][0].update(
        name="zzz"))] + E, ["'zzz'", "model.qgraph"]),
    "corrupt artefact": (lambda w: ["report", out_with(w, "o2", files={"model.qdq.onnx": b"junk"})] + E,
                         ["model.qdq.onnx"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_report_refuses(w, case):
    run_cases(w, case)
