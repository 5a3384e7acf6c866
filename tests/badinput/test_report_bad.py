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
    "labels missing": (lambda w: ["report", "out"] + E + ["--labels", "none.npy"], ["none.npy"]),
    "labels wrong count": (lambda w: ["report", "out"] + E + ["--labels", _labels(w, 3)], ["labels"]),
    "labels floats": (lambda w: ["report", "out"] + E + ["--labels", _labels(w, 200, np.float32)], ["labels"]),
    "max-drop negative": (lambda w: ["report", "out"] + E + ["--max-drop", "-1"], ["--max-drop"]),
    "min-sqnr nan": (lambda w: ["report", "out"] + E + ["--min-sqnr", "nan"], ["--min-sqnr"]),
    "corrupt artefact": (lambda w: ["report", out_with(w, "o2", files={"model.qdq.onnx": b"junk"})] + E,
                         ["model.qdq.onnx"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_report_refuses(w, case):
    run_cases(w, case)
