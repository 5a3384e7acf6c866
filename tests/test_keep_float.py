"""``qdeploy quantize --target ort --keep-float NODE`` end to end: the named layers run
in float on onnxruntime (a float Conv/ConvTranspose/Gemm in its optimized graph,
every other layer still fused into int8 kernels), the reference interpreter predicts
the QDQ model within 1 LSB (measured: bit-exact on these models), the report's
advice names the option with a command line the CLI accepts, and following it
raises the output SQNR against the original model."""
from __future__ import annotations

import json
import shlex

import numpy as np
import onnx
import pytest
from onnx import helper

from qdeploy.cli.quantize_cmd import quantize as quantize_cmd
from qdeploy.corpus import save
from qdeploy.emit.qdq_compare import optimized_ops, per_op
from qdeploy.pipeline import run_artifact
from qdeploy.quant.error import sqnr_db
from qdeploy.quant.qgraph import load_qgraph, on_grid, output_grids
from tests.cli_helpers import cli
from tests.helpers import model


def outlier_model(path) -> None:
    """conv1 -> relu -> conv2 -> relu -> conv3 -> relu -> pool -> fc, where each conv2
    filter has one large tap on a channel the ReLU before it keeps at zero: the large
    tap sets a coarse per-channel int8 step for the small taps that carry the signal,
    so conv2's *weights* dominate the error (what --keep-float is for)."""
    rng = np.random.default_rng(3)
    w2 = rng.normal(0, 0.05, (8, 8, 3, 3)).astype(np.float32)
    w2[:, 0, 0, 0] = 2.0
    b1 = np.zeros(8, np.float32)
    b1[0] = -100.0
    inits = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "b1": b1, "w2": w2,
             "w3": rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32),
             "wf": rng.normal(0, 0.3, (10, 8)).astype(np.float32), "bf": np.zeros(10, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1], name="conv3"),
             helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
             helper.make_node("GlobalAveragePool", ["r3"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc")]
    onnx.save(model(nodes, {"x": [1, 3, 16, 16]}, ["y"], inits), str(path))


@pytest.fixture(scope="module")
def outs(tmp_path_factory):
    d = tmp_path_factory.mktemp("keepfloat")
    outlier_model(d / "outlier.onnx")
    base = ["quantize", d / "outlier.onnx", "--target", "ort", "--limit", "16", "-q"]
    for name, extra in (("int8", []), ("float", ["--keep-float", "relu2", "--keep-float", "fc"])):
        res = cli(*base, *extra, "-o", d / name)
        assert res.exit_code == 0, res.stderr
    return d


def _x(d):
    return np.random.default_rng(1).uniform(-2, 2, (8, 3, 16, 16)).astype(np.float32)


def test_named_layers_run_in_float_and_the_rest_stays_int8(outs, tmp_path):
    """relu2 was fused into conv2: asking for it keeps conv2 (its clamp follows) in float."""
    m = json.loads((outs / "float" / "manifest.json").read_text())
    assert m["float_nodes"] == [{"node": "conv2", "op": "Conv2D", "by": "--keep-float"},
                                {"node": "fc", "op": "FullyConnected", "by": "--keep-float"}]
    assert m["options"]["keep_float"] == ["relu2", "fc"]
    rep = json.loads((outs / "float" / "report.json").read_text())
    assert rep["float_nodes"] == m["float_nodes"]
    qg = load_qgraph(outs / "float" / "model.qgraph")
    assert [n.name for n in qg.nodes if n.op == "Float"] == ["conv2", "fc"]
    assert all(qg.tensors[n.inputs[1]].dtype == "float32" for n in qg.nodes if n.op == "Float")
    ops = {k: optimized_ops((outs / k / "model.qdq.onnx").read_bytes(), tmp_path / f"{k}.onnx")
           for k in ("int8", "float")}
    print("onnxruntime's optimized graph:", ops)
    assert ops["int8"].get("QLinearConv") == 3 and ops["int8"].get("QGemm") == 1
    assert "Conv" not in ops["int8"] and "Gemm" not in ops["int8"]
    # the two float layers stay float ops; the other two convs are still fused into QLinearConv
    assert ops["float"].get("QLinearConv") == 2 and "QGemm" not in ops["float"]
    assert ops["float"].get("Conv") == 1 and ops["float"].get("Gemm", 0) + ops["float"].get("FusedGemm", 0) == 1


def test_reference_predicts_onnxruntime_within_one_lsb(outs):
    out = outs / "float"
    x = _x(outs)
    qg = load_qgraph(out / "model.qgraph")
    ref, qdq = run_artifact(out, "ref", x), run_artifact(out, "qdq", x)
    grid = output_grids(qg)["y"]
    d = np.abs(on_grid(ref["y"], grid) - on_grid(qdq["y"], grid))
    ops = per_op(qg, onnx.load(str(out / "model.qdq.onnx")), {"x": x})
    print(f"ref vs qdq: max {d.max()} LSB, {100 * np.mean(d == 0):.2f} % exact; per op: "
          + "; ".join(o.line() for o in ops if o.op == "Float"))
    assert d.max() <= 1 and all(o.max <= 1 for o in ops)
    rep = json.loads((out / "report.json").read_text())
    assert rep["verification"][0]["status"] in ("bit-exact", "within 1 LSB")


def test_float_layers_raise_the_sqnr(outs):
    x = _x(outs)
    flt = run_artifact(outs / "float", "float", x)["y"]
    s = {k: sqnr_db(flt, run_artifact(outs / k, "qdq", x)["y"]) for k in ("int8", "float")}
    print(f"output SQNR vs float: int8 {s['int8']:.1f} dB, conv2+fc in float {s['float']:.1f} dB")
    assert s["float"] >= s["int8"] + 3.0


def test_advice_names_keep_float_with_a_command_the_cli_accepts(outs, tmp_path, monkeypatch):
    rep = json.loads((outs / "int8" / "report.json").read_text())
    adv = [a for a in rep["advice"] if a["option"].startswith("--keep-float")]
    assert adv and adv[0]["option"] == "--keep-float conv2", rep["advice"]
    args = shlex.split(adv[0]["command"])
    assert args[:2] == ["qdeploy", "quantize"]
    ctx = quantize_cmd.make_context("quantize", args[2:])
    assert ctx.params["keep_float"] == ("conv2",) and ctx.params["target"] == "ort"
    # the command runs as printed (from the folder that holds the model, as the user would)
    monkeypatch.chdir(outs)
    res = cli(*args[1:-2], "--limit", "16", "-o", tmp_path / "advised", "-q")
    assert res.exit_code == 0, res.stderr
    assert json.loads((tmp_path / "advised" / "manifest.json").read_text())["float_nodes"][0]["node"] == "conv2"


def test_corpus_transposed_conv_kept_in_float(tmp_path):
    """seg_head on ort with its ConvTranspose and a Conv kept in float (comma list):
    QDQ runs, both are float ops in onnxruntime's graph, the reference within 1 LSB per op."""
    save("seg_head", tmp_path / "seg.onnx")
    g = onnx.load(str(tmp_path / "seg.onnx")).graph
    tconv = next(n.name for n in g.node if n.op_type == "ConvTranspose")
    conv = next(n.name for n in g.node if n.op_type == "Conv")
    res = cli("quantize", tmp_path / "seg.onnx", "--target", "ort", "--limit", "8", "--keep-float",
              f"{tconv},{conv}", "-o", tmp_path / "o", "-q")
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "o"
    qg = load_qgraph(out / "model.qgraph")
    assert sorted(n.attrs["op"] for n in qg.nodes if n.op == "Float") == ["Conv2D", "TransposeConv2D"]
    ops = optimized_ops((out / "model.qdq.onnx").read_bytes(), tmp_path / "opt.onnx")
    assert ops.get("ConvTranspose") == 1 and ops.get("Conv", 0) + ops.get("FusedConv", 0) >= 1, ops
    assert ops.get("QLinearConv", 0) >= 1, ops
    x = np.random.default_rng(2).normal(0, 1, (2,) + tuple(qg.tensors[qg.inputs[0]].shape[1:])).astype(np.float32)
    diffs = per_op(qg, onnx.load(str(out / "model.qdq.onnx")), {qg.inputs[0]: x})
    print("; ".join(d.line() for d in diffs if d.op == "Float"))
    assert all(d.max <= 1 for d in diffs)


def test_python_api_and_json_summary_take_the_same_names(outs, tmp_path):
    import qdeploy
    res = qdeploy.quantize(outs / "outlier.onnx", target="ort", out=tmp_path / "api", keep_float="relu2, fc",
                           limit=16, verify=False)
    m = json.loads((res.out / "manifest.json").read_text())
    assert m["options"]["keep_float"] == ["relu2", "fc"] and [f["node"] for f in m["float_nodes"]] == ["conv2", "fc"]
    r = cli("quantize", outs / "outlier.onnx", "--target", "ort", "--limit", "16", "--no-verify",
            "--keep-float", "relu2,fc", "--json", "-o", tmp_path / "cli")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["float_nodes"] == ["conv2", "fc"]


def test_corpus_depthwise_conv_kept_in_float(tmp_path):
    """mobilenet_v1's first depthwise conv kept in float: a float Conv in onnxruntime's
    graph, the reference's Float node within 1 LSB of it per op."""
    save("mobilenet_v1", tmp_path / "m.onnx")
    g = onnx.load(str(tmp_path / "m.onnx")).graph
    dw = next(n.name for n in g.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))
    res = cli("quantize", tmp_path / "m.onnx", "--target", "ort", "--limit", "8", "--keep-float", dw,
              "-o", tmp_path / "o", "-q")
    assert res.exit_code == 0, res.stderr
    qg = load_qgraph(tmp_path / "o" / "model.qgraph")
    node = next(n for n in qg.nodes if n.op == "Float")
    assert node.name == dw and node.attrs["depthwise"]
    ops = optimized_ops((tmp_path / "o" / "model.qdq.onnx").read_bytes(), tmp_path / "opt.onnx")
    assert ops.get("Conv", 0) + ops.get("FusedConv", 0) == 1, ops
    x = np.random.default_rng(4).normal(0, 1, (2,) + tuple(qg.tensors[qg.inputs[0]].shape[1:])).astype(np.float32)
    diffs = per_op(qg, onnx.load(str(tmp_path / "o" / "model.qdq.onnx")), {qg.inputs[0]: x})
    print("; ".join(d.line() for d in diffs if d.op == "Float"))
    assert all(d.max <= 1 for d in diffs)


def test_names_resolve_through_the_passes(tmp_path):
    """A BatchNorm and a Relu folded into a conv name that conv; a Relu fused into an Add
    names the Add, which has no weights to keep: one line saying so."""
    from qdeploy.errors import QDeployError
    from qdeploy.pipeline import prepare_float
    from qdeploy.quant.float_island import resolve
    rng = np.random.default_rng(0)
    c = 4
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "x"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu_after_add"),
             helper.make_node("Relu", ["y"], ["z"], name="last")]
    inits = {"w": rng.normal(0, 0.3, (c, c, 3, 3)).astype(np.float32), "g": np.ones(c, np.float32),
             "b": np.zeros(c, np.float32), "m": np.zeros(c, np.float32), "v": np.ones(c, np.float32)}
    onnx.save(model(nodes, {"x": [1, c, 8, 8]}, ["z"], inits), str(tmp_path / "m.onnx"))
    g = prepare_float(tmp_path / "m.onnx")
    assert resolve(g, ["bn", "relu,conv"]) == ["conv"]
    with pytest.raises(QDeployError, match=r"relu_after_add: it was folded into Add 'add', which cannot be kept"):
        resolve(g, ["relu_after_add"])
