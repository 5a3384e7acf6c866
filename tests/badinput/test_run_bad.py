"""``qdeploy run`` on bad OUT folders, inputs and options: one line, exit 2,
no output file, inputs untouched."""
import numpy as np
import pytest

from tests.badinput.check import READONLY, refused, run_cases
from tests.badinput.files import out_with

R = ["--input", "x.npy", "-o", "y.npy"]


def _npy(w, name, a):
    np.save(w / name, a, allow_pickle=True)
    return name


def _drop_output_shape(d):
    d["outputs"][0].pop("shape")


def _drop_c(d):
    for name in [n for n in d["artefacts"] if n.startswith("c/")]:
        d["artefacts"].pop(name)


def _rename_input(d):
    d["inputs"][0]["name"] = "zzz"


CASES = {
    "no OUT": (lambda w: ["run"] + R, ["Missing argument 'OUT'"]),
    "no --input": (lambda w: ["run", "out", "-o", "y.npy"], ["Missing option", "--input"]),
    "OUT missing": (lambda w: ["run", "none"] + R, ["none", "not a qdeploy output"]),
    "OUT not ours": (lambda w: ["run", "imgs"] + R, ["imgs", "not a qdeploy output"]),
    "OUT is a file": (lambda w: ["run", "m.onnx"] + R, ["m.onnx"]),
    "manifest not JSON": (lambda w: ["run", out_with(w, "o2", files={"manifest.json": b"{"})] + R,
                          ["not a qdeploy output"]),
    "manifest version 99": (lambda w: ["run", out_with(w, "o2", lambda d: d.update(version=99))] + R,
                            ["version 99"]),
    "manifest without outputs": (lambda w: ["run", out_with(w, "o2", lambda d: d.pop("outputs"))] + R,
                                 ["outputs", "missing"]),
    "manifest inputs mistyped": (lambda w: ["run", out_with(w, "o2", lambda d: d.update(inputs=5))] + R,
                                 ["inputs = 5"]),
    "manifest output shape missing": (lambda w: ["run", out_with(w, "o2", _drop_output_shape)] + R,
                                      ["outputs[0]", "shape"]),
    "manifest input shape text": (lambda w: ["run", out_with(w, "o2", lambda d: d["inputs"][0].update(
        shape="1x8x8"))] + R, ["inputs[0]", "shape"]),
    "manifest emitted mistyped": (lambda w: ["run", out_with(w, "o2", lambda d: d.update(emitted=[]))] + R,
                                  ["emitted"]),
    "corrupt model.float.onnx": (lambda w: ["run", out_with(w, "o2", files={"model.float.onnx": b"\x08junk"}),
                                            "--backend", "float"] + R, ["model.float.onnx"]),
    "missing model.float.onnx": (lambda w: ["run", out_with(w, "o2", files={}) and (
        w / "o2" / "model.float.onnx").unlink() or "o2", "--backend", "float"] + R, ["model.float.onnx"]),
    "corrupt model.qdq.onnx": (lambda w: ["run", out_with(w, "o2", files={"model.qdq.onnx": b"\x08junk"}),
                                          "--backend", "qdq"] + R, ["model.qdq.onnx", "differs"]),
    "truncated model.int8.tflite (tflm)": (lambda w: ["run", out_with(w, "o2", files={
        "model.int8.tflite": (w / "out" / "model.int8.tflite").read_bytes()[:100]}), "--backend", "tflm"] + R,
        ["model.int8.tflite", "differs"]),
    "corrupt model.int8.tflite (tflite)": (lambda w: ["run", out_with(w, "o2", files={
        "model.int8.tflite": b"junkjunk"}), "--backend", "tflite"] + R, ["model.int8.tflite"]),
    "edited C bundle": (lambda w: ["run", out_with(w, "o2", files={"c/model.c": b"int x;"}), "--backend", "c"] + R,
                        ["c/model.c", "differs"]),
    "C bundle file missing": (lambda w: ["run", out_with(w, "o2") and (w / "o2" / "c" / "model.c").unlink()
                                         or "o2", "--backend", "c"] + R, ["c/model.c", "missing"]),
    "artefact sizes mistyped": (lambda w: ["run", out_with(w, "o2", lambda d: d["artefacts"]["model.qgraph"].update(
        bytes="big"))] + R, ["artefacts['model.qgraph']", "bytes"]),
    "corrupt model.qgraph": (lambda w: ["run", out_with(w, "o2", files={"model.qgraph": b"PK\x03\x04junk"})] + R,
                             ["model.qgraph"]),
    # manifest.json edited so that it no longer vouches for the file the backend reads
    "tflite unlisted and truncated": (lambda w: ["run", out_with(w, "o2", lambda d: d["artefacts"].pop(
        "model.int8.tflite"), files={"model.int8.tflite": (w / "out" / "model.int8.tflite").read_bytes()[:100]}),
        "--backend", "tflm"] + R, ["model.int8.tflite", "manifest.json"]),
    "artefacts dropped, qdq corrupt": (lambda w: ["run", out_with(w, "o2", lambda d: d.pop("artefacts"), files={
        "model.qdq.onnx": b"junk"}), "--backend", "qdq"] + R, ["model.qdq.onnx", "manifest.json"]),
    "C bundle unlisted and edited": (lambda w: ["run", out_with(w, "o2", _drop_c, files={"c/model.c": b"int x;"}),
                                                "--backend", "c"] + R, ["c/", "manifest.json"]),
    "manifest input renamed (tflm)": (lambda w: ["run", out_with(w, "o2", _rename_input), "--backend", "tflm"] + R,
                                      ["'zzz'", "'image'", "model.qgraph"]),
    "manifest input renamed (c)": (lambda w: ["run", out_with(w, "o2", _rename_input), "--backend", "c"] + R,
                                   ["'zzz'", "'image'"]),
    "manifest float_tail mistyped": (lambda w: ["run", out_with(w, "o2", lambda d: d.update(float_tail=5))] + R,
                                     ["float_tail"]),
    "-o is the --input file": (lambda w: ["run", "out", "--input", "x.npy", "-o", "./x.npy"], ["x.npy", "--input"]),
    "unknown backend": (lambda w: ["run", "out", "--backend", "gpu"] + R, ["'gpu'"]),
    "backend c without c/": (lambda w: ["run", "bare", "--backend", "c"] + R, ["--emit c"]),
    "backend tflm without tflite": (lambda w: ["run", "bare", "--backend", "tflm"] + R, ["--emit tflite"]),
    "backend tflite without tflite": (lambda w: ["run", "bare", "--backend", "tflite"] + R, ["--emit tflite"]),
    "backend qdq without qdq": (lambda w: ["run", "bare", "--backend", "qdq"] + R, ["--emit qdq"]),
    "input missing": (lambda w: ["run", "out", "--input", "none.npy", "-o", "y.npy"], ["none.npy"]),
    "input not an array file": (lambda w: ["run", "out", "--input", "model.txt", "-o", "y.npy"], ["model.txt"]),
    "input wrong shape": (lambda w: ["run", "out", "--input", _npy(w, "i.npy", np.zeros((2, 3, 8, 8), np.float32)),
                                     "-o", "y.npy"], ["'image'", "2x3x8x8"]),
    "input NaN": (lambda w: ["run", "out", "--input", _npy(w, "i.npy", np.full((1, 1, 8, 8), np.nan, np.float32)),
                             "-o", "y.npy"], ["NaN"]),
    "input no samples": (lambda w: ["run", "out", "--input", _npy(w, "i.npy", np.zeros((0, 1, 8, 8), np.float32)),
                                    "-o", "y.npy"], ["no samples"]),
    "input strings": (lambda w: ["run", "out", "--input", _npy(w, "i.npy", np.array([["a"]])), "-o", "y.npy"],
                      ["i.npy", "<U1", "not floats"]),
    # integer or bool samples are pixels or ids, not the model's preprocessed float input
    "input uint8 pixels": (lambda w: ["run", "out", "--input", _npy(w, "i.npy", np.zeros((2, 1, 8, 8), np.uint8)),
                                      "-o", "y.npy"], ["--input i.npy", "uint8", "float", "calib build"]),
    "input bool": (lambda w: ["run", "out", "--input", _npy(w, "i.npy", np.zeros((2, 1, 8, 8), bool)),
                              "-o", "y.npy"], ["--input i.npy", "bool", "float"]),
    "input npz of int64": (lambda w: np.savez(w / "i.npz", image=np.zeros((2, 1, 8, 8), np.int64)) or [
        "run", "out", "--input", "i.npz", "-o", "y.npy"], ["--input i.npz array 'image'", "int64", "float"]),
    "input pickled": (lambda w: ["run", "out", "--input", _npy(w, "i.npy", np.array([{}], dtype=object)),
                                 "-o", "y.npy"], ["i.npy"]),
    "input npz wrong name": (lambda w: np.savez(w / "i.npz", a=np.zeros((1, 1, 8, 8)), b=np.zeros(1)) or [
        "run", "out", "--input", "i.npz", "-o", "y.npy"], ["image", "given: a, b"]),
    "-o txt": (lambda w: ["run", "out", "--input", "x.npy", "-o", "y.txt"], ["y.txt"]),
    "-o a folder": (lambda w: (w / "y.npy").mkdir() or ["run", "out"] + R, ["folder"]),
    "-o read-only folder": (lambda w: ["run", "out", "--input", "x.npy", "-o", f"{READONLY}/y.npy"],
                            ["cannot write"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_run_refuses(w, case):
    run_cases(w, case)


def test_run_refuses_unwritable_build_cache(w, monkeypatch):
    """QDEPLOY_CACHE a file (or a folder nobody may write): one line naming it, not a traceback."""
    monkeypatch.setenv("QDEPLOY_CACHE", str(w / "x.npy"))
    refused(w, ["run", "out", "--backend", "c"] + R, ["QDEPLOY_CACHE", "x.npy"])
    monkeypatch.setenv("QDEPLOY_CACHE", f"{READONLY}/cache")
    refused(w, ["run", "out", "--backend", "c"] + R, ["QDEPLOY_CACHE", READONLY])
