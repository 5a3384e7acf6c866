"""Tiny ONNX graphs for the pass tests, and the before/after check every pass test uses."""
from __future__ import annotations

import numpy as np
import onnx

from qdeploy.ir import Graph
from qdeploy.onnx_import import import_onnx
from qdeploy.passes import PassOptions
from tests.helpers import assert_float_equal


def f32(*vals) -> np.ndarray:
    """A float32 constant: one value -> a scalar, several -> a vector."""
    return np.array(vals[0] if len(vals) == 1 else vals, np.float32)


def rand(rng: np.random.Generator, *shape, lo=-1.0, hi=1.0) -> np.ndarray:
    return rng.uniform(lo, hi, shape).astype(np.float32)


def apply(m: onnx.ModelProto | Graph, pass_module, opts: PassOptions | None = None,
          inputs: dict[str, np.ndarray] | None = None) -> tuple[Graph, Graph, list[str]]:
    """Import (if needed), run one pass on a copy, and check onnxruntime gives the
    same outputs before and after. Returns (before, after, messages)."""
    before = m if isinstance(m, Graph) else import_onnx(m)
    after = before.copy()
    msgs = pass_module.run(after, opts or PassOptions())
    assert_float_equal(before, after, inputs=inputs)
    return before, after, msgs


def ops(g: Graph) -> list[str]:
    return [n.op for n in g.nodes]
