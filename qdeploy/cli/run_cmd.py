"""``qdeploy run OUT --backend B --input X.npy -o Y.npy``."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import QDeployError
from ..fsutil import npz_bytes, write_bytes
from ..pipeline import BACKENDS, run_artifact


@click.command("run")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--backend", "-b", type=click.Choice(BACKENDS), default="ref", show_default=True,
              help="float: the float model on onnxruntime; ref: the integer reference interpreter.")
@click.option("--input", "-i", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Inputs: .npy (N samples along the first axis, the model's own layout) or .npz by input name.")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="Outputs: .npy for one output, .npz (by output name) for several.")
def run(out, backend, input_path, output_path):
    """Run an artefact of a quantize OUT folder on a batch of inputs."""
    p = Path(input_path)
    if not p.is_file():
        raise QDeployError(f"--input {p}: no such file; give an .npy or .npz array file")
    try:
        loaded = np.load(p, allow_pickle=False)
        x = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    except Exception as e:
        raise QDeployError(f"--input {p}: not a readable .npy/.npz ({type(e).__name__})") from None
    res = run_artifact(out, backend, x)
    o = Path(output_path)
    if o.suffix == ".npy":
        if len(res) != 1:
            raise QDeployError(f"the model has {len(res)} outputs; give -o an .npz path")
        buf = __import__("io").BytesIO()
        np.save(buf, next(iter(res.values())), allow_pickle=False)
        write_bytes(o, buf.getvalue())
    elif o.suffix == ".npz":
        write_bytes(o, npz_bytes(res))
    else:
        raise QDeployError(f"-o {o}: give an .npy (one output) or .npz path")
