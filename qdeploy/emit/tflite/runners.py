"""Run a TFLite file on TFLite Micro or LiteRT, in the model's own layout.

``run_tflm`` / ``run_tflite`` are the ``qdeploy run`` backends (signature of
every backend: float NCHW in and out, N samples along axis 0). The inputs are
quantized with the QGraph's own input Quantize parameters, exactly as the
reference interpreter does (:func:`qdeploy.quant.interpreter.quantize_inputs`),
and integer outputs are dequantized the same way, so the results compare with
``qdeploy run --backend ref`` element by element. :func:`run_int` takes and
returns the integers (the judge of the tests). 4-D tensors are NHWC in the
file; the runners transpose at the edges.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import QDeployError
from . import schema_py_generated as fb

FILE = "model.int8.tflite"
_NP = {fb.TensorType.INT8: np.int8, fb.TensorType.UINT8: np.uint8, fb.TensorType.INT32: np.int32,
       fb.TensorType.FLOAT32: np.float32, fb.TensorType.INT16: np.int16}
_SIZES = {fb.TensorType.FLOAT32: 4, fb.TensorType.INT32: 4, fb.TensorType.INT64: 8, fb.TensorType.INT16: 2}


def _to_file(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else np.ascontiguousarray(a)


def _from_file(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if a.ndim == 4 else a


def io_types(blob: bytes) -> tuple[list, list, int]:
    """(input dtypes, output dtypes, bytes of all runtime tensors) of a file."""
    m = fb.Model.GetRootAs(blob, 0)
    sg = m.Subgraphs(0)
    runtime = 0
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if m.Buffers(t.Buffer()).DataLength() == 0:
            runtime += int(np.prod(t.ShapeAsNumpy())) * _SIZES.get(t.Type(), 1) if t.ShapeLength() else 4
    ins = [_NP[sg.Tensors(sg.Inputs(k)).Type()] for k in range(sg.InputsLength())]
    outs = [_NP[sg.Tensors(sg.Outputs(k)).Type()] for k in range(sg.OutputsLength())]
    return ins, outs, runtime


def _each_sample(invoke: Callable, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Batch-1 invocations over axis 0; outputs stacked."""
    n = len(arrays[0])
    res = None
    for i in range(n):
        outs = invoke([_to_file(a[i:i + 1]) for a in arrays])
        res = [[] for _ in outs] if res is None else res
        for k, o in enumerate(outs):
            res[k].append(np.array(o))
    return [_from_file(np.concatenate(r, axis=0)) for r in res]


def tflm_invoker(blob: bytes) -> Callable:
    try:
        from tflite_micro import runtime
    except ImportError:
        raise QDeployError("the tflm backend needs TFLite Micro's Python interpreter: "
                           "pip install tflite-micro") from None
    arena = 2 * io_types(blob)[2] + (1 << 20)
    interp = runtime.Interpreter.from_bytes(blob, arena_size=arena)
    n_out = len(io_types(blob)[1])

    def invoke(arrays):
        for k, a in enumerate(arrays):
            interp.set_input(a, k)
        interp.invoke()
        return [np.array(interp.get_output(k)) for k in range(n_out)]
    return invoke


def litert_interpreter_class():
    """LiteRT's Interpreter, or tflite-runtime's where that is what is installed."""
    try:
        from ai_edge_litert import interpreter as mod
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod
        except ImportError:
            raise QDeployError("the tflite backend needs a TFLite interpreter: pip install "
                               "ai-edge-litert (or tflite-runtime, numpy<2)") from None
    return mod


@contextlib.contextmanager
def _native_stderr_quiet():
    """LiteRT's C++ side writes "INFO: Created TensorFlow Lite XNNPACK delegate" to file
    descriptor 2 on every interpreter it builds; `quantize -q` must print nothing. Its
    failures still arrive as Python exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def litert_invoker(blob: bytes, reference: bool = False, threads: int = 1) -> Callable:
    mod = litert_interpreter_class()
    kw = {}
    if reference:
        kw["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_REF
    with _native_stderr_quiet():
        interp = mod.Interpreter(model_content=blob, num_threads=threads, **kw)
        interp.allocate_tensors()
    ins, outs = interp.get_input_details(), interp.get_output_details()

    def invoke(arrays):
        for d, a in zip(ins, arrays):
            interp.set_tensor(d["index"], a)
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in outs]
    return invoke


def run_int(blob: bytes, ints: list[np.ndarray], invoke: Callable | None = None) -> list[np.ndarray]:
    """Integer inputs (the file's input order, model layout, N samples) -> the
    file's outputs (model layout), on TFLite Micro unless ``invoke`` is given."""
    return _each_sample(invoke or tflm_invoker(blob), ints)


def run_blob(blob: bytes, qg, inputs: dict[str, np.ndarray], invoke: Callable) -> dict[str, np.ndarray]:
    """Float inputs by name -> float outputs by name through the file."""
    from ...quant.interpreter import quantize_inputs
    from ...quant.recipes import dequantize
    in_types, out_types, _ = io_types(blob)
    if in_types and in_types[0] == np.float32:
        feed = [np.asarray(inputs[k], np.float32) for k in qg.inputs]
    else:
        q = quantize_inputs(qg, {k: inputs[k] for k in qg.inputs})
        feed = [q[k] for k in qg.inputs]
    outs = _each_sample(invoke, feed)
    res = {}
    for name, y in zip(qg.outputs, outs):
        if y.dtype != np.float32:
            deq = next(n for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] == name)
            t = qg.tensors[deq.inputs[0]]
            y = dequantize(y, t.s, t.zp)
        res[name] = y
    return res


def _load(out) -> tuple[bytes, object]:
    from ...pipeline import QGRAPH
    from ...quant.qgraph import load_qgraph
    out = Path(out)
    if not (out / FILE).is_file():
        raise QDeployError(f"{out}: has no {FILE}; quantize again with --emit tflite")
    return (out / FILE).read_bytes(), load_qgraph(out / QGRAPH)


def isolated(work: Callable[[], dict], what: str) -> dict[str, np.ndarray]:
    """``work()`` (arrays by name) run in a forked child process where there is fork.
    TFLite's kernels stop the program on a failed ``TFLITE_CHECK`` (abort, e.g. an int8
    SOFTMAX whose exponentials sum to 512 or more), which in-process would end
    ``quantize`` or ``run`` without a word; here it is one error line naming the runtime
    and the signal. An exception in the child is raised again in the parent; what the
    runtime prints in the child goes to a file that is deleted with the result."""
    import pickle
    import signal
    import tempfile
    if not hasattr(os, "fork"):
        return work()
    with tempfile.TemporaryDirectory(prefix="qdeploy-run-") as d:
        res, err = Path(d) / "out.npz", Path(d) / "error.pickle"
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:     # the child: never returns into the caller's code
            # no garbage collection here: it would run the destructors of objects the parent
            # left behind, e.g. an onnxruntime session's, which waits for threads the child
            # does not have (seen: the child hung in pthread_cond_destroy)
            import gc
            gc.disable()
            code = 1
            try:
                log = os.open(Path(d) / "output.log", os.O_WRONLY | os.O_CREAT, 0o600)
                os.dup2(log, 1)   # the runtime's own prints stay here
                os.dup2(log, 2)
                import faulthandler
                faulthandler.disable()   # an abort is reported by the parent, in one line
                outs = work()
                names = list(outs)
                np.savez(res, names=np.array(names), *[np.asarray(outs[k]) for k in names])
                code = 0
            except BaseException as e:   # noqa: BLE001 - handed to the parent as it is
                try:
                    err.write_bytes(pickle.dumps(e))
                except Exception:
                    err.write_bytes(pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}")))
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            raise QDeployError(f"{what} stopped with {name} running {FILE} (a failed check inside its int8 "
                               "kernels: a qdeploy bug, report it with the model; --no-verify writes the "
                               "artefacts unchecked)")
        if err.is_file():
            raise pickle.loads(err.read_bytes())
        if os.WEXITSTATUS(status) != 0 or not res.is_file():
            raise QDeployError(f"{what} ended with exit code {os.WEXITSTATUS(status)} running {FILE} "
                               "without a result (a qdeploy bug: report it with the model)")
        with np.load(res) as z:
            names = [str(n) for n in z["names"]]
            return {k: z[f"arr_{i}"] for i, k in enumerate(names)}


def run_tflm(out: Path, inputs: dict[str, np.ndarray], manifest: dict) -> dict[str, np.ndarray]:
    """``qdeploy run --backend tflm``: TFLite Micro (reference kernels, the bit-exact
    judge), in its own process (:func:`isolated`)."""
    blob, qg = _load(out)
    return isolated(lambda: run_blob(blob, qg, inputs, tflm_invoker(blob)), "TFLite Micro")


def run_tflite(out: Path, inputs: dict[str, np.ndarray], manifest: dict,
               reference: bool = False) -> dict[str, np.ndarray]:
    """``qdeploy run --backend tflite``: LiteRT (XNNPACK, 1 thread) or tflite-runtime;
    ``reference=True`` (or the environment variable ``QDEPLOY_TFLITE_KERNELS=reference``)
    runs the builtin reference kernels instead."""
    import os
    reference = reference or os.environ.get("QDEPLOY_TFLITE_KERNELS") == "reference"
    blob, qg = _load(out)
    return isolated(lambda: run_blob(blob, qg, inputs, litert_invoker(blob, reference)), "LiteRT")
