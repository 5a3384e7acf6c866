"""Activation tables of the ``ort`` profile, computed by onnxruntime itself.

The ``ort`` profile's reference follows what onnxruntime computes (``requant =
"float32"``), and its QDQ model runs a table activation as DequantizeLinear ->
the float ONNX op -> QuantizeLinear (faster there than a Gather on the table:
bench/RESULTS.md "QDQ speed"). onnxruntime's float activations are MLAS
approximations (its logistic is a rational polynomial): where the output scale
is tiny against the function's values they miss the exactly rounded table by a
few LSB (ppocr_v5_det's final Sigmoid calibrated to [0, 1e-5] on photos without
text, when such a degenerate range still got the width 1e-5 (quant/scales.py gives it 1
now): 3 LSB, 1.2e-7 absolute). So the table is taken from onnxruntime: the same
three ops on all 256 inputs, on the session settings the QDQ backend uses
(default graph optimizations, which fuse them into QLinearSigmoid & co. as in
the real model). It describes the onnxruntime build at hand: another build or
CPU with other MLAS kernels may round a tail element differently, which
``qdeploy quantize`` verification would name.
"""
from __future__ import annotations

import numpy as np

# Lut function -> (ONNX op, the attributes it takes from the Lut node)
OPS = {"sigmoid": ("Sigmoid", ()), "tanh": ("Tanh", ()), "hardswish": ("HardSwish", ()),
       "hardsigmoid": ("HardSigmoid", ("alpha", "beta")), "leaky_relu": ("LeakyRelu", ("alpha",))}


def ort_table(func: str, attrs: dict, s_in: float, zp_in: int, s_out: float, zp_out: int,
              dtype) -> np.ndarray | None:
    """The table onnxruntime computes for DQ -> ``func`` -> Q over every input
    integer of ``dtype`` (uint8/int8, index ``q - qmin``), or None when ``func``
    has no single ONNX op."""
    if func not in OPS:
        return None
    import onnx
    from onnx import TensorProto, helper

    from ..ort_session import session
    op, keys = OPS[func]
    dtype = np.dtype(dtype)
    et = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    inits = [helper.make_tensor("si", TensorProto.FLOAT, [], [float(np.float32(s_in))]),
             helper.make_tensor("zi", et, [], [int(zp_in)]),
             helper.make_tensor("so", TensorProto.FLOAT, [], [float(np.float32(s_out))]),
             helper.make_tensor("zo", et, [], [int(zp_out)])]
    nodes = [helper.make_node("DequantizeLinear", ["q", "si", "zi"], ["x"]),
             helper.make_node(op, ["x"], ["y"], **{k: float(attrs[k]) for k in keys}),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["r"])]
    g = helper.make_graph(nodes, "ort_table", [helper.make_tensor_value_info("q", et, [256])],
                          [helper.make_tensor_value_info("r", et, [256])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    info = np.iinfo(dtype)
    q = np.arange(info.min, info.max + 1).astype(dtype)
    return np.asarray(session(m.SerializeToString(), f"the {op} table model").run(None, {"q": q})[0]).astype(dtype)
