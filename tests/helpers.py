"""Shared test helpers (import as ``from tests.helpers import ...``)."""
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def realmodels_dir() -> Path | None:
    """Where ../shared/realmodels/get.sh put the real models (None: unavailable)."""
    for cand in (os.environ.get("QDEPLOY_REALMODELS"), ROOT / ".cache" / "realmodels",
                 ROOT.parent / "realmodels"):
        if cand and (Path(cand) / "ppocr_v5_cls.onnx").is_file():
            return Path(cand)
    return None


def assert_float_equal(before, after, seed=0, inputs=None, rtol_range=1e-4):
    """The two float graphs give the same outputs on onnxruntime (atol relative
    to each output's range)."""
    from qdeploy.float_run import run_float, random_inputs
    x = inputs if inputs is not None else random_inputs(before, seed)
    a, b = run_float(before, x), run_float(after, x)
    assert list(before.outputs) == list(after.outputs)
    for name in before.outputs:
        rng = float(np.abs(a[name]).max()) + 1e-6
        np.testing.assert_allclose(b[name], a[name], atol=rtol_range * rng, rtol=0,
                                   err_msg=f"output {name}")


def model(nodes: list[onnx.NodeProto], inputs: dict, outputs: list[str] | dict,
          inits: dict | None = None, opset: int = 13, name: str = "t") -> onnx.ModelProto:
    """A float32 ONNX model of ``nodes``: ``inputs`` by name -> shape,
    ``outputs`` names (shapes left to the importer's inference) or name ->
    shape, ``inits`` name -> array."""
    if not isinstance(outputs, dict):
        outputs = dict.fromkeys(outputs)
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, v) for k, v in outputs.items()],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7 if opset < 15 else 8
    return m


def bench_module(name: str):
    """bench/``name``.py imported as a module (bench/ on sys.path for its own imports),
    for the tests of the bench scripts' helpers."""
    import importlib.util
    import sys
    bench = ROOT / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", bench / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
