"""``qdeploy run OUT --backend c``: the bundle compiled by the host C compiler into a
shared library (cached by the hash of the bundle's files, the compiler and its flags,
under ``$QDEPLOY_CACHE`` or ``~/.cache/qdeploy``) and called through ctypes.

Inputs are quantized exactly as the reference interpreter's input Quantize node,
moved to the bundle's layout (NHWC for 4-D), run one sample at a time, and the int8
outputs moved back and dequantized as the reference's Dequantize nodes."""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import QDeployError
from . import layout

FLAGS = ("-std=c99", "-O2", "-fPIC", "-shared")


class NoCompiler(QDeployError, ImportError):
    """No host C compiler: the c backend's runtime is missing (verification records it as
    not run; ``qdeploy run`` prints the one line)."""


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise NoCompiler("no C compiler found for --backend c; install gcc or clang (or set CC)")
    return cc


def cache_dir() -> Path:
    root = os.environ.get("QDEPLOY_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "qdeploy"


def sources(cdir: Path) -> list[Path]:
    return sorted(p for p in cdir.glob("*.c") if p.name != "example_main.c")


def build_library(cdir: Path, cc: str | None = None, flags=FLAGS) -> Path:
    """The bundle in ``cdir`` as a shared library (compiled once per content hash)."""
    cc = cc or compiler()
    files = sorted(p for p in cdir.iterdir() if p.suffix in (".c", ".h"))
    if not (cdir / "model.c").is_file():
        raise QDeployError(f"{cdir}: no model.c; quantize again with --emit c")
    h = hashlib.sha256()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    except OSError as e:
        raise QDeployError(f"C compiler '{cc}' cannot run ({e}); install gcc or clang (or set CC)") from None
    for part in [cc, version, *flags]:
        h.update(part.encode() + b"\0")
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    lib = cache_dir() / "c" / h.hexdigest()[:32] / "libmodel.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".libmodel.", suffix=".so", dir=lib.parent)
    os.close(fd)
    try:
        r = subprocess.run([cc, *flags, "-o", tmp, *map(str, sources(cdir))], capture_output=True, text=True)
        if r.returncode != 0:
            raise QDeployError(f"{cdir}: the host C compiler failed on the bundle: {r.stderr.strip().splitlines()[:1]}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def run(out: Path, inputs: dict, manifest: dict) -> dict:
    from ...pipeline import QGRAPH
    from ...quant.qgraph import load_qgraph
    from ..arena import int_io
    out = Path(out)
    qg = load_qgraph(out / QGRAPH)
    lib = ctypes.CDLL(str(build_library(out / "c")))
    fn = lib.model_invoke
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    rows = int8_inputs(qg, {k: inputs[k] for k in qg.inputs})
    res = np.zeros((len(rows), sum(int(np.prod(qg.tensors[t].shape)) for t in int_io(qg)[1])), np.int8)
    for row, y in zip(rows, res):
        if fn(row.ctypes.data, y.ctypes.data) != 0:
            raise QDeployError(f"{out}/c: model_invoke failed")
    return float_outputs(qg, res)


def int8_inputs(qg, inputs: dict) -> np.ndarray:
    """Float samples (model layout, by input name) as the bundle's input rows
    (``model_invoke``'s ``in``; the firmware's input.bin): quantized exactly as the
    reference does, in the bundle's memory layout, the model's inputs one after the other."""
    from ...quant.interpreter import quantize_inputs
    q = quantize_inputs(qg, inputs)
    n = len(next(iter(q.values())))
    return np.stack([np.concatenate([layout.to_memory(q[name][i:i + 1]) for name in qg.inputs])
                     for i in range(n)]).astype(np.int8)


def float_outputs(qg, raw: np.ndarray) -> dict:
    """The bundle's output rows (host or firmware) back as the model's outputs
    (model layout, dequantized, by name)."""
    from ...quant.interpreter import dequantize
    from ..arena import int_io
    deq = {n.outputs[0]: n for n in qg.nodes if n.op == "Dequantize" and n.outputs[0] in qg.outputs}
    res, at = {}, 0
    for name, t in zip(qg.outputs, int_io(qg)[1]):
        shape = qg.tensors[t].shape
        size = int(np.prod(shape))
        ints = np.concatenate([layout.from_memory(row[at:at + size], shape) for row in raw])
        res[name] = dequantize(deq[name], [ints.astype(qg.tensors[t].dtype)], qg)[0]
        at += size
    if at != raw.shape[1]:
        raise QDeployError(f"the bundle wrote {raw.shape[1]} output bytes per sample; the model's "
                           f"outputs take {at}")
    return res
