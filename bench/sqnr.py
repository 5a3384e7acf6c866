"""Output SQNR of qdeploy's reference interpreter vs onnxruntime's quantize_static.

    OMP_NUM_THREADS=1 python bench/sqnr.py [--models a,b] [--write]

For every corpus model and the digits example, the same calibration data feeds

* qdeploy: passes -> calibrate (minmax) -> quantize per target profile -> the
  reference interpreter (integer arithmetic); for ``arm`` also with the
  accuracy-recovery options (CLE, bias correction) switched on;
* onnxruntime 1.x ``quantize_static`` (QDQ, per-channel int8 weights, after
  ``quant_pre_process``), calibration MinMax and Percentile, activations QUInt8
  and QInt8, run on onnxruntime's CPU provider.

Data. Corpus models (random-weight, so there are no labels): the bundled
``calib/`` photographs, random crops (35-100 % of the area, aspect 3/4..4/3,
random horizontal flip) resized to the model input and normalised with the
ImageNet mean/std; the 32 calibration samples come from the even-numbered
photos, the 32 evaluation samples from the odd-numbered ones (no photo is in
both). Digits: ``examples/digits/calib.npz`` (first 32 samples, train split)
and the whole held-out ``eval.npz`` (450 samples, with labels).

SQNR is over the whole evaluation set (total signal power / total noise
power); for a model with several outputs the table shows the worst output.
``--write`` replaces the "SQNR" section of bench/RESULTS.md (other sections are
kept as they are).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import platform
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qdeploy.quant.error import sqnr_db  # noqa: E402

N_CALIB = 32
N_EVAL = 32
DIGITS = ROOT / "examples" / "digits"


# ------------------------------------------------------------------ data
def photo_inputs(shape, photos, per_photo: int, seed: int) -> np.ndarray:
    """``len(photos) * per_photo`` samples of NCHW ``shape`` (batch 1) from
    random crops of ``photos``."""
    from PIL import Image
    from qdeploy.calibration.images import decode, to_tensor
    _, c, h, w = shape
    rng = np.random.default_rng(seed)
    recipe = {"channels": "gray" if c == 1 else "rgb", "layout": "nchw", "scale": 1 / 255,
              "mean": [0.449] if c == 1 else [0.485, 0.456, 0.406],
              "std": [0.226] if c == 1 else [0.229, 0.224, 0.225]}
    out = []
    for p in photos:
        im = decode(p, recipe["channels"])
        iw, ih = im.size
        for _ in range(per_photo):
            area = rng.uniform(0.35, 1.0) * iw * ih
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw = int(min(iw, round(np.sqrt(area * aspect))))
            ch = int(min(ih, round(np.sqrt(area / aspect))))
            x0, y0 = int(rng.integers(0, iw - cw + 1)), int(rng.integers(0, ih - ch + 1))
            crop = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(to_tensor(crop, recipe))
    return np.stack(out).astype(np.float32)


def datasets(name: str, model: onnx.ModelProto):
    """(calib_x, eval_x, eval_y or None) as batches along axis 0."""
    if name == "digits":
        cal = np.load(DIGITS / "calib.npz")["x"][:N_CALIB]
        ev = np.load(DIGITS / "eval.npz")
        return cal, ev["x"], ev["y"]
    from qdeploy.calibration.dataset import bundled_images
    photos = bundled_images()
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    per = N_CALIB // len(photos[0::2])
    cal = photo_inputs(dims, photos[0::2], per, seed=0)
    ev = photo_inputs(dims, photos[1::2], N_EVAL // len(photos[1::2]), seed=1)
    return cal, ev, None


def models() -> dict[str, onnx.ModelProto]:
    from qdeploy.corpus import CORPUS
    out = {name: build() for name, build in CORPUS.items()}
    out["digits"] = onnx.load(str(DIGITS / "digits_cnn.onnx"))
    return out


# ------------------------------------------------------------------ onnxruntime
def _ort_session(model_bytes: bytes, optimize: bool = True):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimize:   # QDQ semantics: Q/DQ run as float ops, no fused int8 kernels
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def ort_run(model_bytes: bytes, x: np.ndarray, optimize: bool = True) -> list[np.ndarray]:
    """Outputs (stacked along axis 0) of one sample at a time."""
    sess = _ort_session(model_bytes, optimize)
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def ort_quantize(model: onnx.ModelProto, calib_x: np.ndarray, method: str, act: str,
                 reduce_range: bool = False) -> bytes:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quant_pre_process, quantize_static)
    input_name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{input_name: calib_x[i:i + 1]} for i in range(len(calib_x))])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (Path(tmp) / f for f in ("in.onnx", "pre.onnx", "q.onnx"))
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        if opset < 13:       # per-channel QDQ needs DequantizeLinear's axis (opset 13)
            from onnx import version_converter
            model = version_converter.convert_version(model, 13)
        onnx.save(model, str(src))
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        try:                 # onnxruntime's recommended pre-processing; some graphs it breaks
            _ort_session(pre.read_bytes())
        except Exception:
            pre = src
        with contextlib.redirect_stdout(io.StringIO()):     # the percentile calibrator prints
            quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range, activation_type=getattr(QuantType, act),
                            weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, method))
        return dst.read_bytes()


ORT_SETTINGS = [("MinMax", "QUInt8", False), ("MinMax", "QInt8", False), ("Percentile", "QUInt8", False),
                ("Percentile", "QInt8", False), ("MinMax", "QUInt8", True)]


def ort_col(method: str, act: str, rr: bool) -> str:
    return f"ort {method} {act[1:]}" + (" rr" if rr else "")


# ------------------------------------------------------------------ qdeploy
QDEPLOY_SETTINGS = [  # (column, target, per_tensor, cle, bias_correction)
    ("arm", "arm", False, False, False),
    ("arm+cle+bc", "arm", False, True, True),
    ("fpga", "fpga", False, False, False),
    ("ort", "ort", False, False, False),
]


def qdeploy_quantize(model: onnx.ModelProto, calib_x: np.ndarray, target: str, per_tensor: bool,
                     cle: bool, bc: bool, relu6: str = "data"):
    """(float graph, QGraph) through the library's own API (what `qdeploy quantize` does)."""
    from qdeploy.calibration.calibrate import calibrate
    from qdeploy.onnx_import import import_onnx
    from qdeploy.passes import run_passes
    from qdeploy.quant.quantizer import quantize_graph
    from qdeploy.quant.targets import load_target
    from qdeploy.quant.cle import equalize
    from qdeploy.quant.bias_correction import correct_bias
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    g = run_passes(import_onnx(model, {model.graph.input[0].name: tuple(dims)}))
    ranges = calibrate(g, calib_x, method="minmax", progress=False)
    if cle:
        equalize(g, ranges=ranges, relu6=relu6)
        ranges = calibrate(g, calib_x, method="minmax", progress=False)
    ranges = {k: ranges[k] for k in ranges.names()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qg = quantize_graph(g, ranges, load_target(target), per_tensor=per_tensor)
    if bc:
        correct_bias(g, qg, calib_x)
    return g, qg


def qdeploy_run(qg, x: np.ndarray) -> list[np.ndarray]:
    from qdeploy.quant.interpreter import run
    outs = [run(qg, {qg.inputs[0]: x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([o[k] for o in outs]) for k in qg.outputs]


# ------------------------------------------------------------------ table
def worst_sqnr(ref: list[np.ndarray], test: list[np.ndarray]) -> float:
    return min(sqnr_db(r, t) for r, t in zip(ref, test))


def top1(outs: list[np.ndarray], y: np.ndarray) -> float:
    return 100.0 * float(np.mean(outs[0].reshape(len(y), -1).argmax(axis=1) == y))


def measure(name: str, model: onnx.ModelProto, log) -> dict:
    cal, ev, y = datasets(name, model)
    ref = ort_run(model.SerializeToString(), ev)
    row = {"model": name, "float_top1": top1(ref, y) if y is not None else None}
    for col, target, per_tensor, cle, bc in QDEPLOY_SETTINGS:
        t0 = time.time()
        try:
            _, qg = qdeploy_quantize(model, cal, target, per_tensor, cle, bc)
            out = qdeploy_run(qg, ev)
            row[col] = worst_sqnr(ref, out)
            if y is not None:
                row[col + ":top1"] = top1(out, y)
        except Exception as e:  # a profile that cannot take the model is reported, not fatal
            row[col] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        log(f"  {name:18s} qdeploy {col:12s} {_fmt(row[col])}  ({time.time() - t0:.1f}s)")
    for method, act, rr in ORT_SETTINGS:
        col = ort_col(method, act, rr)
        t0 = time.time()
        try:
            qdq = ort_quantize(model, cal, method, act, rr)
            for suffix, optimize in (("", False), (":exec", True)):
                out = ort_run(qdq, ev, optimize)
                row[col + suffix] = worst_sqnr(ref, out)
                if y is not None:
                    row[col + suffix + ":top1"] = top1(out, y)
        except Exception as e:
            row[col] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        log(f"  {name:18s} {col:22s} {_fmt(row[col])} / {_fmt(row.get(col + ':exec'))}  ({time.time() - t0:.1f}s)")
    return row


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return "err" if isinstance(v, str) else "-"


def table(rows: list[dict]) -> str:
    qcols = [c for c, *_ in QDEPLOY_SETTINGS]
    ocols = [ort_col(*s) for s in ORT_SETTINGS]
    cols = qcols + ocols + [c + ":exec" for c in ocols]
    lines = ["| model | " + " | ".join(qcols + ocols) + " | arm - best ort |",
             "|---" * (len(qcols + ocols) + 2) + "|"]
    for r in rows:
        ort_best = max((r[c] for c in cols if c.startswith("ort ") and isinstance(r.get(c), float)),
                       default=None)
        arm = r.get("arm")
        diff = f"{arm - ort_best:+.1f}" if isinstance(arm, float) and ort_best is not None else "-"
        cells = [_fmt(r.get(c)) for c in qcols] + [f"{_fmt(r.get(c))} / {_fmt(r.get(c + ':exec'))}"
                                                   for c in ocols]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {diff} |")
    errors = [f"- {r['model']} / {c}: {r[c]}" for r in rows for c in cols if isinstance(r.get(c), str)]
    acc = [r for r in rows if r.get("float_top1") is not None]
    out = "\n".join(lines)
    for r in acc:
        parts = [f"float {r['float_top1']:.2f} %"]
        for c in qcols + ocols + [c + ":exec" for c in ocols]:
            if isinstance(r.get(c + ":top1"), float):
                parts.append(f"{c} {r[c + ':top1']:.2f} % (drop {r['float_top1'] - r[c + ':top1']:+.2f})")
        out += f"\n\nTop-1 on {r['model']} (eval.npz, {len(np.load(DIGITS / 'eval.npz')['y'])} samples): " \
               + "; ".join(parts) + "."
    if errors:
        out += "\n\nFailures:\n" + "\n".join(errors)
    return out


RECOVERY = [  # (label, cle, relu6 policy, bias correction)
    ("none", False, "data", False),
    ("BC", False, "data", True),
    ("CLE", True, "data", False),
    ("CLE+BC", True, "data", True),
    ("CLE(relax ReLU6)", True, "relax", False),
    ("CLE(relax ReLU6)+BC", True, "relax", True),
]


def recovery_table(names: list[str], allm: dict, log) -> str:
    """SQNR (and top-1 where labelled) of the arm profile per-channel and
    per-tensor with each accuracy-recovery setting, vs the ORIGINAL float model."""
    lines = ["| model | weights | " + " | ".join(r[0] for r in RECOVERY) + " |",
             "|---|---" + "|---" * len(RECOVERY) + "|"]
    for name in names:
        model = allm[name]
        cal, ev, y = datasets(name, model)
        ref = ort_run(model.SerializeToString(), ev)
        for per_tensor in (False, True):
            cells = []
            for label, cle, relu6, bc in RECOVERY:
                _, qg = qdeploy_quantize(model, cal, "arm", per_tensor, cle, bc, relu6)
                out = qdeploy_run(qg, ev)
                cell = f"{worst_sqnr(ref, out):.1f}"
                if y is not None:
                    cell += f" ({top1(out, y):.2f} %)"
                cells.append(cell)
                log(f"  {name:14s} {'per-tensor' if per_tensor else 'per-channel'} {label:20s} {cell}")
            lines.append(f"| {name} | {'per-tensor' if per_tensor else 'per-channel'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions() -> str:
    import onnxruntime
    return (f"python {platform.python_version()}, numpy {np.__version__}, onnx {onnx.__version__}, "
            f"onnxruntime {onnxruntime.__version__}")


def write_section(body: str, path: Path = ROOT / "bench" / "RESULTS.md") -> None:
    """Replace (or append) the '## SQNR' section, leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = "## SQNR\n\n" + body.rstrip() + "\n"
    pat = re.compile(r"^## SQNR\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated subset (default: all corpus models + digits)")
    ap.add_argument("--write", action="store_true", help="update the SQNR section of bench/RESULTS.md")
    ap.add_argument("--recovery", default="mobilenet_v2,mobilenet_v1,digits",
                    help="models for the CLE / bias-correction table ('' to skip)")
    args = ap.parse_args(argv)
    allm = models()
    names = args.models.split(",") if args.models else list(allm)
    rows = []
    for n in names:
        rows.append(measure(n, allm[n], lambda s: print(s, file=sys.stderr, flush=True)))
    body = table(rows)
    rec = [n for n in args.recovery.split(",") if n]
    if rec:
        body += ("\n\n### Accuracy recovery (arm profile; SQNR dB vs the original float model, "
                 "top-1 in brackets where labelled)\n\n"
                 + recovery_table(rec, allm, lambda s: print(s, file=sys.stderr, flush=True)))
    print(body)
    if args.write:
        cmd = "OMP_NUM_THREADS=1 python bench/sqnr.py --write" + (f" --models {args.models}" if args.models else "")
        head = (f"Command: `{cmd}`  \nDate: {_dt.date.today().isoformat()}  \nVersions: {versions()}\n\n"
                f"Output SQNR in dB (higher is better) of each quantized model vs the float model "
                f"on {N_EVAL} evaluation inputs ({N_CALIB} calibration inputs, the same for every "
                f"column; see bench/sqnr.py's docstring). qdeploy columns run the reference "
                f"interpreter; `ort` columns are onnxruntime's quantize_static (QDQ, per-channel int8 "
                f"weights, after quant_pre_process) as `A / B`: A = the QDQ model's semantics "
                f"(onnxruntime with graph optimizations off, Q/DQ as float ops), B = the same model "
                f"on onnxruntime's fused int8 CPU kernels (default session). `rr` = reduce_range "
                f"(7-bit weights). `arm - best ort` compares with the best of all ort numbers.\n\n")
        write_section(head + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
