"""How far onnxruntime's execution of the QDQ model is from the reference
interpreter, in output LSB: end to end, and per op.

Per op ("forced"): every node of the QDQ model reads the *reference's*
integer inputs (each activation a QDQ node reads becomes a graph input fed
with the interpreter's integers), so each op's difference is its own
requantisation difference, not an upstream difference amplified by the
following layers. onnxruntime still runs its fused int8 kernels (a DQ from a
graph input fuses like any other).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quant.qgraph import on_grid, output_grids


@dataclass
class Diff:
    """|onnxruntime - reference| in LSB of one int tensor."""
    name: str
    op: str
    count: int
    exact: int          # elements equal
    within1: int        # elements within 1 LSB
    max: int

    @property
    def frac_exact(self) -> float:
        return self.exact / max(self.count, 1)

    @property
    def frac_within1(self) -> float:
        return self.within1 / max(self.count, 1)

    def line(self) -> str:
        return (f"{self.name} ({self.op}): {self.within1}/{self.count} = {100 * self.frac_within1:.3f} % within "
                f"1 LSB, {100 * self.frac_exact:.3f} % exact, max {self.max} LSB")


def diff(name: str, op: str, a, b) -> Diff:
    d = np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64))
    return Diff(name, op, int(d.size), int(np.sum(d == 0)), int(np.sum(d <= 1)), int(d.max(initial=0)))


def end_to_end(qg, got: dict, ref: dict) -> list[Diff]:
    """Per graph output: the float outputs of two backends compared on the output's int grid."""
    grids = output_grids(qg)
    return [diff(o, "output", on_grid(got[o], grids[o]), on_grid(ref[o], grids[o])) for o in qg.outputs]


def forced_model(qg, model):
    """A copy of the QDQ ModelProto whose nodes read the reference's integers:
    every non-constant int tensor read by a node becomes the graph input
    ``<name>__ref``; every int tensor a QGraph node writes is a graph output
    (if the model has it: a Requantize that QLinearConcat does itself is not
    emitted, the Concat's output then covers it)."""
    import onnx
    from onnx import helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    ints = {n.outputs[k] for n in qg.nodes for k in range(len(n.outputs))
            if qg.tensors[n.outputs[k]].dtype in ("int8", "uint8")}
    fed = []
    for node in m.graph.node:
        for k, i in enumerate(node.input):
            if i in ints:
                node.input[k] = i + "__ref"
                if i not in fed:
                    fed.append(i)
    kind = {"int8": onnx.TensorProto.INT8, "uint8": onnx.TensorProto.UINT8}
    for i in fed:
        m.graph.input.append(helper.make_tensor_value_info(i + "__ref", kind[qg.tensors[i].dtype],
                                                           list(qg.tensors[i].shape)))
    made = {o for node in m.graph.node for o in node.output}
    for n in qg.nodes:
        for o in n.outputs:
            if o in ints and o in made:
                m.graph.output.append(helper.make_tensor_value_info(o, kind[qg.tensors[o].dtype], None))
    return m, fed


def per_op(qg, model, inputs: dict[str, np.ndarray]) -> list[Diff]:
    """Each QGraph node's int output from onnxruntime, fed the reference's int
    inputs, against the reference (N samples, one session run each)."""
    from ..quant.interpreter import run
    from .qdq import session
    m, fed = forced_model(qg, model)
    sess = session(m.SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    ref = run(qg, inputs, keep=True)
    n = len(next(iter(inputs.values())))
    got: dict[str, list] = {k: [] for k in names}
    for s in range(n):
        feed = {k: np.ascontiguousarray(v[s:s + 1], np.float32) for k, v in inputs.items()}
        feed.update({i + "__ref": ref[i][s:s + 1] for i in fed})
        for k, v in zip(names, sess.run(names, feed)):
            got[k].append(v)
    res = []
    for node in qg.nodes:
        for o in node.outputs:
            if o in got and o not in qg.outputs:
                res.append(diff(o, node.op, np.concatenate(got[o]), ref[o]))
    return res


def optimized_ops(model: bytes, path) -> dict[str, int]:
    """Op counts of onnxruntime's optimized graph of a QDQ model (default
    optimisations; written to ``path`` through SessionOptions.optimized_model_filepath)."""
    import onnx
    from .qdq import session
    session(model, optimized_path=path)
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
