"""The ort target's ``float_grouped`` rule (targets/ort.toml, quant/float_island.py):
grouped convs that are not depthwise run in float between DequantizeLinear and
QuantizeLinear, every other conv stays int8; the reference predicts onnxruntime
bit for bit; a model without such convs gets the same bytes as without the rule;
the other targets are unchanged and refuse the key."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from qdeploy.corpus import save
from qdeploy.emit import qdq
from qdeploy.emit.qdq_compare import end_to_end, optimized_ops, per_op
from qdeploy.errors import QDeployError
from qdeploy.pipeline import QuantizeOptions, prepare_float, quantize_model, run_artifact
from qdeploy.quant.float_island import grouped
from qdeploy.quant.qgraph import load_qgraph
from qdeploy.quant.targets import load_target
from tests.helpers import model


def convs_model(path, with_grouped: bool = True) -> None:
    """conv (plain) -> relu -> depthwise 3x3 -> relu -> [grouped 3x3, 4 groups of 2
    channels -> relu] -> conv 1x1 -> pool -> flatten."""
    rng = np.random.default_rng(5)
    c = 8
    inits = {"w0": rng.normal(0, 0.3, (c, 3, 3, 3)), "wd": rng.normal(0, 0.3, (c, 1, 3, 3)),
             "wg": rng.normal(0, 0.3, (c, 2, 3, 3)), "w1": rng.normal(0, 0.3, (c, c, 1, 1)),
             "bg": rng.normal(0, 0.1, c)}
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1], name="plain"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("Conv", ["r0", "wd"], ["cd"], pads=[1, 1, 1, 1], group=c, name="depthwise"),
             helper.make_node("Relu", ["cd"], ["rd"], name="relud")]
    last = "rd"
    if with_grouped:
        nodes += [helper.make_node("Conv", ["rd", "wg", "bg"], ["cg"], pads=[1, 1, 1, 1], group=4, name="grouped"),
                  helper.make_node("Relu", ["cg"], ["rg"], name="relug")]
        last = "rg"
    nodes += [helper.make_node("Conv", [last, "w1"], ["c1"], name="pointwise"),
              helper.make_node("GlobalAveragePool", ["c1"], ["p"], name="pool"),
              helper.make_node("Flatten", ["p"], ["y"], name="flatten")]
    onnx.save(model(nodes, {"x": [1, 3, 12, 12]}, ["y"], inits), str(path))


def _quantize(src, out, target="ort", **kw):
    return quantize_model(src, out, QuantizeOptions(target=target, limit=8, emit="qdq", progress=False, **kw))


def test_rule_picks_exactly_the_grouped_convs_that_are_not_depthwise(tmp_path):
    convs_model(tmp_path / "m.onnx")
    assert grouped(prepare_float(tmp_path / "m.onnx")) == ["grouped"]
    save("resnext", tmp_path / "resnext.onnx")
    g = prepare_float(tmp_path / "resnext.onnx")
    want = [n.name for n in g.nodes if n.op == "Conv" and int(n.attrs.get("group", 1)) > 1]
    assert len(want) == 4 and grouped(g) == want
    for name in ("mobilenet_v2", "ghostnet", "resnet"):   # depthwise only / no grouped convs
        save(name, tmp_path / f"{name}.onnx")
        assert grouped(prepare_float(tmp_path / f"{name}.onnx")) == []


def test_ort_runs_the_grouped_conv_in_float_and_the_reference_predicts_it_exactly(tmp_path):
    convs_model(tmp_path / "m.onnx")
    res = _quantize(tmp_path / "m.onnx", tmp_path / "o")
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["float_nodes"] == [{"node": "grouped", "op": "Conv2D", "by": "float_grouped"}]
    assert [n.name for n in res.qgraph.nodes if n.op == "Float"] == ["grouped"]
    assert res.qgraph.op_counts()["Conv2D"] == 3
    ops = optimized_ops((tmp_path / "o" / qdq.FILE).read_bytes(), tmp_path / "opt.onnx")
    print("onnxruntime's optimized graph:", ops)
    assert ops.get("QLinearConv") == 3 and ops.get("Conv", 0) + ops.get("FusedConv", 0) == 1, ops
    qg = load_qgraph(tmp_path / "o" / "model.qgraph")
    x = np.random.default_rng(2).uniform(-2, 2, (8, 3, 12, 12)).astype(np.float32)
    got, ref = (run_artifact(tmp_path / "o", b, x) for b in ("qdq", "ref"))
    for d in end_to_end(qg, got, ref):
        print("end to end:", d.line())
        assert d.max == 0, d.line()
    diffs = per_op(qg, onnx.load(str(tmp_path / "o" / qdq.FILE)), {qg.inputs[0]: x})
    print("; ".join(d.line() for d in diffs if d.op == "Float"))
    assert all(d.max == 0 for d in diffs), [d.line() for d in diffs if d.max]


def test_keep_float_names_are_recorded_as_such(tmp_path):
    convs_model(tmp_path / "m.onnx")
    _quantize(tmp_path / "m.onnx", tmp_path / "o", keep_float=("grouped", "plain"))
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["float_nodes"] == [{"node": "plain", "op": "Conv2D", "by": "--keep-float"},
                                {"node": "grouped", "op": "Conv2D", "by": "--keep-float"}]


@pytest.mark.parametrize("name", ["convs", "mobilenet_v2"])
def test_a_model_without_such_convs_gets_the_same_bytes(name, tmp_path):
    src = tmp_path / "m.onnx"
    convs_model(src, with_grouped=False) if name == "convs" else save(name, src)
    off = tmp_path / "ort_off.toml"
    off.write_text(open(load_target("ort").path).read().replace("float_grouped = true", "float_grouped = false"))
    assert not load_target(str(off)).numerics.float_grouped and load_target("ort").numerics.float_grouped
    a, b = _quantize(src, tmp_path / "on"), _quantize(src, tmp_path / "off", target=str(off))
    assert not any(n.op == "Float" for n in a.qgraph.nodes)
    assert (tmp_path / "on" / qdq.FILE).read_bytes() == (tmp_path / "off" / qdq.FILE).read_bytes()
    assert (tmp_path / "on" / "model.qgraph").read_bytes() == (tmp_path / "off" / "model.qgraph").read_bytes()
    assert "float_nodes" not in json.loads((tmp_path / "on" / "manifest.json").read_text())


def test_other_targets_keep_grouped_convs_int8_and_refuse_the_key(tmp_path):
    convs_model(tmp_path / "m.onnx")
    for t in ("arm", "cortex-m", "fpga"):
        assert not load_target(t).numerics.float_grouped
    res = _quantize(tmp_path / "m.onnx", tmp_path / "arm", target="arm")
    assert not any(n.op == "Float" for n in res.qgraph.nodes) and res.qgraph.op_counts()["Conv2D"] == 4
    p = tmp_path / "arm_grouped.toml"
    p.write_text(open(load_target("arm").path).read().replace("[numerics]", "[numerics]\nfloat_grouped = true"))
    with pytest.raises(QDeployError, match="float_grouped"):
        load_target(str(p))
