"""The architecture corpus: valid, deterministic, structurally what it claims,
and faithful through import -> export and through the graph passes (judged by
onnxruntime on the original model)."""
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qdeploy.corpus import CORPUS, build, save
from qdeploy.float_run import random_inputs, run_float
from qdeploy.onnx_export import export_onnx
from qdeploy.onnx_import import import_onnx
from tests.helpers import assert_float_equal

NAMES = sorted(CORPUS)

# ops each model must contain as built (the exported forms the passes must meet)
EXPECTED_OPS = {
    "mobilenet_v1": {"Conv", "BatchNormalization", "Clip", "GlobalAveragePool", "Flatten", "Gemm"},
    "mobilenet_v2": {"Conv", "BatchNormalization", "Clip", "Add", "Constant", "Shape", "Gather",
                     "Unsqueeze", "Reshape"},
    "mobilenet_v3_small": {"HardSigmoid", "Clip", "Div", "Mul", "GlobalAveragePool", "Relu"},
    "shufflenet_v2": {"Split", "Slice", "Transpose", "Reshape", "Concat", "MaxPool", "ReduceMean"},
    "squeezenet": {"Concat", "MaxPool", "GlobalAveragePool", "Flatten", "Relu"},
    "resnet": {"Add", "Relu", "MaxPool", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape"},
    "resnext": {"Conv", "Add", "Relu", "Flatten", "Gemm"},
    "ghostnet": {"Concat", "Add", "Clip", "Mul", "HardSwish", "GlobalAveragePool"},
    "tiny_yolo": {"LeakyRelu", "MaxPool", "Resize", "Concat"},
    "seg_head": {"Sigmoid", "Mul", "Resize", "DepthToSpace", "ConvTranspose", "Concat"},
    "he2014": {"MaxPool", "Shape", "Reshape", "Concat", "Gemm"},
}

# op chains (each op feeding the next) that must occur: the exported forms
EXPECTED_CHAINS = {
    "mobilenet_v2": [["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]],
    "resnet": [["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]],
    "he2014": [["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]],
    "mobilenet_v3_small": [["Add", "Clip", "Mul", "Div"], ["Conv", "HardSigmoid", "Mul"]],
    "ghostnet": [["Add", "Clip", "Mul", "Mul"], ["Conv", "HardSwish", "Flatten"]],
    "shufflenet_v2": [["Concat", "Reshape", "Transpose", "Reshape"]],
    "seg_head": [["Sigmoid", "Mul"], ["Conv", "DepthToSpace", "Add"]],
    "tiny_yolo": [["LeakyRelu", "Conv", "BatchNormalization", "LeakyRelu", "Resize", "Concat"]],
}



def _convs(m, **want):
    """Conv nodes whose attributes include ``want`` (lists compared as lists)."""
    out = []
    for n in m.graph.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        if n.op_type == "Conv" and all(a.get(k) == v for k, v in want.items()):
            out.append(n)
    return out


# attribute-level features (grouped, dilated, 7x7 s2, 2x2, 5x5 depthwise convs)
EXPECTED_CONVS = {
    "resnext": [dict(group=8)],
    "seg_head": [dict(dilations=[2, 2]), dict(dilations=[4, 4])],
    "he2014": [dict(kernel_shape=[7, 7], strides=[2, 2]), dict(kernel_shape=[2, 2])],
    "resnet": [dict(kernel_shape=[7, 7], strides=[2, 2])],
    "mobilenet_v3_small": [dict(kernel_shape=[5, 5], group=96)],
    "mobilenet_v1": [dict(kernel_shape=[3, 3], group=32)],
}


def _ort(model: onnx.ModelProto, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _has_chain(model: onnx.ModelProto, ops: list[str]) -> bool:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def walk(node, rest):
        if not rest:
            return True
        return any(c.op_type == rest[0] and walk(c, rest[1:])
                   for o in node.output for c in consumers.get(o, []))
    return any(n.op_type == ops[0] and walk(n, ops[1:]) for n in model.graph.node)


def test_chain_matcher_can_fail():
    m = build("resnet")
    assert _has_chain(m, ["Shape", "Gather", "Unsqueeze"])
    assert not _has_chain(m, ["Shape", "Reshape"]) and not _has_chain(m, ["LeakyRelu"])
    assert _convs(m, kernel_shape=[7, 7]) and not _convs(m, group=8)


@pytest.fixture(scope="module")
def models():
    return {name: build(name) for name in NAMES}


def test_registry_api(tmp_path):
    assert len(NAMES) == 11
    with pytest.raises(KeyError, match="no corpus model"):
        build("alexnet")
    save("resnet", tmp_path / "resnet.onnx")
    assert onnx.load(str(tmp_path / "resnet.onnx")) == build("resnet")


def test_opsets_cover_11_13_17(models):
    opsets = {m.opset_import[0].version for m in models.values()}
    assert {11, 13, 17} <= opsets


@pytest.mark.parametrize("name", NAMES)
def test_valid_and_deterministic(models, name):
    m = models[name]
    onnx.checker.check_model(m, full_check=True)
    assert build(name).SerializeToString() == m.SerializeToString()
    assert m.ByteSize() < 2_000_000


@pytest.mark.parametrize("name", NAMES)
def test_intended_structure(models, name):
    m = models[name]
    ops = Counter(n.op_type for n in m.graph.node)
    assert EXPECTED_OPS[name] <= set(ops), f"missing {EXPECTED_OPS[name] - set(ops)}"
    for chain in EXPECTED_CHAINS.get(name, []):
        assert _has_chain(m, chain), f"no {' -> '.join(chain)}"
    for want in EXPECTED_CONVS.get(name, []):
        assert _convs(m, **want), f"no Conv with {want}"
    # ReLU6 and h-sigmoid clamps in the opset-11+ form: min and max as inputs
    assert all(len(n.input) == 3 for n in m.graph.node if n.op_type == "Clip")
    assert ops["LeakyRelu"] == 0 or all(
        n.attribute[0].f == pytest.approx(0.1) for n in m.graph.node if n.op_type == "LeakyRelu")


@pytest.mark.parametrize("name", NAMES)
def test_batchnorm_unfolded_and_nontrivial(models, name):
    m = models[name]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) >= 5
    spreads = []
    for n in bns:
        gamma, beta, mean, var = (inits[i] for i in n.input[1:])
        assert np.abs(mean).max() > 1e-3 and np.abs(var - 1).max() > 1e-2 and np.abs(beta).max() > 0
        spreads.append(np.abs(gamma).max() / np.median(np.abs(gamma)))
    assert max(spreads) > 4, "no BN with a few channels of much larger range"


@pytest.mark.parametrize("name", NAMES)
def test_import_export_matches_onnxruntime(models, name):
    m = models[name]
    g = import_onnx(m)
    x = random_inputs(g, seed=1)
    want = _ort(m, x)
    exported = export_onnx(g)
    onnx.checker.check_model(exported)
    got = _ort(exported, x)
    assert [o.name for o in m.graph.output] == list(g.outputs)
    for w, y in zip(want, got):
        np.testing.assert_allclose(y, w, atol=1e-4 * float(np.abs(w).max()), rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_activations_neither_vanish_nor_explode(models, name):
    """On standard-normal inputs every activation keeps an RMS near 1 (the
    bounds leave room for the x*Clip(x+3,0,6) product inside a decomposed
    h-swish, which is 6x the h-swish itself, and for residual growth)."""
    g = import_onnx(models[name])
    acts = [a for a in g.activations() if a not in g.inputs]
    values = run_float(g, random_inputs(g, seed=2), expose=acts)
    for a in acts:
        v = values[a]
        rms = float(np.sqrt(np.mean(v.astype(np.float64) ** 2)))
        assert np.isfinite(v).all() and 0.05 < rms < 20 and np.abs(v).max() < 200, f"{a}: rms {rms}"


@pytest.mark.parametrize("name", NAMES)
def test_passes_preserve_outputs_and_fold_every_batchnorm(models, name):
    from qdeploy.passes import run_passes
    g = import_onnx(models[name])
    h = run_passes(g)
    assert not [n.name for n in h.nodes if n.op == "BatchNormalization"]
    assert_float_equal(g, h, seed=3)


@pytest.mark.parametrize("pass_name", __import__("qdeploy.passes", fromlist=["pass_names"]).pass_names())
@pytest.mark.parametrize("name", NAMES)
def test_each_pass_alone_preserves_outputs(models, name, pass_name):
    """Every pass on its own (not only the whole pipeline) keeps the float
    semantics of every corpus model, judged by onnxruntime."""
    from qdeploy.passes import run_passes
    g = import_onnx(models[name])
    h = run_passes(g, only=[pass_name])
    assert_float_equal(g, h, seed=4)
