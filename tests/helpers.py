"""Shared test helpers (import as ``from tests.helpers import ...``)."""
import os
from pathlib import Path

import numpy as np

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
