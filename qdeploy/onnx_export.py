"""Export a float :class:`~qdeploy.ir.Graph` back to ONNX.

Used to check every pass on onnxruntime (the float semantics must not change),
to run the float model in the calibrator, and for debugging. Pass annotations
become the float ops they stand for: a fused clamp (``q_clamp``) becomes a
``Clip`` after its producer, ``SiLU`` becomes ``Sigmoid`` + ``Mul``; LUT and
leaky-shift marks are quantization hints and export as the float op itself.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .ir import Graph, Node

# a graph exported for onnxruntime: ONNX IR version 8 is read by every onnxruntime >= 1.14
IR_VERSION = 8


def export_onnx(g: Graph, expose: list[str] | tuple[str, ...] = ()) -> onnx.ModelProto:
    """The graph as an ONNX model (at the graph's opset); ``expose`` adds
    intermediate tensors as extra graph outputs (for calibration/debugging)."""
    ex = _Exporter(g)
    for n in g.nodes:
        ex.node(n)
    inputs = [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(np.dtype(g.tensor(i).dtype)),
                                            g.shape(i)) for i in g.inputs]
    outs = []
    for o in list(g.outputs) + [e for e in expose if e not in g.outputs]:
        t = g.tensor(o)
        outs.append(helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)), t.shape))
    graph = helper.make_graph(ex.nodes, g.name, inputs, outs, initializer=ex.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)],
                              producer_name="qdeploy")
    model.ir_version = IR_VERSION
    return model


def export_bytes(g: Graph, expose=()) -> bytes:
    return export_onnx(g, expose).SerializeToString()


class _Exporter:
    def __init__(self, g: Graph):
        self.g = g
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.done: set[str] = set()
        self.count = 0

    def const(self, value, base: str, dtype=None) -> str:
        """A new initializer (for attributes that ONNX wants as inputs)."""
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}__qd{self.count}"

    def use(self, names: list[str]) -> list[str]:
        for nm in names:
            t = self.g.tensors.get(nm)
            if nm and t is not None and t.is_const and nm not in self.done:
                self.initializers.append(numpy_helper.from_array(t.data, nm))
                self.done.add(nm)
        return names

    def emit(self, op, inputs, outputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))

    def node(self, n: Node) -> None:
        attrs = {k: v for k, v in n.attrs.items() if not k.startswith(("q_", "_"))}
        outputs = list(n.outputs)
        clamp = n.attrs.get("q_clamp")
        if clamp is not None:
            final = outputs[0]
            outputs[0] = self.fresh(final)
        inputs = self.use(list(n.inputs))
        fn = getattr(self, "op_" + n.op, None)
        if fn is not None:
            fn(n, inputs, outputs, attrs)
        else:
            self.emit(n.op, inputs, outputs, n.name, **attrs)
        if clamp is not None:
            lo, hi = clamp
            ins = [outputs[0], self.const(np.float32(lo), "clip_min") if np.isfinite(lo) else "",
                   self.const(np.float32(hi), "clip_max") if np.isfinite(hi) else ""]
            while ins and ins[-1] == "":
                ins.pop()
            self.emit("Clip", ins, [final], n.name + "_clamp")

    # ---- ops whose IR form differs from ONNX ------------------------------
    def op_Reshape(self, n, inputs, outputs, attrs):
        self.emit("Reshape", [inputs[0], self.const(np.array(attrs["shape"], np.int64), "shape")],
                  outputs, n.name)

    def op_Clip(self, n, inputs, outputs, attrs):
        lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
        ins = [inputs[0], self.const(np.float32(lo), "min") if np.isfinite(lo) else "",
               self.const(np.float32(hi), "max") if np.isfinite(hi) else ""]
        while ins[-1] == "":
            ins.pop()
        self.emit("Clip", ins, outputs, n.name)

    def op_Pad(self, n, inputs, outputs, attrs):
        self.emit("Pad", [inputs[0], self.const(np.array(attrs["pads"], np.int64), "pads"),
                          self.const(np.float32(attrs.get("value", 0.0)), "value")],
                  outputs, n.name, mode=attrs.get("mode", "constant"))

    def op_Slice(self, n, inputs, outputs, attrs):
        ins = [inputs[0]] + [self.const(np.array(attrs[k], np.int64), k)
                             for k in ("starts", "ends", "axes", "steps")]
        self.emit("Slice", ins, outputs, n.name)

    def op_Split(self, n, inputs, outputs, attrs):
        split = np.array(attrs["split"], np.int64)
        if self.g.opset >= 13:
            self.emit("Split", [inputs[0], self.const(split, "split")], outputs, n.name, axis=attrs["axis"])
        else:
            self.emit("Split", inputs[:1], outputs, n.name, axis=attrs["axis"], split=list(split))

    def op_Resize(self, n, inputs, outputs, attrs):
        a = {k: v for k, v in attrs.items() if k != "sizes"}
        sizes = self.const(np.array(attrs["sizes"], np.int64), "sizes")
        roi = self.const(np.zeros(0, np.float32), "roi")
        scales = self.const(np.zeros(0, np.float32), "scales")
        self.emit("Resize", [inputs[0], roi, scales, sizes], outputs, n.name, **a)

    def op_ReduceMean(self, n, inputs, outputs, attrs):
        if self.g.opset >= 18:
            self.emit("ReduceMean", [inputs[0], self.const(np.array(attrs["axes"], np.int64), "axes")],
                      outputs, n.name, keepdims=attrs.get("keepdims", 1))
        else:
            self.emit("ReduceMean", inputs, outputs, n.name, axes=list(attrs["axes"]),
                      keepdims=attrs.get("keepdims", 1))

    def op_SiLU(self, n, inputs, outputs, attrs):
        sig = self.fresh(n.name + "_sigmoid")
        self.emit("Sigmoid", inputs[:1], [sig], n.name + "_sigmoid")
        self.emit("Mul", [inputs[0], sig], outputs, n.name)

    def op_HardSwish(self, n, inputs, outputs, attrs):
        if self.g.opset >= 14:
            self.emit("HardSwish", inputs, outputs, n.name)
            return
        hs = self.fresh(n.name + "_hsig")
        self.emit("HardSigmoid", inputs[:1], [hs], n.name + "_hsig", alpha=1.0 / 6, beta=0.5)
        self.emit("Mul", [inputs[0], hs], outputs, n.name)

    def op_Gemm(self, n, inputs, outputs, attrs):
        self.emit("Gemm", inputs, outputs, n.name, transB=1)
