"""Output SQNR of qdeploy's reference interpreter vs onnxruntime's quantize_static.

    OMP_NUM_THREADS=1 python bench/sqnr.py [--models a,b] [--write]

For every corpus model and the digits example, the same calibration data feeds

* qdeploy: passes -> calibrate -> quantize per target profile -> the reference
  interpreter (integer arithmetic). ``arm`` with each calibration method
  (tailclip = the CLI default, minmax, percentile, entropy, mse, auto), with the
  accuracy-recovery options (CLE, bias correction), ``fpga`` and the ``ort``
  profile (tailclip). ``arm fq`` is the arm QGraph's fake-quant float model
  (its scales and integer weights as QuantizeLinear/DequantizeLinear pairs on
  onnxruntime, float bias): qdeploy's "QDQ semantics", the like-for-like peer
  of onnxruntime's A numbers;
* onnxruntime 1.x ``quantize_static`` (QDQ, per-channel int8 weights, after
  ``quant_pre_process``), calibration MinMax and Percentile, activations QUInt8
  and QInt8, run on onnxruntime's CPU provider. ``ops left in float by ort``
  lists the op types of the MinMax QDQ model with an input that is not a
  DequantizeLinear output (none on this corpus: ort quantizes every op here).

Draws. On random-weight networks the output SQNR of ONE quantized model is a
noisy number: widening every range by a random 0-0.2 % (no change in the
statistics) moves it by up to 1.6 dB (``--jitter`` table). So every number is
the mean over ``--draws`` calibration draws (draw d: different random crops of
the same calibration photos; digits: calib.npz samples 32d..32d+31); both
sides always get the same draw, the evaluation set is fixed.

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
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import write_section  # noqa: E402

from qdeploy.quant.error import sqnr_db  # noqa: E402

N_CALIB = 64     # calibration inputs per draw (--calib)
N_EVAL = 256     # evaluation inputs (--eval)
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


def datasets(name: str, model: onnx.ModelProto, draw: int = 0):
    """(calib_x, eval_x, eval_y or None) as batches along axis 0; ``draw``
    selects the calibration draw (the evaluation set does not depend on it)."""
    if name == "digits":
        cal = np.load(DIGITS / "calib.npz")["x"][N_CALIB * draw:N_CALIB * (draw + 1)]
        ev = np.load(DIGITS / "eval.npz")
        return cal, ev["x"], ev["y"]
    from qdeploy.calibration.dataset import bundled_images
    photos = bundled_images()
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    per = N_CALIB // len(photos[0::2])
    cal = photo_inputs(dims, photos[0::2], per, seed=0 if draw == 0 else 1000 + draw)
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


def ops_left_in_float(qdq_bytes: bytes) -> list[str]:
    """Op types (sorted, unique) of a QDQ model with a non-constant input that
    is not a DequantizeLinear output, i.e. ops onnxruntime runs in float even
    on its int8 kernels."""
    mp = onnx.load_from_string(qdq_bytes)
    consts = {i.name for i in mp.graph.initializer}
    prod = {o: n.op_type for n in mp.graph.node for o in n.output}
    left = set()
    for n in mp.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(i and i not in consts and prod.get(i) not in ("DequantizeLinear", "Constant")
               for i in n.input):
            left.add(n.op_type)
    return sorted(left)


ORT_SETTINGS = [("MinMax", "QUInt8", False), ("MinMax", "QInt8", False), ("Percentile", "QUInt8", False),
                ("Percentile", "QInt8", False), ("MinMax", "QUInt8", True)]


def ort_col(method: str, act: str, rr: bool) -> str:
    return f"ort {method} {act[1:]}" + (" rr" if rr else "")


# ------------------------------------------------------------------ qdeploy
QDEPLOY_SETTINGS = [  # (column, target, calibration method, cle, bias_correction, fold_gap)
    # cle "auto" = what `qdeploy quantize` does by default (pipeline.equalize_graph)
    ("arm", "arm", "tailclip", "auto", False, False),
    ("arm minmax", "arm", "minmax", "auto", False, False),   # the previous default (min/max everywhere)
    ("arm fold", "arm", "tailclip", "auto", False, True),   # the default + `quantize --fold-gap`
    ("arm plain", "arm", "minmax", "plain", False, False),   # no CLE, no widening: ort MinMax scheme
    ("arm pct", "arm", "percentile", "auto", False, False),
    ("arm ent", "arm", "entropy", "auto", False, False),
    ("arm mse", "arm", "mse", "auto", False, False),
    ("arm auto", "arm", "auto", "auto", False, False),
    ("arm+cle+bc", "arm", "minmax", True, True, False),
    ("fpga", "fpga", "tailclip", "auto", False, False),
    ("qd ort", "ort", "tailclip", "auto", False, False),
]
FAKE_COL = "arm fq"


def qdeploy_quantize(model: onnx.ModelProto, calib_x: np.ndarray, target: str, per_tensor: bool,
                     cle, bc: bool, relu6: str = "data", method: str = "tailclip", fold: bool = False):
    """(float graph, QGraph) through what `qdeploy quantize` runs
    (pipeline.quantize_samples). ``cle``: "auto" (the CLI default), True (every eligible
    pair with one second layer, with the ``relu6`` policy; `--cle`), False (`--no-cle`), or "plain" (no CLE and
    no output-range widening either: the scheme of onnxruntime's MinMax). ``fold``:
    `--fold-gap`."""
    from qdeploy.onnx_import import import_onnx
    from qdeploy.passes import run_passes
    from qdeploy.pipeline import QuantizeOptions, quantize_samples
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    g = run_passes(import_onnx(model, {model.graph.input[0].name: tuple(dims)}))
    opts = QuantizeOptions(target=target, method=method, per_tensor=per_tensor, bias_correction=bc,
                           fold_gap=fold, cle=None if cle == "auto" else cle is True, progress=False)
    qg, *_ = quantize_samples(g, calib_x, target, opts, widen=cle != "plain", relu6=relu6)
    return g, qg


def qdeploy_run(qg, x: np.ndarray) -> list[np.ndarray]:
    from qdeploy.quant.interpreter import run
    outs = [run(qg, {qg.inputs[0]: x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([o[k] for o in outs]) for k in qg.outputs]


def qdeploy_fake_run(g, qg, x: np.ndarray) -> list[np.ndarray]:
    """The QGraph's fake-quant float model (interpreter.fake_quant_graph) on
    onnxruntime with graph optimizations off, one sample at a time."""
    from qdeploy.onnx_export import export_bytes
    from qdeploy.quant.interpreter import fake_quant_graph
    return ort_run(export_bytes(fake_quant_graph(qg, g)), x, optimize=False)


# ------------------------------------------------------------------ table
def worst_sqnr(ref: list[np.ndarray], test: list[np.ndarray]) -> float:
    return min(sqnr_db(r, t) for r, t in zip(ref, test))


def top1(outs: list[np.ndarray], y: np.ndarray) -> float:
    return 100.0 * float(np.mean(outs[0].reshape(len(y), -1).argmax(axis=1) == y))


def measure_draw(name: str, model: onnx.ModelProto, draw: int, log) -> dict:
    """One calibration draw: {column: SQNR or error text, column:top1: %,
    "ort_float_ops": [...]}."""
    cal, ev, y = datasets(name, model, draw)
    ref = ort_run(model.SerializeToString(), ev)
    row = {"float_top1": top1(ref, y) if y is not None else None}

    def record(col, out):
        row[col] = worst_sqnr(ref, out)
        if y is not None:
            row[col + ":top1"] = top1(out, y)

    for col, target, method, cle, bc, fold in QDEPLOY_SETTINGS:
        t0 = time.time()
        try:
            g, qg = qdeploy_quantize(model, cal, target, False, cle, bc, method=method, fold=fold)
            record(col, qdeploy_run(qg, ev))
            if col == "arm":
                record(FAKE_COL, qdeploy_fake_run(g, qg, ev))
        except Exception as e:  # a profile that cannot take the model is reported, not fatal
            row[col] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        log(f"  {name:18s} d{draw} qdeploy {col:12s} {_fmt(row[col])}  ({time.time() - t0:.1f}s)")
    for method, act, rr in ORT_SETTINGS:
        col = ort_col(method, act, rr)
        t0 = time.time()
        try:
            qdq = ort_quantize(model, cal, method, act, rr)
            if (method, act, rr) == ORT_SETTINGS[0]:
                row["ort_float_ops"] = ops_left_in_float(qdq)
            for suffix, optimize in (("", False), (":exec", True)):
                record(col + suffix, ort_run(qdq, ev, optimize))
        except Exception as e:
            row[col] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
        log(f"  {name:18s} d{draw} {col:22s} {_fmt(row[col])} / {_fmt(row.get(col + ':exec'))}"
            f"  ({time.time() - t0:.1f}s)")
    return row


def measure(name: str, model: onnx.ModelProto, log, draws: int = 1) -> dict:
    """Mean over ``draws`` calibration draws of every number; ``col:draws``
    keeps the per-draw values; an error in any draw makes the cell an error."""
    per = [measure_draw(name, model, d, log) for d in range(draws)]
    row = {"model": name, "float_top1": per[0]["float_top1"], "ort_float_ops": per[0].get("ort_float_ops"),
           "draws": draws}
    keys = {k for r in per for k in r if k not in ("float_top1", "ort_float_ops")}
    for k in keys:
        vals = [r.get(k) for r in per]
        bad = [v for v in vals if not isinstance(v, float)]
        if bad:
            row[k] = next((v for v in bad if isinstance(v, str)), "missing")
        else:
            row[k] = float(np.mean(vals))
            row[k + ":draws"] = vals
    return row


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}"
    return "err" if isinstance(v, str) else "-"


def _best_ort(r: dict, exec_only: bool = False) -> float | None:
    cols = [ort_col(*s) + ":exec" for s in ORT_SETTINGS]
    if not exec_only:
        cols += [ort_col(*s) for s in ORT_SETTINGS]
    vals = [r[c] for c in cols if isinstance(r.get(c), float)]
    return max(vals) if vals else None


def _spread(r: dict, col: str) -> str:
    v = r.get(col + ":draws")
    return f"{min(v):.1f}..{max(v):.1f}" if v and len(v) > 1 else "-"


def table(rows: list[dict]) -> str:
    qcols = [c for c, *_ in QDEPLOY_SETTINGS]
    qcols = qcols[:1] + [FAKE_COL] + qcols[1:]
    ocols = [ort_col(*s) for s in ORT_SETTINGS]
    head = (qcols + ocols + ["ops left in float by ort", "arm draws", "arm - best ort",
                             "arm - best ort exec", "arm fold - best ort", "arm auto - best ort",
                             "best arm method - best ort"])
    lines = ["| model | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    methods = ["arm", "arm pct", "arm ent", "arm mse"]
    for r in rows:
        best, best_x = _best_ort(r), _best_ort(r, exec_only=True)
        arm = r.get("arm")
        arm_best = max((r[c] for c in methods if isinstance(r.get(c), float)), default=None)

        def diff(a, b):
            return f"{a - b:+.1f}" if isinstance(a, float) and b is not None else "-"
        floats = r.get("ort_float_ops")
        cells = ([_fmt(r.get(c)) for c in qcols]
                 + [f"{_fmt(r.get(c))} / {_fmt(r.get(c + ':exec'))}" for c in ocols]
                 + ["none" if floats == [] else (", ".join(floats) if floats else "-"), _spread(r, "arm"),
                    diff(arm, best), diff(arm, best_x), diff(r.get("arm fold"), best),
                    diff(r.get("arm auto"), best), diff(arm_best, best)])
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    cols = qcols + ocols + [c + ":exec" for c in ocols]
    errors = [f"- {r['model']} / {c}: {r[c]}" for r in rows for c in cols if isinstance(r.get(c), str)]
    out = "\n".join(lines)
    for r in (r for r in rows if r.get("float_top1") is not None):
        parts = [f"float {r['float_top1']:.2f} %"]
        for c in cols:
            if isinstance(r.get(c + ":top1"), float):
                parts.append(f"{c} {r[c + ':top1']:.2f} % (drop {r['float_top1'] - r[c + ':top1']:+.2f})")
        out += (f"\n\nTop-1 on {r['model']} (eval.npz, {len(np.load(DIGITS / 'eval.npz')['y'])} samples, "
                f"mean over {r['draws']} calibration draw(s)): " + "; ".join(parts) + ".")
    if errors:
        out += "\n\nFailures:\n" + "\n".join(errors)
    return out


def jitter_table(names: list[str], allm: dict, log, k: int = 6, rel: float = 2e-3) -> str:
    """Realization noise: arm (minmax, draw 0) with every calibrated range
    bound multiplied by ``1 + rel * U(0, 1)`` (fresh U per bound, seeds
    1..k-1; the first run is unjittered). The statistics of the quantized
    model do not change; only which values round which way."""
    from qdeploy.calibration.calibrate import calibrate
    from qdeploy.quant.quantizer import quantize_graph
    from qdeploy.quant.targets import load_target
    lines = ["| model | " + " | ".join(["as calibrated"] + [f"jitter {i}" for i in range(1, k)])
             + " | spread | mean |", "|---" * (k + 3) + "|"]
    for name in names:
        model = allm[name]
        cal, ev, _ = datasets(name, model)
        ref = ort_run(model.SerializeToString(), ev)
        g, _ = qdeploy_quantize(model, cal, "arm", False, False, False)
        r0 = calibrate(g, cal, method="minmax", progress=False)
        r0 = r0.bounds()
        vals = []
        for i in range(k):
            rng = np.random.default_rng(i)
            r = {t: (lo * (1 + rel * rng.random()), hi * (1 + rel * rng.random())) if i else (lo, hi)
                 for t, (lo, hi) in r0.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qg = quantize_graph(g, r, load_target("arm"))
            vals.append(worst_sqnr(ref, qdeploy_run(qg, ev)))
        log(f"  jitter {name:14s} " + " ".join(f"{v:.2f}" for v in vals))
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals)
                     + f" | {max(vals) - min(vals):.1f} | {np.mean(vals):.1f} |")
    return "\n".join(lines)


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


def set_sizes(n_calib: int, n_eval: int) -> None:
    global N_CALIB, N_EVAL
    N_CALIB, N_EVAL = n_calib, n_eval


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated subset (default: all corpus models + digits)")
    ap.add_argument("--draws", type=int, default=3, help="calibration draws averaged per number (default 3)")
    ap.add_argument("--calib", type=int, default=N_CALIB,
                    help="calibration inputs per draw (default 64)")
    ap.add_argument("--eval", type=int, default=N_EVAL, help="evaluation inputs (default 256)")
    ap.add_argument("--write", action="store_true", help="update the SQNR section of bench/RESULTS.md")
    ap.add_argument("--recovery", default="mobilenet_v2,mobilenet_v1,digits",
                    help="models for the CLE / bias-correction table ('' to skip)")
    ap.add_argument("--jitter", default="mobilenet_v1,mobilenet_v2,mobilenet_v3_small,squeezenet,resnet",
                    help="models for the realization-noise table ('' to skip)")
    args = ap.parse_args(argv)
    set_sizes(args.calib, args.eval)
    allm = models()
    names = args.models.split(",") if args.models else list(allm)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    rows = [measure(n, allm[n], log, args.draws) for n in names]
    body = table(rows)
    jit = [n for n in args.jitter.split(",") if n]
    if jit:
        body += ("\n\n### Realization noise (arm plain, draw 0; every range bound widened by a random "
                 "0-0.2 %)\n\n" + jitter_table(jit, allm, log))
    rec = [n for n in args.recovery.split(",") if n]
    if rec:
        body += ("\n\n### Accuracy recovery (arm profile, draw 0; SQNR dB vs the original float model, "
                 "top-1 in brackets where labelled)\n\n" + recovery_table(rec, allm, log))
    print(body)
    if args.write:
        cmd = "OMP_NUM_THREADS=1 python bench/sqnr.py " + " ".join(sys.argv[1:] if argv is None else argv)
        head = (f"Command: `{cmd}`  \nDate: {_dt.date.today().isoformat()}  \nVersions: {versions()}\n\n"
                f"Output SQNR in dB (higher is better) of each quantized model vs the float model "
                f"on {N_EVAL} evaluation inputs ({N_CALIB} calibration inputs, the same for every "
                f"column), each number the mean over {args.draws} calibration draws (see bench/sqnr.py's "
                f"docstring). qdeploy columns run the reference interpreter (`arm` = the CLI default: "
                f"tailclip ranges (min/max, a tensor's tail clipped at its 99.999th percentiles where "
                f"that lowers its int8 error by > 2 dB; `arm minmax` = min/max everywhere, the previous "
                f"default) after automatic cross-layer equalization (quant/cle.py: the pairs, "
                f"also through pooling, squeeze-excite blocks and to several readers, where it raises "
                f"the int8 SQNR of the tensors between the layers, and saturating "
                f"ReLU6 outputs before depthwise layers), graph-output ranges widened by "
                f"leave-one-out (calibration/tails.py); `arm plain` = minmax without either, the "
                f"scheme of ort MinMax; `arm fold` = `arm` with `--fold-gap` (each GlobalAveragePool -> "
                f"1x1 Conv folded into one full-window conv, passes/fold_gap.py; costs H*W times that "
                f"conv's weights and MACs); `pct`/`ent`/`mse`/`auto` = the other calibration methods (`auto`: chosen by the output SQNR on the calibration samples, qdeploy/calibration/auto.py); `qd ort` = qdeploy's ort "
                f"profile); `arm fq` is the arm model's fake-quant float graph (qdeploy's QDQ "
                f"semantics). `ort` columns are onnxruntime's quantize_static (QDQ, per-channel int8 "
                f"weights, after quant_pre_process) as `A / B`: A = the QDQ model's semantics "
                f"(onnxruntime with graph optimizations off, Q/DQ as float ops), B = the same model "
                f"on onnxruntime's fused int8 CPU kernels (default session). `rr` = reduce_range "
                f"(7-bit weights). `arm draws` = min..max of arm over the draws. `arm - best ort` "
                f"compares with the best of all ort numbers (A and B), `exec` with the best B only; `arm fold - best ort` and `arm auto - best ort` the same for "
                f"`arm fold` and `arm auto`; "
                f"`best arm method` picks the best of arm's four calibration methods per model "
                f"(like `best ort`, a choice made on the evaluation set).\n\n")
        write_section('SQNR', head + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
