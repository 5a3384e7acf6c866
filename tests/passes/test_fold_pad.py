"""fold_pad: a Pad folded into the Conv or pool after it only where the
padding values agree, outputs unchanged on onnxruntime; refusals."""
import numpy as np
import pytest
from onnx import helper

from qdeploy.onnx_import import import_onnx
from qdeploy.passes import PassOptions, fold_pad
from tests.helpers import model
from tests.passes.build import apply, f32, ops, rand

X = (1, 2, 7, 6)


def pad_model(pad_pads, consumer, value=0.0, mode="constant", extra_out=False, **attrs):
    rng = np.random.default_rng(0)
    inits = {"pads": np.array(pad_pads, np.int64), "val": f32(value), "w": rand(rng, 3, 2, 3, 3)}
    nodes = [helper.make_node("Pad", ["x", "pads", "val"] if mode == "constant" else ["x", "pads"], ["p"],
                              name="pad", mode=mode)]
    ins = ["p", "w"] if consumer == "Conv" else ["p"]
    if consumer != "Conv":
        attrs.setdefault("kernel_shape", [3, 3])
    nodes.append(helper.make_node(consumer, ins, ["y"], name="target", **attrs))
    return model(nodes, {"x": X}, ["y"] + (["p"] if extra_out else []), inits)


@pytest.mark.parametrize("pads,own", [([0, 0, 1, 1, 0, 0, 1, 1], [0, 0, 0, 0]),
                                      ([0, 0, 0, 2, 0, 0, 1, 0], [1, 1, 1, 1])])
def test_zero_pad_folds_into_conv(pads, own):
    _, after, msgs = apply(pad_model(pads, "Conv", pads=own, strides=[2, 1]), fold_pad)
    assert ops(after) == ["Conv"]
    assert after.node("target").attrs["pads"] == [own[0] + pads[2], own[1] + pads[3],
                                                  own[2] + pads[6], own[3] + pads[7]]
    assert msgs and "into Conv 'target'" in msgs[0]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("strides", [[1, 1], [2, 2]])
def test_zero_pad_folds_into_auto_padded_conv(auto_pad, strides):
    _, after, _ = apply(pad_model([0, 0, 1, 0, 0, 0, 0, 1], "Conv", auto_pad=auto_pad, strides=strides),
                        fold_pad)
    assert ops(after) == ["Conv"] and "auto_pad" not in after.node("target").attrs


def test_zero_pad_folds_into_average_pool_counting_pads():
    _, after, _ = apply(pad_model([0, 0, 1, 1, 0, 0, 1, 1], "AveragePool", count_include_pad=1), fold_pad)
    assert ops(after) == ["AveragePool"] and after.node("target").attrs["pads"] == [1, 1, 1, 1]


def test_minus_inf_pad_folds_into_max_pool():
    _, after, _ = apply(pad_model([0, 0, 1, 2, 0, 0, 1, 0], "MaxPool", value=-np.inf), fold_pad)
    assert ops(after) == ["MaxPool"] and after.node("target").attrs["pads"] == [1, 2, 1, 0]


@pytest.mark.parametrize("case", [
    dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], consumer="MaxPool"),                      # zero pad: needs x >= 0
    dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], consumer="AveragePool"),                  # count_include_pad=0
    dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], consumer="AveragePool", count_include_pad=1, ceil_mode=1),
    dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], consumer="Conv", value=1.0),
    dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], consumer="Conv", mode="reflect"),
    dict(pads=[0, 1, 1, 1, 0, 0, 1, 1], consumer="AveragePool", count_include_pad=1),  # channel pad
    dict(pads=[0, 0, -1, 1, 0, 0, 1, 1], consumer="Conv"),                        # crop
    dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], consumer="Conv", extra_out=True),         # Pad output is graph output
])
def test_illegal_folds_are_left_alone(case):
    case = dict(case)
    _, after, msgs = apply(pad_model(case.pop("pads"), case.pop("consumer"), **case), fold_pad)
    assert "Pad" in ops(after) and msgs == []


def test_minus_inf_pad_as_wide_as_the_window_is_left_alone():
    g = import_onnx(pad_model([0, 0, 3, 0, 0, 0, 0, 0], "MaxPool", value=-np.inf))
    assert fold_pad.run(g, PassOptions()) == [] and "Pad" in ops(g)   # (outputs have -inf rows)


def test_pad_with_two_consumers_is_left_alone():
    rng = np.random.default_rng(1)
    m = model([helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
               helper.make_node("Conv", ["p", "w"], ["y"]), helper.make_node("Relu", ["p"], ["r"])],
              {"x": X}, ["y", "r"], {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                                     "w": rand(rng, 3, 2, 3, 3)})
    _, after, _ = apply(m, fold_pad)
    assert "Pad" in ops(after)
