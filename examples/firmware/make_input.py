"""Float samples -> input.bin for the firmware: quantized with the bundle's input
scale and zero point (exactly as `qdeploy run --backend ref` does) and stored in
the bundle's layout (NHWC), one sample after the other.

    python3 make_input.py OUT SAMPLES.npz|.npy [--count N] [-o input.bin]

OUT is the folder `qdeploy quantize` wrote; SAMPLES holds N x (the model's input
shape) floats in the model's own layout (an .npz: its array named like the model
input, or 'x', or its only array)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qdeploy.emit.c.host import int8_inputs
from qdeploy.pipeline import QGRAPH
from qdeploy.quant.qgraph import load_qgraph


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("samples", type=Path)
    ap.add_argument("--count", type=int, default=None, help="the first N samples only")
    ap.add_argument("-o", "--output", type=Path, default=Path("input.bin"))
    args = ap.parse_args()
    qg = load_qgraph(args.out / QGRAPH)
    data = np.load(args.samples)
    if isinstance(data, np.lib.npyio.NpzFile):
        name = qg.inputs[0]
        data = data[name if name in data.files else "x" if "x" in data.files else data.files[0]]
    x = np.asarray(data, np.float32)[:args.count]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(int8_inputs(qg, {qg.inputs[0]: x}).tobytes())
    print(f"{args.output}: {len(x)} sample(s) of {qg.inputs[0]}")


if __name__ == "__main__":
    main()
