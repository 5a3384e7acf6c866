"""The TFLite files on tflite-runtime 2.14 (the interpreter many Raspberry Pi / Coral
users have; it needs numpy < 2, so it runs in the virtual environment that
scripts/test.sh prepares and names in QDEPLOY_TFLITE_RUNTIME_PYTHON, through
tests/emit/tflite_runtime_worker.py): its builtin reference kernels are
bit-exact with the reference interpreter on every corpus model and the awkward
one-op cases; its default resolver (optimized kernels + XNNPACK) is measured."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qdeploy.corpus import CORPUS
from qdeploy.emit.tflite import build
from qdeploy.quant.interpreter import quantize_inputs, run_int
from tests.emit.corpus_qgraphs import corpus_qgraph
from tests.emit.tflite_cases import case_graph

PY = os.environ.get("QDEPLOY_TFLITE_RUNTIME_PYTHON")
if not PY:
    pytest.skip("QDEPLOY_TFLITE_RUNTIME_PYTHON unset (scripts/test.sh prepares the tflite-runtime venv)",
                allow_module_level=True)

WORKER = Path(__file__).with_name("tflite_runtime_worker.py")
CASES = ["conv", "depthwise_same_s2", "grouped", "gemm", "flatten_fc", "add", "mul", "sub", "max", "prelu",
         "avgpool_same_s2", "avgpool", "reduce_mean", "maxpool_pads_odd", "concat", "pad_value", "slice_steps",
         "split", "resize_nearest", "resize_linear", "resize_linear_align", "depth_to_space",
         "space_to_depth", "conv_transpose", "sigmoid", "tanh", "hardswish", "hardsigmoid", "leaky_relu",
         "softmax"]


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def _graphs():
    for name in CORPUS:
        qg = corpus_qgraph(name)
        rng = np.random.default_rng(3)
        yield name, qg, {k: rng.uniform(-1.5, 1.5, (2,) + tuple(qg.tensors[k].shape[1:])).astype(np.float32)
                         for k in qg.inputs}
    for case in CASES:
        qg, x = case_graph(case)
        yield case, qg, x


@pytest.mark.slow
def test_tflite_runtime_reference_kernels_bit_exact(tmp_path):
    feed, want, names = {}, [], []
    for i, (name, qg, x) in enumerate(_graphs()):
        ints = quantize_inputs(qg, x)
        feed[f"blob{i}"] = np.frombuffer(build(qg), np.uint8)
        for k, inp in enumerate(qg.inputs):
            feed[f"in{i}_{k}"] = _nhwc(ints[inp])
        want.append([_nhwc(v) for v in run_int(qg, ints).values()])
        names.append(name)
    np.savez(tmp_path / "in.npz", **feed)
    proc = subprocess.run([PY, str(WORKER), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.load(tmp_path / "out.npz")
    errors = {names[i]: str(got[f"error{i}"]) for i in range(len(names)) if f"error{i}" in got.files}
    assert not errors, errors
    bad = {}
    for i, name in enumerate(names):
        ref = [got[f"ref{i}_{k}"] for k in range(len(want[i]))]
        opt = [got[f"opt{i}_{k}"] for k in range(len(want[i]))]
        miss = sum(int(np.sum(r.astype(np.int64) != w.astype(np.int64))) for r, w in zip(ref, want[i]))
        d = [np.abs(o.astype(np.int64) - w.astype(np.int64)) for o, w in zip(opt, want[i])]
        n = sum(v.size for v in d)
        print(f"{name}: tflite-runtime reference kernels {miss} of {n} elements differ; default resolver "
              f"{sum(int(np.sum(v > 0)) for v in d) / n:.2%} differ, max {max(int(v.max()) for v in d)} LSB")
        if miss:
            bad[name] = miss
    assert not bad, f"tflite-runtime's reference kernels differ from the reference interpreter: {bad}"
