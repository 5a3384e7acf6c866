"""A stand-in artefact for the verification tests: its file is the QGraph again and
its backends run the reference interpreter, exactly or with a chosen error on the
output's int grid (FAKE_LSB), or slowly (FAKE_SLEEP, for the interrupt test)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from qdeploy.emit import ARTEFACTS, Artefact

PATH = "model.fake.qgraph"


def emit(qg, ctx) -> dict[str, bytes]:
    from qdeploy.quant.qgraph import qgraph_bytes
    return {PATH: qgraph_bytes(qg)}


def run(out: Path, inputs: dict, manifest: dict) -> dict:
    from qdeploy.quant.interpreter import run as ref
    from qdeploy.quant.qgraph import load_qgraph
    from qdeploy.quant.qgraph import output_grids
    if os.environ.get("FAKE_SLEEP"):
        Path(os.environ["FAKE_SLEEP"]).write_text("verifying")
        time.sleep(60)
    qg = load_qgraph(Path(out) / PATH)
    y = ref(qg, inputs)
    lsb = int(os.environ.get("FAKE_LSB", "0"))
    if lsb:
        grids = output_grids(qg)
        for o in y:
            flat = y[o].reshape(-1).copy()
            flat[::7] += lsb * grids[o][0]          # every 7th element off by `lsb` steps
            y[o] = flat.reshape(y[o].shape)
    return y


def run_exact(out: Path, inputs: dict, manifest: dict) -> dict:
    from qdeploy.quant.interpreter import run as ref
    from qdeploy.quant.qgraph import load_qgraph
    return ref(load_qgraph(Path(out) / PATH), inputs)


def run_missing(out, inputs, manifest):
    import qdeploy_no_such_runtime  # noqa: F401  (a runtime that is not installed)


ROW = Artefact("fake", PATH, __name__, ("arm", "fpga", "ort"),
               {"fake": f"{__name__}:run", "fake-missing": f"{__name__}:run_missing"}, "a test artefact")


def register(table=ARTEFACTS):
    table["fake"] = ROW
