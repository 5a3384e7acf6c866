"""Every op mapping of the TFLite emitter, one op at a time (tests/emit/tflite_cases.py):
the file runs on TFLite Micro bit-exact with the reference interpreter, on
LiteRT (XNNPACK) within 1 LSB, and holds the builtins the mapping promises."""
from __future__ import annotations

import numpy as np
import pytest

from qdeploy.emit.tflite import build
from qdeploy.emit.tflite import schema_py_generated as fb
from qdeploy.emit.tflite.runners import litert_invoker, run_blob, tflm_invoker
from qdeploy.quant.interpreter import run
from tests.emit.tflite_cases import CASES, case_graph

pytest.importorskip("tflite_micro")

_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}


def builtins(blob: bytes) -> list[str]:
    """The builtin of every operator, in order."""
    m = fb.Model.GetRootAs(blob, 0)
    sg = m.Subgraphs(0)
    return [_NAMES[m.OperatorCodes(sg.Operators(i).OpcodeIndex()).BuiltinCode()]
            for i in range(sg.OperatorsLength())]


EXPECT = {   # case -> builtins the file must hold (exactly these, in this order)
    "conv": ["CONV_2D"], "depthwise": ["DEPTHWISE_CONV_2D"], "gemm": ["FULLY_CONNECTED"],
    "grouped": ["CONV_2D"],
    "depthwise_same_s2": ["DEPTHWISE_CONV_2D"], "conv_same_s2": ["CONV_2D"],
    "conv_pads_odd": ["PAD", "CONV_2D"], "avgpool_same_s2": ["AVERAGE_POOL_2D"],
    "maxpool_pads_odd": ["PADV2", "MAX_POOL_2D"], "pad_value": ["PADV2"], "pad_reflect": ["MIRROR_PAD"],
    "slice_steps": ["STRIDED_SLICE"], "split": ["SPLIT_V"], "split_equal": ["SPLIT"],
    "softmax": ["SOFTMAX"],
    "softmax_channels": ["TRANSPOSE", "SOFTMAX", "TRANSPOSE"],   # the importer swaps C to the last axis "sigmoid": ["LOGISTIC"], "tanh": ["TANH"],
    "hardswish": ["HARD_SWISH"], "leaky_relu": ["LEAKY_RELU"],
    "hardsigmoid": ["CAST", "ADD", "GATHER"], "silu": ["LOGISTIC", "MUL"],
    "resize_nearest_asym": ["RESIZE_NEAREST_NEIGHBOR"], "resize_nearest_half": ["RESIZE_NEAREST_NEIGHBOR"],
    "resize_nearest_align": ["RESIZE_NEAREST_NEIGHBOR"], "resize_linear": ["RESIZE_BILINEAR"],
    "resize_linear_align": ["RESIZE_BILINEAR"], "depth_to_space_dcr": ["DEPTH_TO_SPACE"],
    "depth_to_space": ["GATHER", "DEPTH_TO_SPACE"], "space_to_depth": ["SPACE_TO_DEPTH"],
    "flatten_fc": ["CONV_2D", "FULLY_CONNECTED"], "reduce_mean": ["MEAN"],
    "conv_transpose": ["TRANSPOSE_CONV", "STRIDED_SLICE"], "conv_transpose_same": ["TRANSPOSE_CONV"],
    "conv_transpose_grouped": ["SPLIT", "TRANSPOSE_CONV", "TRANSPOSE_CONV", "CONCATENATION", "STRIDED_SLICE"],
    "prelu": ["PRELU"], "max": ["QUANTIZE", "QUANTIZE", "MAXIMUM"],
    "min": ["QUANTIZE", "QUANTIZE", "MINIMUM"], "avgpool": ["AVERAGE_POOL_2D", "STRIDED_SLICE"],
    "transpose_hw": ["TRANSPOSE"], "channel_shuffle": ["GATHER"], "sub": ["SUB"], "mul": ["MUL"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_op_bit_exact_on_tflm(case):
    qg, x = case_graph(case)
    blob = build(qg)
    if case in EXPECT:
        assert builtins(blob) == EXPECT[case], builtins(blob)
    want = run(qg, x)
    got = run_blob(blob, qg, x, tflm_invoker(blob))
    for k in want:
        assert got[k].shape == want[k].shape, (k, got[k].shape, want[k].shape)
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{case}: {k}")
    if pytest.importorskip("ai_edge_litert"):
        lt = run_blob(blob, qg, x, litert_invoker(blob))
        for k in want:
            deq = next(n for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] == k)
            d = np.rint(np.abs(lt[k] - want[k]) / qg.tensors[deq.inputs[0]].s)
            print(f"{case}: LiteRT XNNPACK {np.mean(d > 0):.1%} of {d.size} differ, max {int(d.max())} LSB")
            assert d.max() <= 1, f"{case}: LiteRT {int(d.max())} LSB off"


def test_what_tflite_cannot_express_is_one_error_naming_every_node():
    import copy
    from qdeploy.errors import QDeployError
    qg, _ = case_graph("pad")
    qg = copy.deepcopy(qg)
    pad = next(n for n in qg.nodes if n.op == "Pad")
    pad.attrs["mode"] = "edge"
    with pytest.raises(QDeployError) as e:
        build(qg)
    msg = str(e.value)
    assert "\n" not in msg and pad.name in msg and "edge" in msg and "--emit" in msg


@pytest.mark.parametrize("clamp", ["relu", "relu6", "narrow"])
def test_clamps_fused_or_explicit(clamp):
    """A QGraph clamp is a fused activation when TFLite's range for one equals it
    (RELU: [zp, 127]; RELU6: [zp, zp + round(6 / s)]), else MAXIMUM/MINIMUM after
    the op (set here by hand: calibration puts ReLU clamps at the dtype range)."""
    import copy
    from qdeploy.emit.tflite.writer import ACT
    qg, x = case_graph("conv")
    qg = copy.deepcopy(qg)
    conv = next(n for n in qg.nodes if n.op == "Conv2D")
    y = qg.tensors[conv.outputs[0]]
    lo, hi = {"relu": (y.zp, 127), "relu6": (y.zp, min(127, y.zp + int(np.floor(6 / y.s + 0.5)))),
              "narrow": (y.zp + 3, y.zp + 40)}[clamp]
    conv.params["act_min"], conv.params["act_max"] = lo, hi
    blob = build(qg)
    m = fb.ModelT.InitFromPackedBuf(blob, 0)
    fn = m.subgraphs[0].operators[0].builtinOptions.fusedActivationFunction
    if clamp == "narrow":
        assert builtins(blob) == ["CONV_2D", "MAXIMUM", "MINIMUM"] and fn == ACT.NONE
    else:
        from qdeploy.emit.tflite.ops import _act_range
        assert builtins(blob) == ["CONV_2D"] and fn != ACT.NONE and _act_range(fn, y.s, y.zp) == (lo, hi)
    want = run(qg, x)
    got = run_blob(blob, qg, x, tflm_invoker(blob))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
        assert want[k].min() >= qg.tensors[conv.outputs[0]].s * (lo - y.zp) - 1e-6


@pytest.mark.parametrize("case", ["sigmoid", "tanh", "hardswish", "leaky_relu", "hardsigmoid"])
def test_lut_equals_its_table_on_all_256_inputs(case):
    """Every int8 input through the Lut node's TFLite form (the builtin whose recipe gives
    the table, or CAST+ADD+GATHER from the table itself) on TFLite Micro = the table."""
    from tests.emit.tflite_judge import node_graph
    from qdeploy.emit.tflite.runners import run_int
    qg, _ = case_graph(case)
    node = next(n for n in qg.nodes if n.op == "Lut")
    blob = build(node_graph(qg, node))
    x = np.arange(-128, 128, dtype=np.int8).reshape(qg.tensors[node.inputs[0]].shape)
    got = run_int(blob, [x])[0]
    np.testing.assert_array_equal(got.reshape(-1), np.asarray(node.params["table"]).astype(np.int8))


def test_grouped_conv_split_per_group_is_bit_exact(monkeypatch):
    """The per-group split (for runtimes without grouped CONV_2D) stays exact."""
    from qdeploy.emit.tflite import ops
    monkeypatch.setattr(ops, "SPLIT_GROUPS", True)
    qg, x = case_graph("grouped_s2")
    blob = build(qg)
    assert "SPLIT" in builtins(blob) and builtins(blob)[-1] == "CONCATENATION"
    want = run(qg, x)
    got = run_blob(blob, qg, x, tflm_invoker(blob))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
