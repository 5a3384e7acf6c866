"""``qdeploy run OUT --backend B --input X.npy -o Y.npy`` (:func:`qdeploy.pipeline.run_artifact`).

``--input``: an .npy (single-input models) or an .npz of arrays named after the
model's inputs; N samples along the first axis, the model's own layout.
``-o``: an .npy for a single-output model, an .npz (arrays named after the
outputs) for any model. Every check (backend, OUT, output suffix and count,
input shapes) happens before anything runs; the output file is written
atomically and only on success.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import click
import numpy as np

from ..calibration.sources import require_float
from ..errors import QDeployError
from ..fsutil import npz_bytes, write_bytes
from ..pipeline import BACKENDS, read_manifest, run_artifact


@click.command("run")
@click.argument("out")
@click.option("--backend", "-b", default="ref", show_default=True,
              help=f"One of {', '.join(BACKENDS)} (float: the float model on onnxruntime; "
                   "ref: the integer reference interpreter; the others run an emitted artefact).")
@click.option("--input", "-i", "input_path", required=True,
              help="Inputs: .npy (N samples along the first axis, the model's own layout) or .npz by input name.")
@click.option("-o", "--output", "output_path", required=True,
              help="Outputs: .npy for one output, .npz (by output name) for several.")
def run(out, backend, input_path, output_path):
    """Run an artefact of a quantize OUT folder on a batch of inputs."""
    if backend not in BACKENDS:
        raise QDeployError(f"unknown backend '{backend}'; this qdeploy runs: {', '.join(BACKENDS)}")
    manifest = read_manifest(out)
    outputs = [o["name"] for o in manifest["outputs"]]
    dst = Path(output_path)
    if dst.suffix not in (".npy", ".npz"):
        raise QDeployError(f"-o {dst}: give an .npy (one output) or .npz path")
    if dst.suffix == ".npy" and len(outputs) != 1:
        raise QDeployError(f"-o {dst}: the model has {len(outputs)} outputs ({', '.join(outputs)}); "
                           "give an .npz path")
    if dst.is_dir():
        raise QDeployError(f"-o {dst}: is a folder; give a file path")
    if dst.is_file() and Path(input_path).is_file() and os.path.samefile(dst, input_path):
        raise QDeployError(f"-o {dst}: is the --input file, which qdeploy only reads; give another output path")
    res = run_artifact(out, backend, load_inputs(input_path, [i["name"] for i in manifest["inputs"]]))
    if dst.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, next(iter(res.values())), allow_pickle=False)
        data = buf.getvalue()
    else:
        data = npz_bytes(res)
    try:
        write_bytes(dst, data)
    except OSError as e:
        raise QDeployError(f"-o {dst}: cannot write ({e.strerror or e})") from None


def load_inputs(path, names=None) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy array or an .npz's arrays by name; the ones the model reads (``names``, or
    an .npz's only array) must be floats (:func:`~qdeploy.calibration.sources.require_float`)."""
    p = Path(path)
    if p.suffix not in (".npy", ".npz"):
        raise QDeployError(f"--input {p}: give an .npy or .npz array file")
    if not p.is_file():
        raise QDeployError(f"--input {p}: no such file; give an .npy or .npz array file")
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
        else:
            arrays = {None: loaded}
    except Exception as e:
        raise QDeployError(f"--input {p}: not a readable .npy/.npz ({type(e).__name__})") from None
    for k, a in arrays.items():
        if k is None or len(arrays) == 1 or k in (names or ()):
            require_float(a, f"--input {p}" + (f" array '{k}'" if k is not None else ""))
    return arrays[None] if None in arrays else arrays
