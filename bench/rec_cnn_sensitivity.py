"""Why ppocr_v5_rec's CNN collapses under int8: where the error grows, and how many bits it needs.

    OMP_NUM_THREADS=1 python bench/rec_cnn_sensitivity.py [--eval 8]

The model is bench/sqnr_real.py's ``ppocr_v5_rec_cnn`` (PP-OCRv5 recognizer cut at
``p2o.pd_op.swish.1.0``, input 1x3x48x320). Two input sets, both preprocessed like
ppocr_cls (height 48 keeping the ratio, right-padded with 0): sqnr_real.py's photograph
crops (draw 0) and upright text lines (tests/quant/realmodel_inputs.text_lines: phrases in
DejaVu fonts on crops of the same photographs, the recognizer's own domain; calibration
lines on the calibration photos, evaluation lines on the others). Printed, in markdown:

1. **Float sensitivity**: Gaussian noise added to the float input at a given SNR, SQNR
   of the cut tensor, and frame-argmax agreement of the full model (CTC classes).
2. **qdeploy arm (tailclip)**: the integer interpreter's accumulated SQNR at the end of
   each block (quant/error.py layer_errors), the cut tensor's SQNR on the output columns
   that only see the zero padding and on the others, and what the full model decodes when
   the int8 CNN features go through the float neck and head (frame-argmax agreement, greedy
   CTC strings equal).
3. **Bits needed**: fake quantization (onnxruntime, graph optimizations off, min/max
   ranges, asymmetric) of exactly the tensors qdeploy quantizes, at 8..16 bits, and int16
   only up to a point (int8 after it); weights float, or rounded as in 5.
4. **Noise gain**: Gaussian noise at 70 dB SNR added to one quantized tensor at a time
   (float elsewhere); the gain is 70 minus the cut's SQNR (how much the float network
   amplifies a small relative error from that tensor to the cut).
5. **Weights**: the raw conv weights (``Constant`` nodes ``*.w_0``; the BatchNorm / affine
   ops after them are per output channel, so per-channel quantization commutes with their
   folding) rounded per output channel, symmetric, activations in float: all convs at 8..16
   bits, the convs that cost most alone at 8 bits, and for those also a rounding that keeps
   each filter's sum (its response to a constant input) as exact as the grid allows.

Not part of the test suite; bench/RESULTS.md "ppocr_v5_rec_cnn under int8" holds a run.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqnr_real  # noqa: E402
from sqnr import ort_run, qdeploy_run  # noqa: E402
from sqnr_real import ctc, rec_full, upright_lines  # noqa: E402

from qdeploy.quant.error import sqnr_db  # noqa: E402

NAME = "ppocr_v5_rec_cnn"
CUT = sqnr_real.CUTS[NAME]
BLOCK_ENDS = ["Add.5", "Add.11", "Add.23", "Add.35", "Add.47", "Add.59", "Add.71", "Add.83", "Add.95", "Add.107",
              "Add.119", "Add.125", "Add.141", "Add.151", "Add.163", "Add.175", "p2o.pd_op.assign.0.0"]
ISLANDS = ["p2o.pd_op.hardswish.3.0", "p2o.pd_op.hardswish.9.0", "p2o.pd_op.hardswish.19.0",
           "p2o.pd_op.hardswish.27.0"]


def datasets(n_eval: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Photo crops (sqnr_real.py's draw 0) and text lines on crops of the same photos
    (calibration lines on the calibration photos, evaluation lines on the others)."""
    from tests.quant.realmodel_inputs import photos, ppocr_cls
    prep = ppocr_cls(48, 320)
    cal, ev, _ = sqnr_real.data(NAME, 0)
    ph = photos()
    order = np.random.default_rng(0).permutation(len(ph))
    half = len(ph) // 2
    text = [np.stack([prep(im) for im in upright_lines([ph[i] for i in idx], n, seed)]).astype(np.float32)
            for idx, n, seed in ((order[:half], 32, 1), (order[half:], n_eval, 2))]
    return {"photos": (cal, ev[:n_eval]), "text lines": (text[0], text[1])}


# ------------------------------------------------------------------ 1. float sensitivity
def float_sensitivity(model, sets, log) -> list[str]:
    lines = ["| inputs | input noise SNR (dB) | cut SQNR (dB) | full model frame-argmax agreement |", "|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for name, (_, ev) in sets.items():
        ref = ort_run(model.SerializeToString(), ev)[0]
        pref = rec_full(ev, ref)
        for snr in (60, 50, 40):
            n = rng.standard_normal(ev.shape)
            x = (ev + n * np.sqrt((ev.astype(np.float64) ** 2).sum() / (n ** 2).sum() / 10 ** (snr / 10))).astype(np.float32)
            out = ort_run(model.SerializeToString(), x)[0]
            agree = float(np.mean(rec_full(x, out).argmax(-1) == pref.argmax(-1)))
            lines.append(f"| {name} | {snr} | {sqnr_db(ref, out):.1f} | {100 * agree:.1f}% |")
            log(lines[-1])
    return lines


# ------------------------------------------------------------------ 2. qdeploy integer
def qdeploy_rows(model, sets, log):
    from qdeploy.quant.error import layer_errors
    shape = sqnr_real.CASES[NAME][1]
    res, quant_points = {}, None
    for name, (cal, ev) in sets.items():
        g, qg = sqnr_real.qdeploy_quantize(model, shape, cal, "tailclip")
        rows = layer_errors(g, qg, ev)
        fname = qg.metadata.get("float_names", {})
        produced = {"x"} | {o for n in model.graph.node for o in n.output}
        quant_points = quant_points or [t for t in (fname.get(r["tensor"], r["tensor"]) for r in rows) if t in produced]
        ref = ort_run(model.SerializeToString(), ev)[0]
        out = qdeploy_run(qg, ev)[0]
        pad = (ev == 0).all(axis=(1, 2)).reshape(len(ev), 40, -1).all(-1)      # output columns seeing only padding
        err, sig = ((ref - out) ** 2).sum(axis=(1, 2)), (ref ** 2).sum(axis=(1, 2))
        split = {k: 10 * np.log10(sig[m].sum() / err[m].sum()) if m.any() else float("nan")
                 for k, m in (("pad", pad), ("content", ~pad))}
        pr, pq = rec_full(ev, ref), rec_full(ev, out)
        res[name] = dict(rows={r["tensor"]: r for r in rows}, cut=sqnr_db(ref, out), pad_share=float(pad.mean()),
                         split=split, argmax=float(np.mean(pr.argmax(-1) == pq.argmax(-1))),
                         strings=float(np.mean([a == b for a, b in zip(ctc(pr), ctc(pq))])),
                         nonempty=float(np.mean([len(a) > 0 for a in ctc(pr)])),
                         local=[r["local_sqnr_db"] for r in rows])
        log(f"{name}: cut {res[name]['cut']:.2f} dB, {res[name]}"[:300])
    names = list(res)
    lines = ["| tensor (end of block) | " + " | ".join(f"{n}: accumulated / local SQNR" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for t in BLOCK_ENDS:
        if all(t in res[n]["rows"] for n in names):
            lines.append(f"| `{t}` | " + " | ".join(f"{res[n]['rows'][t]['sqnr_db']:.1f} / {res[n]['rows'][t]['local_sqnr_db']:.1f}"
                                                     for n in names) + " |")
    lines.append(f"| `{CUT}` (cut) | " + " | ".join(f"{res[n]['cut']:.1f}" for n in names) + " |")
    lines += ["", "| inputs | layer-local SQNR min / median | output columns on padding only | cut SQNR there / elsewhere | "
              "full model: frame-argmax agreement | greedy CTC strings equal (float non-empty) |", "|---|---|---|---|---|---|"]
    for n in names:
        r = res[n]
        lines.append(f"| {n} | {min(r['local']):.1f} / {np.median(r['local']):.1f} | {100 * r['pad_share']:.0f}% | "
                     f"{r['split']['pad']:.1f} / {r['split']['content']:.1f} | {100 * r['argmax']:.1f}% | "
                     f"{100 * r['strings']:.0f}% ({100 * r['nonempty']:.0f}%) |")
    return lines, quant_points


# ------------------------------------------------------------------ 3. bits, 4. noise gain
def _ranges(model, cal, tensors):
    m = copy.deepcopy(model)
    del m.graph.output[:]
    for t in tensors:
        m.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    from sqnr import _ort_session
    sess = _ort_session(m.SerializeToString(), False)
    lo, hi = dict.fromkeys(tensors, 0.0), dict.fromkeys(tensors, 0.0)
    for i in range(len(cal)):    # one sample at a time: every tensor of 32 inputs would take gigabytes
        for t, o in zip(tensors, sess.run(None, {"x": cal[i:i + 1]})):
            lo[t], hi[t] = min(lo[t], float(o.min())), max(hi[t], float(o.max()))
    return {t: (lo[t], hi[t]) for t in tensors}


def fake_quant(model, bits: dict, ranges) -> onnx.ModelProto:
    """``model`` with ``t -> dequantize(quantize(t))`` at ``bits[t]`` bits (Div/Round/Clip: any width)."""
    m = copy.deepcopy(model)
    g = m.graph
    nodes = []

    def fq(t, b):
        lo, hi = ranges[t]
        s = (hi - lo) / (2 ** b - 1) or 1.0
        for k, v in (("s", s), ("zp", np.round(-lo / s)), ("lo", 0.0), ("hi", 2.0 ** b - 1)):
            g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), f"{t}/fq_{k}"))
        p = f"{t}/fq_"
        return [helper.make_node("Div", [t, p + "s"], [p + "a"]), helper.make_node("Round", [p + "a"], [p + "b"]),
                helper.make_node("Add", [p + "b", p + "zp"], [p + "c"]),
                helper.make_node("Clip", [p + "c", p + "lo", p + "hi"], [p + "d"]),
                helper.make_node("Sub", [p + "d", p + "zp"], [p + "e"]), helper.make_node("Mul", [p + "e", p + "s"], [p + "out"])]
    if "x" in bits:
        nodes += fq("x", bits["x"])
    for n in g.node:
        n2 = copy.deepcopy(n)
        for k, i in enumerate(n2.input):
            if i in bits:
                n2.input[k] = f"{i}/fq_out"
        nodes.append(n2)
        nodes += [q for o in n.output if o in bits and o != "x" for q in fq(o, bits[o])]
    del g.node[:]
    g.node.extend(nodes)
    return m


def bits_needed(model, sets, points, log) -> list[str]:
    lines = ["| activations at qdeploy's quantized tensors | weights | " + " | ".join(f"{n}: cut SQNR" for n in sets) + " |",
             "|---|---|" + "---|" * len(sets)]
    cases = [(f"all {b}-bit", lambda i, b=b: b, None) for b in (8, 10, 12, 14, 16)]
    for stop in ISLANDS:
        k = points.index(stop) + 1
        cases.append((f"16-bit through `{stop}` ({k} of {len(points)}), 8-bit after", lambda i, k=k: 16 if i < k else 8, None))
    cases += [("all 16-bit (TFLite's 16x8 mode)", lambda i: 16, 8), ("all 16-bit", lambda i: 16, 12),
              ("all 12-bit", lambda i: 12, 12), ("all 16-bit", lambda i: 16, 16), ("all 8-bit", lambda i: 8, 8)]
    res = {}
    for name, (cal, ev) in sets.items():
        rng = _ranges(model, cal, [p for p in points if p != "x"])
        rng["x"] = (min(float(cal.min()), 0.0), max(float(cal.max()), 0.0))
        ref = ort_run(model.SerializeToString(), ev)[0]
        for j, (label, bits, wbits) in enumerate(cases):
            base = model if wbits is None else _weights(model, lambda w, b=wbits: round_nearest(w, b))
            fq = fake_quant(base, {p: bits(i) for i, p in enumerate(points)}, rng)
            res[j, name] = sqnr_db(ref, ort_run(fq.SerializeToString(), ev, optimize=False)[0])
            log(f"  {name} {label} w{wbits}: {res[j, name]:.1f}")
    for j, (label, _, wbits) in enumerate(cases):
        w = "float" if wbits is None else f"{wbits}-bit per channel"
        lines.append(f"| {label} | {w} | " + " | ".join(f"{res[j, n]:.1f}" for n in sets) + " |")
    return lines


def noise_gain(model, sets, points, log, snr: float = 70.0, every: int = 4) -> list[str]:
    from onnx.utils import Extractor
    inferred = onnx.shape_inference.infer_shapes(model)
    ex = Extractor(inferred)
    name, (_, ev) = next(iter(sets.items()))
    chosen = [p for p in points[1::every] if p != CUT]
    m = copy.deepcopy(model)
    del m.graph.output[:]
    for t in chosen + [CUT]:
        m.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    vals = dict(zip(chosen + [CUT], ort_run(m.SerializeToString(), ev, optimize=False)))
    rng = np.random.default_rng(0)
    lines = [f"| tensor ({name}) | gain to the cut (dB) |", "|---|---|"]
    for t in chosen:
        sub = ex.extract_model([t], [CUT])
        if [i.name for i in sub.graph.input] != [t]:
            continue
        v = vals[t].astype(np.float64)
        n = rng.standard_normal(v.shape)
        x = (v + n * np.sqrt((v ** 2).sum() / (n ** 2).sum() / 10 ** (snr / 10))).astype(np.float32)
        try:
            out = ort_run(sub.SerializeToString(), x, optimize=False)[0]
        except Exception:   # a subgraph that also reads the input (a shape): not measured
            continue
        lines.append(f"| `{t}` | {snr - sqnr_db(vals[CUT], out):.1f} |")
        log(lines[-1])
    return lines


def _weights(model, fn, only=None) -> onnx.ModelProto:
    m = copy.deepcopy(model)
    for n in m.graph.node:
        if n.op_type == "Constant" and n.output[0].endswith(".w_0") and (only is None or n.output[0] in only):
            w = numpy_helper.to_array(n.attribute[0].t)
            if w.ndim == 4:
                n.attribute[0].t.CopyFrom(numpy_helper.from_array(fn(w), n.attribute[0].t.name))
    return m


def round_nearest(w: np.ndarray, bits: int = 8) -> np.ndarray:
    v = w.reshape(len(w), -1).astype(np.float64)
    s = np.abs(v).max(1, keepdims=True) / (2 ** (bits - 1) - 1)
    s[s == 0] = 1.0
    return (np.round(v / s) * s).reshape(w.shape).astype(np.float32)


def round_keep_sum(w: np.ndarray, bits: int = 8) -> np.ndarray:
    """Nearest rounding, then the taps with the largest residuals rounded the other way until
    each filter's integer sum is round(sum / scale)."""
    qmax = 2 ** (bits - 1) - 1
    v = w.reshape(len(w), -1).astype(np.float64)
    s = np.abs(v).max(1, keepdims=True) / qmax
    s[s == 0] = 1.0
    v = v / s
    q = np.round(v)
    for c in range(len(v)):
        need = int(np.round(v[c].sum()) - q[c].sum())
        order = np.argsort(q[c] - v[c]) if need > 0 else np.argsort(v[c] - q[c])
        q[c, order[:abs(need)]] += np.sign(need)
    return (np.clip(q, -qmax, qmax) * s).reshape(w.shape).astype(np.float32)


def weights(model, sets, log, worst: int = 5) -> list[str]:
    refs = {n: ort_run(model.SerializeToString(), ev)[0] for n, (_, ev) in sets.items()}

    def cut(m):
        return {n: sqnr_db(refs[n], ort_run(m.SerializeToString(), ev)[0]) for n, (_, ev) in sets.items()}
    lines = ["| weights (activations float) | " + " | ".join(f"{n}: cut SQNR" for n in sets) + " |",
             "|---|" + "---|" * len(sets)]
    for b in (8, 10, 12, 16):
        r = cut(_weights(model, lambda w, b=b: round_nearest(w, b)))
        lines.append(f"| every conv, {b}-bit per channel | " + " | ".join(f"{v:.1f}" for v in r.values()) + " |")
        log(lines[-1])
    convs = [n.output[0] for n in model.graph.node if n.op_type == "Constant" and n.output[0].endswith(".w_0")
             and len(n.attribute[0].t.dims) == 4]
    alone = {c: cut(_weights(model, round_nearest, {c})) for c in convs}
    first = next(iter(sets))
    for c in sorted(convs, key=lambda c: alone[c][first])[:worst]:
        dims = [d for n in model.graph.node if n.output[0] == c for d in n.attribute[0].t.dims]
        kept = cut(_weights(model, round_keep_sum, {c}))
        lines.append(f"| only `{c}` {dims}, 8-bit (filter sums kept) | " +
                     " | ".join(f"{alone[c][n]:.1f} ({kept[n]:.1f})" for n in sets) + " |")
        log(lines[-1])
    r = cut(_weights(model, round_keep_sum))
    lines.append("| every conv, 8-bit, filter sums kept | " + " | ".join(f"{v:.1f}" for v in r.values()) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", type=int, default=8, help="evaluation inputs per set")
    a = ap.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)   # noqa: E731
    model = sqnr_real.load(NAME)
    sets = datasets(a.eval)
    out = ["### 1. Float model: Gaussian input noise", ""] + float_sensitivity(model, sets, log)
    lines, points = qdeploy_rows(model, sets, log)
    out += ["", "### 2. qdeploy arm (tailclip), integer interpreter", ""] + lines
    out += ["", "### 3. Bits needed (fake quantization)", ""] + bits_needed(model, sets, points, log)
    out += ["", "### 4. Noise gain from a quantized tensor to the cut (70 dB Gaussian, every 4th tensor)", ""]
    out += noise_gain(model, sets, points, log)
    out += ["", "### 5. Weights (per output channel, symmetric; activations float)", ""] + weights(model, sets, log)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
