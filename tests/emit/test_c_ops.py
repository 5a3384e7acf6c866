"""One-op models through the C bundle, judged against the reference interpreter: every
op the runtime has a kernel for (the QDQ emitter's cases of tests/emit/qdq_oneop.py plus
geometry variants: asymmetric pads, depth multiplier, grouped transposed convolution,
3-input Maximum, reflect padding, align_corners, DCR depth-to-space, softmax over
channels, strided slices), on the arm and fpga arithmetic. Built with gcc under
AddressSanitizer + UndefinedBehaviorSanitizer in an exactly sized arena between canaries."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.emit import c_bundle
from tests.emit.qdq_oneop import CASES, _conv, _conv_transpose, _unary, build_case
from tests.quant.oneop import pipeline


def _max3(rng):
    return [helper.make_node("Max", ["x", "b", "c"], ["y"])], \
        {"x": (1, 4, 6, 6), "b": (1, 4, 1, 6), "c": (1, 1, 6, 6)}, {}


def _resize_sizes(mode, sizes, **attrs):
    return lambda rng: ([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, **attrs)],
                        {"x": (1, 4, 6, 6)}, {"sizes": np.array(sizes, np.int64)})


def _slice_steps(rng):
    consts = {"st": np.array([0, 1, 7], np.int64), "en": np.array([4, 7, 0], np.int64),
              "ax": np.array([1, 2, 3], np.int64), "sp": np.array([2, 2, -3], np.int64)}
    return [helper.make_node("Slice", ["x"] + list(consts), ["y"])], {"x": (1, 4, 8, 8)}, consts


def _pad_reflect(rng):
    p = {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}
    return [helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")], {"x": (1, 4, 8, 8)}, p


EXTRA = {
    "conv_asymmetric": (lambda r: _conv(r, strides=[2, 1], pads=[0, 1, 2, 1]), None, 13),
    "conv_5x5_dilated_grouped": (lambda r: _conv(r, cin=4, cout=8, k=3, group=2, dilations=[1, 2],
                                                 pads=[1, 2, 1, 2]), None, 13),
    "depthwise_multiplier": (lambda r: _conv(r, cin=4, cout=8, group=4, pads=[1, 1, 1, 1]), None, 13),
    "conv_transpose_grouped": (lambda r: _conv_transpose(r, group=2), None, 13),
    "max3": (_max3, None, 13),
    "pad_reflect": (_pad_reflect, None, 13),
    "resize_linear_align": (_resize_sizes("linear", [1, 4, 11, 9], coordinate_transformation_mode="align_corners"),
                            None, 13),
    "resize_nearest_odd": (_resize_sizes("nearest", [1, 4, 9, 10], coordinate_transformation_mode="half_pixel",
                                         nearest_mode="round_prefer_ceil"), None, 13),
    "depth_to_space_dcr": (_unary("DepthToSpace", blocksize=2, mode="DCR"), None, 13),
    "softmax_channels": (_unary("Softmax", shape=(1, 6, 3, 3), axis=1), None, 13),
    "slice_steps": (_slice_steps, None, 13),
}
ALL = {**CASES, **EXTRA}
FPGA_REFUSED = {"softmax", "softmax_channels"}   # the fpga target runs softmax on the host
PAIRS = [(c, t) for c in ALL for t in ("arm", "fpga") if not (t == "fpga" and c in FPGA_REFUSED)]


@pytest.fixture(autouse=True)
def _extra_cases(monkeypatch):
    monkeypatch.setattr("tests.emit.qdq_oneop.CASES", ALL)


@pytest.mark.parametrize("case, target", PAIRS)
def test_one_op_bit_exact(case, target, tmp_path):
    m, x, _ = build_case(case)
    _, qg = pipeline(m, x, target)
    c_bundle.write(qg, target, tmp_path)
    exe = c_bundle.compile_harness(tmp_path / "c", "gcc", ["-O1", "-g", *c_bundle.SANITIZE], tmp_path / "h")
    want = c_bundle.reference_blocks(qg, x)
    got = c_bundle.run_harness(exe, c_bundle.int8_blocks(qg, x), want.shape[1])
    np.testing.assert_array_equal(got, want, err_msg=f"{case} ({target}): {[n.op for n in qg.nodes]}")
