"""``qdeploy run OUT --backend c``: the bundle compiled by the host C compiler into a
shared library (cached by the hash of the bundle's files, the compiler and its flags,
under ``$QDEPLOY_CACHE`` or ``~/.cache/qdeploy``; each source's object file cached by
its own content, so the runtime kernels compile once per target) and called through
ctypes. ``CC`` names the compiler as make takes it (``CC="ccache gcc"`` works); it
must build for this machine (a cross compiler such as arm-none-eabi-gcc is one line).

Inputs are quantized exactly as the reference interpreter's input Quantize node,
moved to the bundle's layout (NHWC for 4-D), run one sample at a time, and the int8
outputs moved back and dequantized as the reference's Dequantize nodes."""
from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
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


def _files(cdir: Path, names: set[str] | None = None) -> list[Path]:
    """The bundle's .c and .h files (``names``: only these, the ones its manifest lists)."""
    return sorted(p for p in cdir.iterdir() if p.suffix in (".c", ".h") and (names is None or p.name in names))


def _is_source(p: Path) -> bool:
    """A C source compiled into the library (not the firmware example's main)."""
    return p.suffix == ".c" and p.name != "example_main.c"


def sources(cdir: Path, names: set[str] | None = None) -> list[Path]:
    return [p for p in _files(cdir, names) if _is_source(p)]


def build_library(cdir: Path, cc: str | None = None, flags=FLAGS, names: set[str] | None = None) -> Path:
    """The bundle in ``cdir`` as a shared library (linked once per content hash). Each
    source is compiled to an object cached by its own content, the bundle's headers,
    the compiler and the flags (:func:`_objects`): the runtime kernels (``qd_*.c``,
    the same for every model of a target) compile once, a new model only its
    ``model.c`` and weights, then one link. ``names``: the files of the bundle (its
    manifest's list; None: every .c and .h in ``cdir``): a file a user added beside
    them, such as their own firmware's main.c, is not compiled in."""
    cc = cc or compiler()
    argv = _argv(cc)
    files = _files(cdir, names)
    if not (cdir / "model.c").is_file():
        raise QDeployError(f"{cdir}: no model.c; quantize again with --emit c")
    try:
        version = subprocess.run([*argv, "--version"], capture_output=True, text=True).stdout
    except OSError as e:
        raise QDeployError(f"C compiler '{cc}' cannot run ({e}); install gcc or clang (or set CC)") from None
    h = _hash([cc, version, *flags], [(p.name, p.read_bytes()) for p in files])
    lib = cache_dir() / "c" / h[:32] / "libmodel.so"
    if lib.is_file():
        return lib
    _check_cache(lib.parent)
    compile_flags = [f for f in flags if f != "-shared"]
    objs = _objects(cdir, cc, version, compile_flags, [p for p in files if _is_source(p)])
    _produce(lib, lambda tmp: [*argv, *flags, "-o", tmp, *map(str, objs)], cdir)
    return lib


def _argv(cc: str) -> list[str]:
    """The compiler command as make takes ``CC`` (``CC="ccache gcc"``: two words)."""
    return shlex.split(cc) or [cc]


def _check_cache(folder: Path) -> None:
    """The build cache can take the objects and the library (one line if not)."""
    root = cache_dir()
    try:
        for d in (folder, root / "c" / "obj"):
            d.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe.", dir=d)
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        where = "QDEPLOY_CACHE" if os.environ.get("QDEPLOY_CACHE") else "the default (QDEPLOY_CACHE unset)"
        raise QDeployError(f"cannot write the C build cache {root}, {where} ({e.strerror or e}); set "
                           "QDEPLOY_CACHE to a writable folder") from None


def _hash(parts: list[str], files: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() + b"\0")
    for name, data in files:
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def _objects(cdir: Path, cc: str, version: str, flags: list[str], srcs: list[Path]) -> list[Path]:
    """Every source of the bundle as an object file under the cache, keyed by the compiler,
    the flags and the source as preprocessed (``-E -P``: the headers it includes, without
    comments, so the generated headers' "made from model X" lines do not count); compiled,
    in parallel, only when absent."""
    argv = _argv(cc)
    pre = [subprocess.Popen([*argv, *flags, "-E", "-P", str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for src in srcs]
    objs, todo = [], []
    for src, proc in zip(srcs, pre):
        text, err = proc.communicate()
        if proc.returncode != 0:
            raise _compiler_failed(cdir, err.decode(errors="replace"))
        obj = cache_dir() / "c" / "obj" / (_hash([cc, version, *flags], [(src.name, text)])[:32] + ".o")
        objs.append(obj)
        if not obj.is_file():
            todo.append((src, obj))
    procs = []
    try:
        for src, obj in todo:
            obj.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{obj.stem}.", suffix=".o", dir=obj.parent)
            os.close(fd)
            procs.append((subprocess.Popen([*argv, *flags, "-c", "-o", tmp, str(src)], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True), tmp, obj))
        for proc, tmp, obj in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise _compiler_failed(cdir, err)
            os.replace(tmp, obj)
    finally:
        for proc, tmp, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if os.path.exists(tmp):
                os.unlink(tmp)
    return objs


def _compiler_failed(cdir: Path, stderr: str) -> QDeployError:
    """The one-line error for a failed compile or link: the compiler's first message line."""
    first = next(iter(stderr.strip().splitlines()), "no message")
    return QDeployError(f"{cdir}: the host C compiler failed on the bundle: {first}")


def _produce(path: Path, command, cdir: Path) -> None:
    """Run ``command(tmp)`` to write ``path`` through a temporary file in its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        r = subprocess.run(command(tmp), capture_output=True, text=True)
        if r.returncode != 0:
            raise _compiler_failed(cdir, r.stderr)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(out: Path, inputs: dict, manifest: dict) -> dict:
    from ...pipeline import QGRAPH
    from ...quant.qgraph import load_qgraph
    from ..arena import int_io
    out = Path(out)
    qg = load_qgraph(out / QGRAPH)
    cc = compiler()
    listed = {k.split("/", 1)[1] for k in manifest.get("artefacts", {}) if k.startswith("c/")}
    path = build_library(out / "c", cc, names=listed or None)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:   # CC=arm-none-eabi-gcc in the shell: a library for another machine
        raise QDeployError(f"the C bundle built by CC '{cc}' does not load on this machine ({e}); the c "
                           "backend builds for the host: set CC to the host compiler (such as CC=cc) or unset "
                           "it when running qdeploy") from None
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
