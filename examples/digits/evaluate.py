"""Top-1 accuracy of a quantized digits model against its float original.

    python examples/digits/evaluate.py OUT        (OUT from `qdeploy quantize ... -o OUT`)

Runs the held-out split (eval.npz) through every backend available in OUT
with the Python API (`qdeploy.pipeline.run_artifact`, the function behind
`qdeploy run`) and prints top-1 accuracy, agreement with float and SQNR.
"""
import sys
from pathlib import Path

import numpy as np

from qdeploy.pipeline import run_artifact
from qdeploy.quant.error import sqnr_db


def main(out: str) -> None:
    data = np.load(Path(__file__).with_name("eval.npz"))
    x, y = data["x"], data["y"]
    ref = run_artifact(out, "float", x)
    (name,) = ref
    f = ref[name]
    print(f"{'backend':8} {'top-1':>7} {'agree':>7} {'SQNR dB':>8}")
    print(f"{'float':8} {np.mean(f.argmax(1) == y):7.2%} {'':>7} {'':>8}")
    for backend in ("ref",):
        q = run_artifact(out, backend, x)[name]
        print(f"{backend:8} {np.mean(q.argmax(1) == y):7.2%} {np.mean(q.argmax(1) == f.argmax(1)):7.2%} "
              f"{sqnr_db(f, q):8.1f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/digits")
