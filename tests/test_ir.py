"""The IR's edit helpers (topological order, bypass, unused removal, copy)."""
import numpy as np
import pytest

from qdeploy.ir import Graph, Node, Tensor


def chain() -> Graph:
    t = {n: Tensor(n, (1, 4)) for n in ("x", "a", "b", "y")}
    t["w"] = Tensor("w", (4,), data=np.ones(4, np.float32))
    nodes = [Node("Relu", "r2", ["b"], ["y"]), Node("Add", "add", ["x", "w"], ["a"]),
             Node("Identity", "id", ["a"], ["b"])]
    return Graph(nodes, t, ["x"], ["y"])


def test_toposort_is_stable_and_detects_cycles():
    g = chain()
    g.toposort()
    assert [n.name for n in g.nodes] == ["add", "id", "r2"]
    g.nodes.append(Node("Relu", "loop", ["z"], ["z"]))
    g.tensors["z"] = Tensor("z", (1, 4))
    with pytest.raises(ValueError, match="'loop'"):
        g.toposort()


def test_bypass_keeps_graph_output_names():
    g = chain()
    g.toposort()
    g.bypass(g.node("id"))
    assert g.node("r2").inputs == ["a"] and "b" not in g.tensors
    g.bypass(g.node("r2"))   # its output is the graph output: the producer is renamed instead
    assert g.outputs == ["y"] and g.node("add").outputs == ["y"] and "a" not in g.tensors


def test_remove_unused_and_independent_copy():
    g = chain()
    g.nodes.append(Node("Relu", "dead", ["x"], ["d"]))
    g.tensors["d"] = Tensor("d", (1, 4))
    g.tensors["unused"] = Tensor("unused", (2,), data=np.zeros(2, np.float32))
    h = g.copy()
    h.remove_unused()
    assert "dead" not in [n.name for n in h.nodes] and "unused" not in h.tensors
    assert "dead" in [n.name for n in g.nodes] and "unused" in g.tensors
    h.node("add").attrs["q_clamp"] = (0.0, 6.0)
    assert "q_clamp" not in g.node("add").attrs
