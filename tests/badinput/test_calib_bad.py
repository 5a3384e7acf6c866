"""``qdeploy calib build | inspect | ranges`` on bad input: one line, exit 2,
nothing written, inputs untouched."""
import pickle

import numpy as np
import pytest

from tests.badinput.check import READONLY, refused, run_cases
from tests.badinput.files import set_with


def _pickled(w):
    (w / "obj.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
                                .ljust(128 + 10 - 1, b" ") + b"\n" + pickle.dumps([object]))
    return "obj.npy"


def _big_images(w):
    from PIL import Image
    (w / "big").mkdir()
    for k in range(3):
        Image.new("RGB", (4000, 3000), (k, 0, 0)).save(w / "big" / f"b{k}.png")
    return "big"


def _broken_image(w):
    (w / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return "imgs"


BUILD = {
    "no inputs": (lambda w: ["calib", "build", "-o", "s.npz"], ["Missing argument"]),
    "no -o": (lambda w: ["calib", "build", "imgs"], ["Missing option", "-o"]),
    "output not .npz": (lambda w: ["calib", "build", "imgs", "-o", "s.txt"], ["s.txt", ".npz"]),
    "output under a file": (lambda w: (w / "afile").write_text("x") and ["calib", "build", "imgs", "-o", "afile/s.npz"],
                            ["afile/s.npz", "afile is a file, not a folder"]),
    "missing input": (lambda w: ["calib", "build", "nothing/", "-o", "s.npz"], ["nothing"]),
    "mean nan": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--mean", "nan"], ["--mean", "finite"]),
    "raw mean inf": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--preset", "raw", "--mean", "inf"],
                     ["--mean", "finite"]),
    "std nan": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--std", "0.2,nan,0.2"], ["--std"]),
    "std zero": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--std", "0"], ["--std", "positive"]),
    "std negative": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--std", "-1"], ["--std"]),
    "mean not numbers": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--mean", "a,b,c"], ["--mean"]),
    "mean wrong count": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--mean", "0.1,0.2"], ["--mean", "2"]),
    "size text": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--size", "big"], ["--size"]),
    "size zero": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--size", "0x8"], ["--size"]),
    "size beyond 16384": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--size", "20000x20000"],
                          ["--size", "16384"]),
    "size 16384 out of memory": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--size", "16384x16384"],
                                 ["2x3x16384x16384", "GiB", "--size"]),
    "large images out of memory": (lambda w: ["calib", "build", _big_images(w), "-o", "s.npz"],
                                   ["3x3x3000x4000", "MiB", "available"]),
    "limit 0": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--limit", "0"], ["--limit", "x>=1"]),
    "limit text": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--limit", "ten"], ["--limit", "'ten'"]),
    "seed negative": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--seed", "-1"], ["--seed"]),
    "pad 300": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--resize", "letterbox", "--pad", "300"],
                ["--pad"]),
    "unknown layout": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--layout", "chw"], ["--layout"]),
    "unknown channels": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--channels", "cmyk"], ["--channels"]),
    "unknown preset": (lambda w: ["calib", "build", "imgs", "-o", "s.npz", "--preset", "coco"], ["--preset"]),
    "broken image strict": (lambda w: ["calib", "build", _broken_image(w), "-o", "s.npz", "--strict"],
                            ["broken.png", "--strict"]),
    "pickled npy": (lambda w: ["calib", "build", _pickled(w), "-o", "s.npz"], ["obj.npy"]),
    "mean on tensors": (lambda w: ["calib", "build", "c.npz", "-o", "s.npz", "--mean", "0.5"], ["--mean"]),
    "read-only folder": (lambda w: ["calib", "build", "imgs", "-o", f"{READONLY}/s.npz"], ["cannot write"]),
    "output is a folder": (lambda w: (w / "d.npz").mkdir() or ["calib", "build", "imgs", "-o", "d.npz"],
                           ["d.npz"]),
    "-o is the only input": (lambda w: ["calib", "build", "set.npz", "-o", "./set.npz"], ["set.npz", "-o"]),
    "-o is one of the inputs": (lambda w: ["calib", "build", "c.npz", "set.npz", "-o", "set.npz"],
                                ["set.npz", "-o"]),
}


def _nan_set(w):
    x = np.load(w / "c.npz")["x"][:4].copy()
    x[0, 0, 0, 0] = np.nan
    return set_with(w, "nan.npz", x=x)


def _short_set(w):
    """set.npz whose stored x.npy header declares two samples more than it holds (a copy
    cut short by a full disk, or a hand-made zip): the lazy reader must refuse it."""
    import io
    import zipfile
    with np.load(w / "set.npz") as z:
        arrays = {k: z[k] for k in z.files}
    x = arrays["x"]
    with zipfile.ZipFile(w / "short.npz", "w", zipfile.ZIP_STORED) as z:
        for k, v in arrays.items():
            buf = io.BytesIO()
            if k == "x":
                np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(x.dtype),
                                                           "fortran_order": False,
                                                           "shape": (len(x) + 2,) + x.shape[1:]})
                buf.write(x.tobytes())
            else:
                np.lib.format.write_array(buf, v, allow_pickle=False)
            z.writestr(f"{k}.npy", buf.getvalue())
    return "short.npz"


INSPECT = {
    "missing set": (lambda w: ["calib", "inspect", "none.npz"], ["none.npz"]),
    "not an npz": (lambda w: (w / "t.npz").write_text("hello") and ["calib", "inspect", "t.npz"], ["t.npz"]),
    "no recipe entry": (lambda w: ["calib", "inspect", set_with(w, "nr.npz", drop=["recipe"])], ["'recipe'"]),
    "tensors without recipe": (lambda w: ["calib", "inspect", "c.npz"], ["qdeploy calib build c.npz -o"]),
    "recipe not JSON": (lambda w: ["calib", "inspect", _raw_recipe(w, "{not json")], ["JSON"]),
    "recipe of another format": (lambda w: ["calib", "inspect", set_with(w, "f.npz", recipe={"format": "x"})],
                                 ["format"]),
    "recipe version 99": (lambda w: ["calib", "inspect", set_with(w, "v.npz", recipe={"version": 99})],
                          ["version 99"]),
    "recipe version text": (lambda w: ["calib", "inspect", set_with(w, "vt.npz", recipe={"version": "1"})],
                            ["version"]),
    "recipe kind missing": (lambda w: ["calib", "inspect", set_with(w, "k.npz", recipe={"kind": "DROP"})],
                            ["kind"]),
    "recipe layout missing": (lambda w: ["calib", "inspect", set_with(w, "l.npz", recipe={"layout": "DROP"})],
                              ["layout", "missing"]),
    "recipe layout mistyped": (lambda w: ["calib", "inspect", set_with(w, "lt.npz", recipe={"layout": 3})],
                               ["layout"]),
    "image recipe mean text": (lambda w: ["calib", "inspect", _image_set(w, {"mean": "abc"})], ["mean"]),
    "image recipe std zero": (lambda w: ["calib", "inspect", _image_set(w, {"std": [0, 1, 1]})], ["std"]),
    "image recipe size missing": (lambda w: ["calib", "inspect", _image_set(w, {"size": "DROP"})], ["size"]),
    "samples float64": (lambda w: ["calib", "inspect", set_with(w, "f64.npz", x=np.zeros((2, 1, 8, 8)))],
                        ["float64"]),
    "samples with NaN": (lambda w: ["calib", "inspect", _nan_set(w)], ["NaN"]),
    "no samples": (lambda w: ["calib", "inspect", set_with(w, "e.npz", x=np.zeros((0, 1, 8, 8), np.float32))],
                   ["non-empty"]),
    "unknown option": (lambda w: ["calib", "inspect", "set.npz", "--yaml"], ["--yaml"]),
}


def _raw_recipe(w, text):
    from qdeploy.fsutil import npz_bytes
    (w / "raw.npz").write_bytes(npz_bytes({"x": np.zeros((2, 1, 8, 8), np.float32), "recipe": np.array([text])}))
    return "raw.npz"


def _image_set(w, change):
    from tests.cli_helpers import cli
    assert cli("calib", "build", w / "imgs", "--size", "8x8", "-o", w / "img.npz", "-q").exit_code == 0
    return set_with(w, "img_bad.npz", recipe=change, src="img.npz")


RANGES = {
    "samples shorter than declared": (lambda w: ["calib", "ranges", "m.onnx", _short_set(w), "-o", "r3.json"],
                                      ["short.npz", "declares", "damaged", "calib build"]),
    "quantize on samples shorter than declared": (
        lambda w: ["quantize", "m.onnx", "--calib", _short_set(w), "-o", "qo"],
        ["short.npz", "declares", "damaged", "calib build"]),
    "method median": (lambda w: ["calib", "ranges", "m.onnx", "set.npz", "-o", "r2.json", "--method", "median"],
                      ["--method", "'median'"]),
    "percentile 150": (lambda w: ["calib", "ranges", "m.onnx", "set.npz", "-o", "r2.json", "--method",
                                  "percentile", "--percentile", "150"], ["--percentile", "150"]),
    "percentile nan": (lambda w: ["calib", "ranges", "m.onnx", "set.npz", "-o", "r2.json", "--percentile", "nan"],
                       ["--percentile", "finite"]),
    "batch size 0": (lambda w: ["calib", "ranges", "m.onnx", "set.npz", "-o", "r2.json", "--batch-size", "0"],
                     ["--batch-size"]),
    "output not .json": (lambda w: ["calib", "ranges", "m.onnx", "set.npz", "-o", "r2.txt"], [".json"]),
    "no -o": (lambda w: ["calib", "ranges", "m.onnx", "set.npz"], ["Missing option"]),
    "missing model": (lambda w: ["calib", "ranges", "none.onnx", "set.npz", "-o", "r2.json"], ["none.onnx"]),
    "missing set": (lambda w: ["calib", "ranges", "m.onnx", "none.npz", "-o", "r2.json"], ["none.npz"]),
    "set of other shape": (lambda w: ["calib", "ranges", "m.onnx", _image_set(w, {}), "-o", "r2.json"],
                           ["channel"]),
    "truncated model": (lambda w: ["calib", "ranges", "truncated.onnx", "set.npz", "-o", "r2.json"],
                        ["truncated.onnx"]),
    "duplicate names": (lambda w: ["calib", "ranges", "dup_names.onnx", "set.npz", "-o", "r2.json"], ["twice"]),
    "two inputs": (lambda w: ["calib", "ranges", "two_inputs.onnx", "set.npz", "-o", "r2.json"], ["inputs"]),
    "fixed batch 4": (lambda w: ["calib", "ranges", "batch4.onnx", "set.npz", "-o", "r2.json"], ["batch 4"]),
    "bad input shape": (lambda w: ["calib", "ranges", "m.onnx", "set.npz", "-o", "r2.json", "--input-shape", "x"],
                        ["--input-shape"]),
    "set recipe broken": (lambda w: ["calib", "ranges", "m.onnx", set_with(w, "k.npz", recipe={"layout": 5}),
                                     "-o", "r2.json"], ["layout"]),
    "read-only folder": (lambda w: ["calib", "ranges", "m.onnx", "set.npz", "-o", f"{READONLY}/r.json", "-q"],
                         ["cannot write"]),
}


@pytest.mark.parametrize("case", BUILD.values(), ids=BUILD.keys())
def test_calib_build_refuses(w, case):
    run_cases(w, case)


@pytest.mark.parametrize("case", INSPECT.values(), ids=INSPECT.keys())
def test_calib_inspect_refuses(w, case):
    run_cases(w, case)


@pytest.mark.parametrize("case", RANGES.values(), ids=RANGES.keys())
def test_calib_ranges_refuses(w, case):
    run_cases(w, case)


@pytest.mark.parametrize("limit", ["abc", "inf", "nan", "-1", "10x"])
def test_memory_limit_not_an_amount_is_refused(w, monkeypatch, limit):
    """QDEPLOY_MEMORY_LIMIT that is no amount of memory: one line naming it (it used to be
    ignored, dropping the guard, or, for 'inf', a traceback)."""
    monkeypatch.setenv("QDEPLOY_MEMORY_LIMIT", limit)
    refused(w, ["calib", "build", "imgs", "-o", "s.npz"], ["QDEPLOY_MEMORY_LIMIT", repr(limit)])
