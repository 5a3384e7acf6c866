"""Graph passes: one module per pass, run in one ordered pipeline.

Every pass module defines ``NAME`` (its name in logs and in ``qdeploy inspect``),
a docstring saying what it does, and ``run(graph, opts) -> list[str]`` which
edits the graph in place and returns one message per change it made (empty
when nothing applied). Passes never change the float semantics of the graph:
``tests/passes/`` runs onnxruntime on the exported graph before and after.

Order matters: constant Add/Sub/Mul/Div folding runs right after BatchNorm
folding and before clamp fusion (a conv with a fused clamp no longer takes an
affine map), activation recognition runs before clamp fusion (a decomposed
h-swish contains a Clip(0, 6) that must not be fused away first), and the
shortcut check runs last, on the graph that will be quantized. ``softmax_axis``
makes every Softmax a last-axis one (the only form the int8 kernels have).

``fold_gap`` is a pass module outside ``PIPELINE``: it trades weight memory and
MACs for precision, so ``qdeploy quantize --fold-gap`` runs it on request.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import QDeployError
from ..ir import Graph
from . import (fold_bn, fold_affine, fold_pad, recognize_activation, fuse_activation, leaky_shift, shortcut_check,
               softmax_axis)

PIPELINE = [fold_bn, fold_affine, fold_pad, recognize_activation, fuse_activation, leaky_shift, softmax_axis,
            shortcut_check]


@dataclass(frozen=True)
class PassOptions:
    # bits of the leaky-ReLU integer multiplier (alpha ~= m / 2**shift with m < 2**bits)
    leaky_bits: int = 8


def run_passes(g: Graph, opts: PassOptions | None = None, only: list[str] | None = None,
               copy: bool = True) -> Graph:
    """Run the pipeline (or the passes named in ``only``, in pipeline order);
    every change is appended to ``graph.log`` as ``(pass name, message)``."""
    opts = opts or PassOptions()
    g = g.copy() if copy else g
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # checked below instead
        for p in PIPELINE:
            if only is not None and p.NAME not in only:
                continue
            for msg in p.run(g, opts):
                g.log.append((p.NAME, msg))
    _check_finite(g)
    return g


def _check_finite(g: Graph) -> None:
    """A fold can overflow float32 (huge scales in a hostile or broken model):
    refuse the NaN/Inf constant it made instead of quantizing it."""
    for name, t in g.tensors.items():
        v = t.data
        if v is not None and v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            readers = [n for n in g.nodes if name in n.inputs]
            at = f" of node '{readers[0].name}' ({readers[0].op})" if readers else ""
            raise QDeployError(f"model '{g.name}': constant '{name}'{at} became NaN/Inf when the passes "
                               "folded it (float32 overflow: the model's weights or attributes are too "
                               "large); check the model")


def pass_names() -> list[str]:
    return [p.NAME for p in PIPELINE]
