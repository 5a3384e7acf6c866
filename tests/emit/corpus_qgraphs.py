"""QGraphs of the corpus models, quick: min/max ranges from onnxruntime on two
seeded random inputs (tests/quant/oneop.py), no calibration set. For tests
that need the graph's structure and integers, not its accuracy."""
from __future__ import annotations

import functools
import warnings

import numpy as np

from qdeploy.corpus import build
from qdeploy.onnx_import import import_onnx
from tests.quant.oneop import pipeline


@functools.lru_cache(maxsize=None)
def corpus_qgraph(name: str, target: str = "arm"):
    m = build(name)
    g = import_onnx(m)
    x = g.inputs[0]
    shape = (2,) + tuple(g.tensors[x].shape[1:])
    samples = {x: np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # per-tensor fpga weights warn; not what these tests check
        return pipeline(m, samples, target)[1]
