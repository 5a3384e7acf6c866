"""Runs TFLite files on tflite-runtime, inside the numpy<2 virtual environment that
scripts/test.sh prepares (tflite-runtime 2.14 does not load under numpy 2). Imports
only numpy and tflite_runtime; tests/emit/test_tflite_runtime.py drives it.

    python tflite_runtime_worker.py IN.npz OUT.npz

IN.npz: ``blob{i}`` (the file's bytes as uint8) and ``in{i}_{k}`` (input k of file i,
N samples in the file's layout). OUT.npz: ``ref{i}_{k}`` (output k, the builtin
reference kernels) and ``opt{i}_{k}`` (the default resolver: optimized kernels +
XNNPACK), stacked over the samples; ``error{i}`` when a file does not run.
"""
import sys

import numpy as np
from tflite_runtime import interpreter as tfl


def run(blob: bytes, inputs: list, resolver) -> list:
    it = tfl.Interpreter(model_content=blob, num_threads=1, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    res = [[] for _ in outs]
    for s in range(len(inputs[0])):
        for d, a in zip(ins, inputs):
            it.set_tensor(d["index"], np.ascontiguousarray(a[s:s + 1]))
        it.invoke()
        for r, d in zip(res, outs):
            r.append(it.get_tensor(d["index"]).copy())
    return [np.concatenate(r) for r in res]


def main(src: str, dst: str) -> None:
    z = np.load(src)
    out = {}
    i = 0
    while f"blob{i}" in z.files:
        blob = z[f"blob{i}"].tobytes()
        inputs = [z[f"in{i}_{k}"] for k in range(sum(1 for f in z.files if f.startswith(f"in{i}_")))]
        try:
            for tag, resolver in (("ref", tfl.OpResolverType.BUILTIN_REF), ("opt", tfl.OpResolverType.AUTO)):
                for k, y in enumerate(run(blob, inputs, resolver)):
                    out[f"{tag}{i}_{k}"] = y
        except Exception as e:  # reported per file, the others still run
            out[f"error{i}"] = np.array(str(e).splitlines()[0] if str(e) else type(e).__name__)
        i += 1
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
