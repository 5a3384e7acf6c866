"""The ort target's ``float_grouped`` rule before/after: grouped convs that are
not depthwise run in float (DQ -> float Conv -> Q), every other conv int8.

    QDEPLOY_REALMODELS=.cache/realmodels python bench/qdq_float_grouped.py \\
        resnext resnext@224 mobilenet_v2@224 ghostnet ppocr_v5_cls

Per model (calibrated like bench/qdq_speed.py, one evaluation input):
``int8``: the ort target with ``float_grouped = false`` (every conv int8, the
default before the rule), ``rule``: targets/ort.toml as it is. When the rule
touches no conv the two QDQ models must be the same bytes (``same_bytes``) and
only that is reported. Otherwise: latency (bench/qdq_speed.py's ``latencies``:
1 thread, the variants in turn, 20 rounds x 3 blocks, the smallest block median,
ms) with the float model, SQNR vs float and QDQ vs ``--backend ref``
(bench/qdq_float_dw.py's ``accuracy``), and the op counts of onnxruntime's
optimized graph. ``sqnr``: the reference's SQNR vs float on 64 photo crops
(16 per photo of the evaluation half, seed 1), pooled, accumulated at each
tensor the rule makes float, at the last feature map before the classifier
(``feature``) and at the first output (``output``); quant/error.py's
``layer_errors``. Prints one JSON line per model.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import qdq_speed as B  # noqa: E402
from qdq_float_dw import accuracy, staged  # noqa: E402

from qdeploy.emit import qdq  # noqa: E402
from qdeploy.emit.qdq_compare import optimized_ops  # noqa: E402
from qdeploy.pipeline import QuantizeOptions, quantize_model  # noqa: E402

ORT = ROOT / "targets" / "ort.toml"


def measure(spec: str, runs: int = 20, repeats: int = 3) -> dict:
    model, shape, _, ev, tmp, src = staged(spec, "qdq_float_grouped_")
    off = tmp / "ort_int8.toml"
    off.write_text(ORT.read_text().replace("float_grouped = true", "float_grouped = false"))
    outs, graphs = {}, {}
    for k, t in (("int8", off), ("rule", ORT)):
        opts = QuantizeOptions(target=str(t), calib=str(tmp / "cal.npy"), emit="qdq", input_shape=shape,
                               progress=False)
        graphs[k] = quantize_model(src, tmp / k, opts)
        outs[k] = tmp / k
    man = json.loads((outs["rule"] / "manifest.json").read_text())
    vs = {k: (p / qdq.FILE).read_bytes() for k, p in outs.items()}
    row = {"model": spec, "float_nodes": [f["node"] for f in man.get("float_nodes", [])],
           "same_bytes": vs["int8"] == vs["rule"]}
    if not row["float_nodes"]:
        return row
    vs["float"] = model.SerializeToString()
    row["acc"] = {k: accuracy(p, ev) for k, p in outs.items()}
    row["t1"] = {k: round(v, 3) for k, v in B.latencies(vs, ev, 1, runs, repeats).items()}
    row["rule_vs_int8"] = round(row["t1"]["int8"] / row["t1"]["rule"], 3)
    row["rule_vs_float"] = round(row["t1"]["float"] / row["t1"]["rule"], 3)
    row["opt"] = {k: optimized_ops(vs[k], tmp / "opt.onnx") for k in ("int8", "rule")}
    if shape is None:
        row["sqnr"] = sqnr64(model, graphs, row["float_nodes"])
    return row


def sqnr64(model: onnx.ModelProto, results: dict, floats: list[str]) -> dict:
    from sqnr import photo_inputs
    from qdeploy.calibration.dataset import bundled_images
    from qdeploy.quant.error import layer_errors
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = photo_inputs(dims, bundled_images()[1::2], 16, seed=1)[:64].astype(np.float32)
    res = {}
    for k, q in results.items():   # the float graph as quantized (after CLE): its tensors are the reference
        qg = q.qgraph
        rows = layer_errors(q.graph, qg, x)
        four_d = [r for r in rows if len(qg.tensors[r["tensor"]].shape) == 4]
        res[k] = {**{r["tensor"]: round(r["sqnr_db"], 2) for r in rows if r["node"] in floats},
                  "feature": round(four_d[-1]["sqnr_db"], 2), "output": round(rows[-1]["sqnr_db"], 2)}
    return res


if __name__ == "__main__":
    for s in sys.argv[1:]:
        print(json.dumps(measure(s)), flush=True)
