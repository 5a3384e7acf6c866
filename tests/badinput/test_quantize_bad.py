"""``qdeploy quantize`` on bad input: one line, exit 2, no OUT written (an
existing OUT untouched), inputs untouched."""
import numpy as np
import pytest

from tests.badinput.check import READONLY, run_cases
from tests.badinput.files import json_with, set_with, target_with

Q = ["quantize", "m.onnx", "--calib", "c.npz", "--limit", "8"]


def _ranges(w, name, change):
    return json_with(w / "r.json", w / name, change)


def _labels(w, n):
    np.save(w / "l.npy", np.zeros(n, np.int64))
    return "l.npy"


def _ints(w, name, dtype):
    """Samples of the digits model's shape (1x1x8x8) as ``dtype`` (labels y stay integers)."""
    x = np.arange(4 * 64).reshape(4, 1, 8, 8).astype(dtype)
    if name.endswith(".npz"):
        np.savez(w / name, x=x, y=np.zeros(4, np.int64))
    else:
        np.save(w / name, x)
    return name


def _image_set(w):
    from tests.cli_helpers import cli
    assert cli("calib", "build", w / "imgs", "--size", "8x8", "-o", w / "img.npz", "-q").exit_code == 0
    return "img.npz"


def _other_files(w):
    (w / "mine").mkdir()
    (w / "mine" / "notes.txt").write_text("keep me")
    return "mine"


CASES = {
    "no model": (lambda w: ["quantize", "-o", "o"], ["Missing argument 'MODEL'"]),
    "default OUT holds other files": (lambda w: (w / "m_arm").mkdir() or (w / "m_arm" / "a.txt").write_text("x")
                                      and ["quantize", "m.onnx", "--calib", "c.npz"], ["m_arm", "not a qdeploy output"]),
    "-o empty": (lambda w: Q + ["-o", ""], ["-o", "empty"]),
    "-o under a file": (lambda w: (w / "afile").write_text("x") and Q + ["-o", "afile/out"],
                        ["afile/out", "afile is a file, not a folder"]),
    "-o current folder": (lambda w: Q + ["-o", "."], ["current folder"]),
    "-o parent of the current folder": (lambda w: Q + ["-o", ".."], ["current folder"]),
    "-o absolute current folder": (lambda w: Q + ["-o", str(w)], ["current folder"]),
    "-o a file": (lambda w: Q + ["-o", "model.txt"], ["model.txt"]),
    "-o with a file suffix": (lambda w: Q + ["-o", "o.onnx"], ["'.onnx' file"]),
    "-o folder of other files": (lambda w: Q + ["-o", _other_files(w)], ["mine", "not a qdeploy output"]),
    "-o holds the model": (lambda w: ["quantize", "out/model.float.onnx", "-o", "out"], ["inside", "out"]),
    "-o read-only folder": (lambda w: Q + ["-o", f"{READONLY}/o"], ["cannot write"]),
    "unknown target": (lambda w: Q + ["--target", "tpu", "-o", "o"], ["'tpu'", "arm"]),
    "target file missing": (lambda w: Q + ["--target", "no.toml", "-o", "o"], ["no.toml", "no such file"]),
    "target quoted bool": (lambda w: Q + ["--target", target_with(
        w, "t.toml", "activation_symmetric = false", 'activation_symmetric = "false"'), "-o", "o"],
        ["activation_symmetric", "'false'"]),
    "target emit = 5": (lambda w: Q + ["--target", target_with(w, "t.toml", "emit = []", "emit = 5"), "-o", "o"],
                        ["emit = 5"]),
    "target numerics = 3": (lambda w: Q + ["--target", target_with(
        w, "t.toml", "[numerics]", "numerics = 3\n[other]"), "-o", "o"], ["t.toml"]),
    "target flash -1": (lambda w: Q + ["--target", target_with(w, "t.toml", "flash_kib = 0", "flash_kib = -1"),
                                       "-o", "o"], ["flash_kib", "non-negative"]),
    "target bad TOML": (lambda w: Q + ["--target", target_with(w, "t.toml", "[memory]", "[memory"), "-o", "o"],
                        ["TOML"]),
    "method median": (lambda w: Q + ["--method", "median", "-o", "o"], ["--method", "'median'"]),
    "limit 0": (lambda w: Q + ["--limit", "0", "-o", "o"], ["--limit"]),
    "limit text": (lambda w: Q + ["--limit", "ten", "-o", "o"], ["--limit", "'ten'"]),
    "batch size -1": (lambda w: Q + ["--batch-size", "-1", "-o", "o"], ["--batch-size"]),
    "calib missing": (lambda w: ["quantize", "m.onnx", "--calib", "none.npz", "-o", "o"], ["none.npz"]),
    "calib of another shape": (lambda w: ["quantize", "m.onnx", "--calib", "imgs", "--preset", "coco", "-o", "o"],
                               ["--preset"]),
    "calib set broken recipe": (lambda w: ["quantize", "m.onnx", "--calib", set_with(
        w, "b.npz", recipe={"kind": "video"}), "-o", "o"], ["kind"]),
    "ranges missing": (lambda w: Q + ["--ranges", "none.json", "-o", "o"], ["none.json"]),
    "ranges not JSON": (lambda w: (w / "t.json").write_text("{") and Q + ["--ranges", "t.json", "-o", "o"],
                        ["t.json", "JSON"]),
    "ranges without tensors": (lambda w: Q + ["--ranges", _ranges(w, "x.json", lambda d: d.pop("tensors")),
                                              "-o", "o"], ["tensors", "missing"]),
    "ranges samples text": (lambda w: Q + ["--ranges", _ranges(w, "x.json", lambda d: d.update(samples="many")),
                                           "-o", "o"], ["samples"]),
    "ranges lo text": (lambda w: Q + ["--ranges", _ranges(w, "x.json", lambda d: [
        t.update(lo="low") for t in d["tensors"].values()]), "-o", "o"], ["lo"]),
    "ranges method unknown": (lambda w: Q + ["--ranges", _ranges(w, "x.json", lambda d: d.update(method="kl")),
                                             "-o", "o"], ["method"]),
    "ranges with --cle": (lambda w: Q + ["--ranges", "r.json", "--cle", "-o", "o"], ["--cle"]),
    "emit unknown": (lambda w: Q + ["--emit", "foo", "-o", "o"], ["'foo'"]),
    # --io float shapes model.int8.tflite only: asked for where no TFLite file is written, refused
    "io float on ort": (lambda w: Q + ["--target", "ort", "--io", "float", "-o", "o"],
                        ["--io float", "model.int8.tflite", "emits: qdq", "--emit"]),
    "io float with --emit c": (lambda w: Q + ["--emit", "c", "--io", "float", "-o", "o"],
                               ["--io float", "emits: c", "drop --io"]),
    "emit tflite for fpga": (lambda w: Q + ["--emit", "tflite", "--target", "fpga", "-o", "o"],
                             ["--emit tflite", "fpga"]),
    "emit c for ort": (lambda w: Q + ["--emit", "c", "--target", "ort", "-o", "o"], ["--emit c", "ort"]),
    "emit list with unknown": (lambda w: Q + ["--emit", "qdq,onnx", "-o", "o"], ["'onnx'"]),
    "emit qdq for fpga": (lambda w: Q + ["--emit", "qdq", "--target", "fpga", "-o", "o"], ["--emit qdq", "fpga"]),
    "input shape bad": (lambda w: Q + ["--input-shape", "1x1xeight", "-o", "o"], ["--input-shape"]),
    "input shape contradicts": (lambda w: Q + ["--input-shape", "1x3x8x8", "-o", "o"], ["contradicts"]),
    "fixed batch 4": (lambda w: ["quantize", "batch4.onnx", "--calib", "c.npz", "-o", "o"], ["batch 4", "1x3x8x8"]),
    "input shape batch 4": (lambda w: Q + ["--input-shape", "4x1x8x8", "-o", "o"], ["batch 4", "1x1x8x8"]),
    "truncated model": (lambda w: ["quantize", "truncated.onnx", "-o", "o"], ["truncated.onnx"]),
    "duplicate names": (lambda w: ["quantize", "dup_names.onnx", "-o", "o"], ["twice"]),
    "zero-size weight": (lambda w: ["quantize", "zero_weight.onnx", "-o", "o"], ["zero elements"]),
    "huge fold": (lambda w: ["quantize", "huge_fold.onnx", "-o", "o"], ["'huge'", "GiB"]),
    "NaN weights": (lambda w: ["quantize", "nan_weight.onnx", "-o", "o"], ["NaN"]),
    "unknown op": (lambda w: ["quantize", "unknown_op.onnx", "-o", "o"], ["LpNormalization"]),
    "two inputs": (lambda w: ["quantize", "two_inputs.onnx", "-o", "o"], ["inputs"]),
    "huge input shape": (lambda w: ["quantize", "dynamic.onnx", "--input-shape", "1x3x16384x16384", "-o", "o"],
                         ["3x16384x16384", "memory"]),
    "unknown option": (lambda w: Q + ["--fast", "-o", "o"], ["--fast"]),
    "max-drop nan": (lambda w: Q + ["--max-drop", "nan", "-o", "o"], ["--max-drop", "finite"]),
    "max-drop 150": (lambda w: Q + ["--max-drop", "150", "-o", "o"], ["--max-drop"]),
    "min-sqnr inf": (lambda w: Q + ["--min-sqnr", "inf", "-o", "o"], ["--min-sqnr", "finite"]),
    "io int4": (lambda w: Q + ["--io", "int4", "-o", "o"], ["--io"]),
    "eval missing": (lambda w: Q + ["--eval", "none.npz", "-o", "o"], ["none.npz"]),
    "eval of another shape": (lambda w: Q + ["--eval", _image_set(w), "-o", "o"], ["eval"]),
    "eval uint8 pixels": (lambda w: Q + ["--eval", _ints(w, "e.npz", np.uint8), "-o", "o"],
                          ["--eval e.npz", "uint8", "float", "calib build"]),
    "calib .npy of int64": (lambda w: ["quantize", "m.onnx", "--calib", _ints(w, "c8.npy", np.int64), "-o", "o"],
                            ["c8.npy", "int64", "float", "calib build"]),
    "calib .npy of bool": (lambda w: ["quantize", "m.onnx", "--calib", _ints(w, "c8.npy", bool), "-o", "o"],
                           ["c8.npy", "bool", "float"]),
    "labels missing": (lambda w: Q + ["--eval", "set.npz", "--labels", "none.npy", "-o", "o"], ["none.npy"]),
    "labels wrong count": (lambda w: Q + ["--eval", "set.npz", "--labels", _labels(w, 3), "-o", "o"], ["labels"]),
    "labels without eval": (lambda w: Q + ["--labels", _labels(w, 200), "-o", "o"], ["--labels"]),
    # --keep-float (quant/float_island.py): ort only, and only a Conv/ConvTranspose/Gemm layer
    "keep-float on arm": (lambda w: Q + ["--keep-float", "/features/features.9/Conv", "-o", "o"],
                          ["--keep-float", "ort-only", "'arm'"]),
    "keep-float on fpga": (lambda w: Q + ["--target", "fpga", "--keep-float", "/features/features.9/Conv", "-o", "o"],
                           ["--keep-float", "ort-only", "'fpga'"]),
    "keep-float on cortex-m": (lambda w: Q + ["--target", "cortex-m", "--keep-float", "/classifier/Gemm", "-o", "o"],
                               ["--keep-float", "ort-only", "'cortex-m'"]),
    "keep-float unknown node": (lambda w: Q + ["--target", "ort", "--keep-float", "conv99", "-o", "o"],
                                ["--keep-float conv99", "no node named 'conv99'", "qdeploy inspect"]),
    "keep-float one of a list unknown": (lambda w: Q + ["--target", "ort", "--keep-float",
                                                        "/features/features.9/Conv,conv99", "-o", "o"], ["'conv99'"]),
    "keep-float not a layer": (lambda w: Q + ["--target", "ort", "--keep-float", "/Reshape", "-o", "o"],
                               ["'/Reshape' (Reshape)", "cannot be kept in float"]),
    "keep-float pool": (lambda w: Q + ["--target", "ort", "--keep-float", "/features/features.15/GlobalAveragePool",
                                       "-o", "o"], ["(GlobalAveragePool)", "cannot be kept in float"]),
    "keep-float graph input": (lambda w: Q + ["--target", "ort", "--keep-float", "image_quantize", "-o", "o"],
                               ["graph input 'image'", "not a layer"]),
    "keep-float graph output": (lambda w: Q + ["--target", "ort", "--keep-float", "logits", "-o", "o"],
                                ["graph output 'logits'", "not a layer"]),
    "keep-float node folded on import": (lambda w: Q + ["--target", "ort", "--keep-float", "/Shape", "-o", "o"],
                                         ["'/Shape' (Shape)", "nothing of it is left"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_quantize_refuses(w, case):
    run_cases(w, case)


def test_emitter_missing_from_this_qdeploy(w, monkeypatch):
    """An artefact in the table whose module is absent (not landed, or a broken
    install): one line, nothing written."""
    from qdeploy import emit
    fake = emit.Artefact("fake", "model.fake", "qdeploy.emit.nosuch", ("arm",), {"fake": "qdeploy.emit.nosuch:run"},
                         "a fake artefact")
    monkeypatch.setitem(emit.ARTEFACTS, "fake", fake)
    run_cases(w, (lambda w: Q + ["--emit", "fake", "-o", "o"], ["--emit fake", "qdeploy.emit.nosuch"]))
