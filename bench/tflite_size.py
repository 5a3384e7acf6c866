"""Size and speed of qdeploy's int8 TFLite file against the float model.

    python bench/tflite_size.py [--models a,b] [--runs 30] [--write]

For every corpus model (and the real models of ``QDEPLOY_REALMODELS`` when
given, ``--real``):

* size: ``model.int8.tflite`` (arm target) in bytes against the float ONNX
  model the user hands in (``qdeploy.corpus.save``); goal: at most 0.27x for
  every model with more than 100k parameters (int8 weights are 1/4 of float32;
  per-channel scales, int32 biases and the graph cost the rest);
* latency, one thread, batch 1, median of ``--runs`` invocations after 3
  warm-up runs, in ms: the int8 file on LiteRT (``ai_edge_litert``, XNNPACK
  delegate, ``num_threads=1``), the float ONNX on onnxruntime (CPU provider,
  intra- and inter-op threads 1, all graph optimisations) and qdeploy's QDQ
  model (``ort`` target: uint8 activations, the target qdeploy recommends for
  onnxruntime) on onnxruntime, same settings.

A second table splits each file (qdeploy/emit/tflite/bytemap.py): the int8
weights, the per-channel data the TFLite int8 specification requires (int32
bias, float32 weight scale and bias scale per output channel, int64 zero points
per distinct channel count) and the rest (tensor and operator tables,
quantization tables, buffers, padding, metadata, SignatureDef), against the
0.27x budget. ``--bytes`` also prints every part of every file.

``--write`` replaces the "TFLite" section of bench/RESULTS.md (other sections
are kept as they are). Other jobs on the machine skew latencies: run it alone.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import write_section  # noqa: E402

from qdeploy.corpus import CORPUS, save  # noqa: E402
from qdeploy.emit.tflite.bytemap import PER_CHANNEL, breakdown, graph_bytes, show  # noqa: E402
from qdeploy.pipeline import QuantizeOptions, quantize_model  # noqa: E402

GOAL = 0.27
NOTES = """\
Where the bytes go (second table; every byte of each file owned by one part). Weights are 1 byte
instead of 4, but every per-channel convolution also carries, per output channel, an int32 bias, a
float32 weight scale and a float32 bias scale (12 bytes), and an int64 zero point in one all-zero
vector per distinct channel count. The writer keeps all of it because the runtimes need it (seen on
these files): LiteRT 2.3 refuses a zero-point vector shorter than its scales ("QuantizationParam
has 1 zero_point values and 16 scale values"; TFLite Micro would take it); a bias with one scale
makes the XNNPACK delegate fail to prepare (its per-channel int8 convolution needs a per-channel
int32 bias); a bias without quantization makes XNNPACK leave every convolution to the builtin
kernels (0 of 26 delegated on mobilenet_v2). The bias scales' values are read by none of TFLite
Micro's, LiteRT's or tflite-runtime's int8 kernels, but they are what the int8 specification says
(input scale x weight scale) and what dequantizing readers (GPU delegate, NNAPI, converters) use,
so they are written true, not borrowed from another vector.

The rest ("graph") is ~40 % smaller than before this change (resnet 9,864 -> 5,624 B, ghostnet
24,044 -> 15,068, ppocr_v5_det 55,752 -> 33,478; whole files: resnet 118,704 -> 114,464 B, 0.281
-> 0.271; resnext 0.291 -> 0.284; ghostnet 0.356 -> 0.336; ppocr_v5_cls 0.351 -> 0.328;
ppocr_v5_det 0.278 -> 0.273; he2014 0.276 -> 0.268): names only on the inputs and outputs (the
SignatureDef and get_input_details still name them; internal tensors are unnamed in a viewer while
operators, shapes and quantization still show; `build(qg, names=True)` writes every name for
debugging), shape vectors, operator input/output vectors, builtin-options tables and quantization
tables written once per distinct content and shared by offset, equal constants one tensor and equal
bytes one buffer, constants under 16 bytes (shapes, axes) 4-byte aligned (weights, biases and
tables keep 16), the most used operator code at index 0 (the default, not written), no RESHAPE
before a FULLY_CONNECTED that reads an NHWC map (TFLite Micro, LiteRT and tflite-runtime flatten it
themselves), and metadata without the calibration photos' names and digests and without the I/O
fields the tensors hold (2.3 kB -> 0.5 kB; manifest.json keeps the digests). TFLite Micro stays
bit-exact, XNNPACK takes the same convolutions (all but one on ppocr_v5_det, as before) at the same
latency.

Why five models stay above 0.27x ("room for the graph" = budget - weights - per-channel bytes):
resnext, ghostnet and ppocr_v5_cls are over on weights and per-channel data alone (ghostnet:
103,224 B of weights + 2,058 channels x 12 B + 10.6 kB of zero points and vector lengths =
138,484 B against a 123,274 B budget). ppocr_v5_det leaves 17,421 B for 214 operators and 412
tensors, whose bare tables (operator: 20-24 B table, 4 B slot, input and output vectors; tensor:
16-20 B table, 4 B slot) with 177 per-channel quantization tables and 147 buffer entries already
take ~22 kB. resnet leaves 5,274 B for 25 operators, 57 tensors, the SignatureDef, the metadata
(475 B) and the 16-byte alignment (~200 B) the issue asks for; it spends 5,624 B, 350 B (0.3 % of
its budget) over. The corpus models below 100k parameters (22-74 weights per channel) have no room
either.

Latency. LiteRT's int8 HARD_SWISH is not taken by XNNPACK: on ppocr_v5_cls its 18 HARD_SWISH
ops (maps of 25-38k elements) are most of the file's time (per-node timing: 5.7 ms of the
one-op models together, under load up to 17 ms); the same tables as CAST+ADD+GATHER were slower
still (8.6 ms), so the emitter keeps HARD_SWISH, as the TFLite converter writes it. Latencies
on this shared 2-core machine vary 2-3x from run to run with other jobs. Grouped convolutions
are one CONV_2D: TFLite Micro, LiteRT 2.3 (XNNPACK, optimized and reference kernels) and
tflite-runtime 2.14 all run them.
"""


def params(path: Path) -> int:
    """Elements of the initializers and Constant nodes (some exporters keep weights in Constants)."""
    g = onnx.load(str(path)).graph
    consts = [a.t for n in g.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    return int(sum(np.prod(t.dims) for t in list(g.initializer) + consts))


def median_ms(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * float(np.median(ts))


def litert_ms(blob: bytes, runs: int) -> float:
    from ai_edge_litert import interpreter as lr
    it = lr.Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    return median_ms(it.invoke, runs)


def ort_ms(model: "bytes | Path", x: np.ndarray, runs: int) -> float:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    return median_ms(lambda: sess.run(None, feed), runs)


def measure(name: str, src: Path, d: Path, runs: int, shape=None, calib=None) -> dict:
    opts = dict(limit=8, progress=False, input_shape=shape, calib=calib)
    arm = quantize_model(src, d / f"{name}_arm", QuantizeOptions(target="arm", emit="tflite", **opts))
    ort_out = d / f"{name}_ort"
    quantize_model(src, ort_out, QuantizeOptions(target="ort", emit="qdq", **opts))
    blob = (d / f"{name}_arm" / "model.int8.tflite").read_bytes()
    x = np.ascontiguousarray(arm.calib_x[:1], np.float32)
    row = {"model": name, "params": params(src), "float": src.stat().st_size, "tflite": len(blob)}
    row["ratio"] = row["tflite"] / row["float"]
    row["parts"] = breakdown(blob)
    row["litert"] = litert_ms(blob, runs)
    row["ort_float"] = ort_ms(d / f"{name}_arm" / "model.float.onnx", x, runs)
    row["ort_qdq"] = ort_ms(ort_out / "model.qdq.onnx", x, runs)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | params | float ONNX (B) | int8 TFLite (B) | ratio | LiteRT int8 (ms) | "
             "onnxruntime float (ms) | onnxruntime QDQ (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mark = "" if r["params"] <= 100_000 or r["ratio"] <= GOAL else " **over**"
        lines.append(f"| {r['model']} | {r['params']:,} | {r['float']:,} | {r['tflite']:,} | "
                     f"{r['ratio']:.3f}{mark} | {r['litert']:.2f} | {r['ort_float']:.2f} | {r['ort_qdq']:.2f} |")
    return "\n".join(lines)


def bytes_table(rows: list[dict]) -> str:
    lines = ["| model | channels | tensors + operators | int8 weights (B) | per channel (B) | graph (B) | "
             "budget 0.27x (B) | room for the graph (B) | over (B) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p = r["parts"]
        per_channel = sum(p.get(k, 0) for k in PER_CHANNEL)
        items = sum(v for k, v in p.items() if k.endswith(" tensors")) + p["#operators"]
        budget = int(GOAL * r["float"])
        room = budget - p.get("weights", 0) - per_channel
        lines.append(f"| {r['model']} | {p.get('#channels', 0):,} | {items} | {p.get('weights', 0):,} | "
                     f"{per_channel:,} | {graph_bytes(p):,} | {budget:,} | {room:,} | "
                     f"{max(0, r['tflite'] - budget):,} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated subset of the corpus (default: all)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--real", action="store_true", help="also the real models of QDEPLOY_REALMODELS")
    ap.add_argument("--write", action="store_true", help="update the TFLite section of bench/RESULTS.md")
    ap.add_argument("--bytes", action="store_true", help="print every part of every file")
    args = ap.parse_args(argv)
    names = args.models.split(",") if args.models else list(CORPUS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name in names:
            save(name, d / f"{name}.onnx")
            rows.append(measure(name, d / f"{name}.onnx", d, args.runs))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        if args.real:
            rows += real_rows(d, args.runs)
    over = [r["model"] for r in rows if r["params"] > 100_000 and r["ratio"] > GOAL]
    import ai_edge_litert
    import onnxruntime
    body = (f"`python bench/tflite_size.py{' --real' if args.real else ''} --write` "
            f"({_dt.date.today()}, {platform.processor() or platform.machine()}, LiteRT "
            f"{getattr(ai_edge_litert, '__version__', '?')}, onnxruntime {onnxruntime.__version__}, "
            f"1 thread, batch 1, median of {args.runs}). Goal: int8 TFLite <= {GOAL}x the float ONNX for "
            f"every model with more than 100k parameters: "
            f"{'met on every one' if not over else 'missed on ' + ', '.join(over)}.\n\n" + table(rows) + "\n\n"
            + "Where the bytes go (`qdeploy/emit/tflite/bytemap.py`; per channel: int32 bias, float32 weight "
            "and bias scales, int64 zero points; graph: everything else):\n\n" + bytes_table(rows) + "\n\n"
            + NOTES)
    if args.bytes:
        for r in rows:
            print(show(r["model"], r["parts"]))
    print(body)
    if args.write:
        write_section('TFLite', body)
    return 0


def real_rows(d: Path, runs: int) -> list[dict]:
    import os
    from tests.quant.realmodel_inputs import inputs, photos
    root = Path(os.environ.get("QDEPLOY_REALMODELS", ROOT / ".cache" / "realmodels"))
    cases = {"ppocr_v5_cls": (1, 3, 48, 192), "ppocr_v5_det": (1, 3, 160, 160), "ddddocr_det": (1, 3, 416, 416)}
    rows = []
    for name, shape in cases.items():
        if not (root / f"{name}.onnx").exists():
            continue
        np.save(d / f"{name}_calib.npy", inputs(name, photos()[:8], shape[2:]))
        rows.append(measure(name, root / f"{name}.onnx", d, runs, shape=shape, calib=str(d / f"{name}_calib.npy")))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
