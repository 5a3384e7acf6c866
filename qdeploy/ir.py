"""Graph IR: the small, explicit graph every stage after the importer reads.

A :class:`Graph` holds :class:`Tensor` records (name, shape, dtype and, for
constants, the numpy value) and :class:`Node` records in topological order.
Ops keep their ONNX names and ONNX attribute conventions (NCHW layout) with a
few normalisations done once by the importer (see ``qdeploy/onnx_import.py``):

* ``Gemm`` is the one fully-connected form: ``Y = X @ W.T + B`` with ``X`` 2-D,
  ``W`` constant ``[M, K]`` and ``B`` constant ``[M]``; no alpha/beta/trans.
* ``Reshape`` carries its static target shape as attribute ``shape``
  (Flatten, Squeeze and Unsqueeze become Reshape).
* ``Clip`` carries ``min``/``max`` attributes; ``Pad``, ``Slice``, ``Split``,
  ``Resize`` and ``ReduceMean`` carry their (constant) parameters as
  attributes too, so no node has a shape-like constant input.
* ``Conv``, ``MaxPool`` and ``AveragePool`` carry explicit ``pads`` (their
  ``auto_pad`` is resolved from the static shapes); ``ConvTranspose`` carries
  explicit ``pads`` and ``output_padding`` (no ``auto_pad``/``output_shape``).
* string attributes are ``str`` (never ``bytes``).
* optional inputs that are absent are ``""``.

Passes annotate nodes through ``attrs`` with keys that start with ``q_``:
``q_clamp`` (a fused activation's float clamp range ``(lo, hi)``),
``q_act`` (the fused activation's name), ``q_lut`` (the node is lowered to a
256-entry lookup table when quantized), ``q_leaky`` (integer multiplier/shift
of a LeakyRelu). Exporting back to ONNX turns them into the equivalent float
ops, so the float semantics can always be checked on onnxruntime.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.outputs[0]


@dataclass
class Graph:
    nodes: list[Node]
    tensors: dict[str, Tensor]
    inputs: list[str]
    outputs: list[str]
    name: str = "model"
    opset: int = 17
    # what the importer and the passes did, in order: (stage, message)
    log: list[tuple[str, str]] = field(default_factory=list)
    # analysis records attached by passes (e.g. shortcut merges), by kind
    records: dict[str, list[dict]] = field(default_factory=dict)

    # ---- look-ups -------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def const(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else t.data

    def producer(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def is_graph_output(self, name: str) -> bool:
        return name in self.outputs

    def activations(self) -> list[str]:
        """Names of the non-constant tensors, graph inputs first, in order."""
        seen = list(self.inputs)
        for n in self.nodes:
            seen += [o for o in n.outputs if o]
        return [s for s in seen if not self.tensors[s].is_const]

    # ---- edits ------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        taken = set(self.tensors) | {n.name for n in self.nodes}
        if base not in taken:
            return base
        for i in itertools.count(1):
            if f"{base}_{i}" not in taken:
                return f"{base}_{i}"
        raise AssertionError

    def add_const(self, base: str, value: np.ndarray) -> str:
        name = self.unique_name(base)
        value = np.ascontiguousarray(value)
        self.tensors[name] = Tensor(name, tuple(value.shape), str(value.dtype), value)
        return name

    def merged(self, node: str, into: str) -> None:
        """Note that a pass folded node ``node`` into node ``into`` (``records["merged"]``:
        how a name of the user's model finds the node that now computes it)."""
        self.records.setdefault("merged", []).append({"node": node, "into": into})

    def rename_uses(self, old: str, new: str) -> None:
        """Every consumer (and graph output) of tensor ``old`` reads ``new``."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def bypass(self, node: Node, keep: str | None = None) -> None:
        """Remove a one-in/one-out node, wiring its consumers to its input.

        When the node's output is a graph output, the producer of the input is
        renamed instead so that graph output names never change.
        """
        src = keep if keep is not None else node.inputs[0]
        out = node.outputs[0]
        self.nodes.remove(node)
        if out in self.outputs and src not in self.inputs and not self.tensors[src].is_const \
                and src not in self.outputs:
            prod = self.producer(src)
            prod.outputs = [out if o == src else o for o in prod.outputs]
            self.rename_uses(src, out)
            self.tensors.pop(src, None)
        else:
            self.rename_uses(out, src)
            self.tensors.pop(out, None)

    def remove_unused(self) -> None:
        """Drop nodes whose outputs nobody reads and constants nobody uses."""
        changed = True
        while changed:
            used = set(self.outputs) | {i for n in self.nodes for i in n.inputs}
            keep = [n for n in self.nodes if any(o in used for o in n.outputs)]
            changed = len(keep) != len(self.nodes)
            self.nodes = keep
        used = set(self.outputs) | set(self.inputs) | {i for n in self.nodes for i in n.inputs}
        used |= {o for n in self.nodes for o in n.outputs}
        self.tensors = {k: v for k, v in self.tensors.items() if k in used}

    def toposort(self) -> None:
        """Order nodes topologically (stable); raises ValueError on a cycle."""
        ready = set(self.inputs) | {k for k, t in self.tensors.items() if t.is_const}
        order, stuck = topo_order(self.nodes, ready, lambda n: n.inputs, lambda n: n.outputs)
        if stuck:
            names = ", ".join(f"'{n.name}' ({n.op})" for n in stuck[:5])
            raise ValueError(f"graph has a cycle or an input no node produces, at {names}")
        self.nodes = order

    def copy(self) -> "Graph":
        """A copy whose nodes and tensor records can be edited independently
        (constant arrays are shared; passes replace arrays, never mutate them)."""
        return Graph(
            nodes=[dataclasses.replace(n, inputs=list(n.inputs), outputs=list(n.outputs),
                                       attrs=dict(n.attrs)) for n in self.nodes],
            tensors={k: dataclasses.replace(v) for k, v in self.tensors.items()},
            inputs=list(self.inputs), outputs=list(self.outputs), name=self.name,
            opset=self.opset, log=list(self.log), records={k: [dict(r) for r in v] for k, v in self.records.items()})

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def params(self) -> int:
        return int(sum(t.data.size for t in self.tensors.values() if t.is_const))


def topo_order(nodes, ready, inputs_of, outputs_of):
    """Stable topological order of ``nodes`` given the names already
    available (``ready``; ``""`` — an absent optional input — always is).
    Returns ``(ordered, stuck)``: ``stuck`` lists the nodes that can never run
    (a cycle, or an input nobody produces), empty when all could be ordered."""
    ready = set(ready) | {""}
    pending, order = list(nodes), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in inputs_of(n)):
                order.append(n)
                ready.update(outputs_of(n))
            else:
                rest.append(n)
        if len(rest) == len(pending):
            return order, rest
        pending = rest
    return order, []
