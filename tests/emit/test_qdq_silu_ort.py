"""SiLU on the ort target: the QDQ model on onnxruntime is bit-exact with the reference.

SiLU is split into the Sigmoid table and a Mul (quant/prepare.py ``activation``). On
``ort`` that Mul runs as onnxruntime's QLinearMul (float32 scale, one rounding), so the
reference must use the same arithmetic; with TFLite's MUL recipe (double rounding) it
was 1 LSB off at the recipe's ties (seg_head: 0.07 % of the SiLU outputs, 3 LSB end to
end). Seeded inputs over many scales hit such ties by the hundred.
"""
import numpy as np
import pytest
from onnx import helper

from qdeploy.emit import qdq
from qdeploy.emit.qdq_compare import per_op
from qdeploy.pipeline import QuantizeOptions, quantize_model, run_artifact
from qdeploy.quant.qgraph import load_qgraph
from tests.helpers import model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silu_mul_on_ort_is_bit_exact(seed, tmp_path):
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Mul", ["c", "s"], ["y"], name="silu")]
    inits = {"w": rng.normal(0, 0.5, (16, 3, 3, 3)).astype(np.float32),
             "b": rng.normal(0, 0.2, 16).astype(np.float32)}
    import onnx
    onnx.save(model(nodes, {"x": [1, 3, 24, 24]}, ["y"], inits), tmp_path / "m.onnx")
    x = rng.normal(0, 1.0, (40, 3, 24, 24)).astype(np.float32)
    np.save(tmp_path / "cal.npy", x[:24])
    np.save(tmp_path / "ev.npy", x[24:])
    out = tmp_path / "out"
    quantize_model(tmp_path / "m.onnx", out, QuantizeOptions(target="ort", calib=str(tmp_path / "cal.npy"),
                                                              eval=str(tmp_path / "ev.npy"), emit="qdq",
                                                              progress=False))
    qg = load_qgraph(out / "model.qgraph")
    mul = [n for n in qg.nodes if n.op == "Mul"]
    assert len(mul) == 1 and mul[0].params.get("requant") == "float32"     # onnxruntime's QLinearMul
    got, ref = (run_artifact(out, b, x[24:]) for b in ("qdq", "ref"))
    for k in ref:
        assert np.array_equal(got[k], ref[k]), f"{k}: {np.count_nonzero(got[k] != ref[k])} of {ref[k].size} differ"
    ops = per_op(qg, onnx.load(str(out / qdq.FILE)), {qg.inputs[0]: x[24:]})
    assert all(d.exact == d.count for d in ops), [d.line() for d in ops if d.exact != d.count]
