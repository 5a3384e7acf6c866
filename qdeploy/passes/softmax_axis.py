"""Softmax over any axis becomes a last-axis Softmax between two layout moves.

Every int8 kernel qdeploy targets (TFLite SOFTMAX, CMSIS-NN, the C bundle, the
reference interpreter) normalises over the innermost axis only, so a Softmax
over axis ``k`` of a rank-``r`` tensor (YOLOv8's DFL head: axis 1 of
``[1, 4, 16, N]``) is rewritten as

    Transpose(perm) -> Softmax(axis = r - 1) -> Transpose(perm)

with ``perm`` swapping axes ``k`` and ``r - 1`` (its own inverse), as the
TFLite converters do. When every axis after ``k`` has size 1 the move is a
``Reshape`` (the memory order does not change). Both moves are exact in float
and in int8 (their output parameters are tied to the input), so the float
graph computes the same values and every emitter only ever sees last-axis
softmax. The outer Transpose keeps the Softmax's output name (graph outputs
keep their names). Softmax over axis 0 (the batch) is left alone: the
quantizer refuses it.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Tensor

NAME = "softmax_axis"


def run(g: Graph, opts=None) -> list[str]:
    msgs = []
    for n in [n for n in g.nodes if n.op == "Softmax"]:
        shape = tuple(g.shape(n.inputs[0]))
        r = len(shape)
        k = int(n.attrs.get("axis", -1)) % r
        if k == r - 1 or k == 0:
            continue
        perm = list(range(r))
        perm[k], perm[-1] = perm[-1], perm[k]
        moved = tuple(shape[p] for p in perm)
        x, y = n.inputs[0], n.outputs[0]
        dtype = g.tensor(y).dtype
        a, b = g.unique_name(f"{n.name}_last_in"), g.unique_name(f"{n.name}_last_out")
        g.tensors[a] = Tensor(a, moved, dtype)
        g.tensors[b] = Tensor(b, moved, dtype)
        if int(np.prod(shape[k + 1:])) == 1:
            how = "Reshape"
            pre = Node("Reshape", g.unique_name(f"{n.name}_to_last"), [x], [a], {"shape": moved})
            post = Node("Reshape", g.unique_name(f"{n.name}_from_last"), [b], [y], {"shape": shape})
        else:
            how = f"Transpose perm {perm}"
            pre = Node("Transpose", g.unique_name(f"{n.name}_to_last"), [x], [a], {"perm": list(perm)})
            post = Node("Transpose", g.unique_name(f"{n.name}_from_last"), [b], [y], {"perm": list(perm)})
        n.inputs, n.outputs, n.attrs = [a], [b], {**n.attrs, "axis": r - 1}
        i = g.nodes.index(n)
        g.nodes[i:i + 1] = [pre, n, post]
        msgs.append(f"Softmax '{n.name}' over axis {k} of {list(shape)} -> last-axis softmax "
                    f"between two moves ({how})")
    return msgs
