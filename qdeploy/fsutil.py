"""Atomic, deterministic output: nothing half-written, same inputs -> same bytes."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import QDeployError

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file atomically (temporary sibling, then rename; a signal or an
    error leaves the old file, or none, and no sibling). A folder that cannot
    be written is a :class:`QDeployError`."""
    from .interrupt import deferred
    path = Path(path)
    made = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    tmp = None
    try:
        with deferred():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp's 0600 is not what a user's file should get
        with deferred():
            os.replace(tmp, path)
            tmp = None
    except BaseException as e:
        with deferred():
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            _rmdirs(made)
        if isinstance(e, OSError):
            raise QDeployError(f"{path}: cannot write ({why(path, e)}); choose a writable "
                               "location") from None
        raise


def why(path: str | os.PathLike, e: OSError) -> str:
    """The reason an output under ``path`` cannot be written: a file where a folder of its
    path should be (mkdir's bare "File exists" / "Not a directory" do not say which), else
    the OS's own words."""
    for p in Path(path).parents:
        if p.exists() or p.is_symlink():
            return f"{p} is a file, not a folder" if not p.is_dir() else str(e.strerror or e)
    return str(e.strerror or e)


def dumps_json(obj) -> str:
    """Stable, standard JSON: sorted keys, 2-space indent, trailing newline; a non-finite
    number (an SQNR of a bit-exact output is inf) is null, since NaN and Infinity are not JSON
    (JSON.parse and strict parsers refuse them)."""
    return json.dumps(_finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, dumps_json(obj).encode())


def _finite(o):
    """``o`` with numpy values as Python ones, tuples as lists, NaN and +-inf as None."""
    if isinstance(o, (np.generic, np.ndarray)):
        o = o.tolist()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if o is None or isinstance(o, (str, int)):
        return o
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (readable by ``np.load``) whose bytes depend only on the arrays:
    entries sorted by name, fixed timestamps, no compression."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            a = io.BytesIO()
            np.lib.format.write_array(a, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            z.writestr(info, a.getvalue())
    return buf.getvalue()


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    write_bytes(path, npz_bytes(arrays))


# Test hook: called with the name of each step of atomic_dir ("created", "written",
# "old-moved", "new-moved", "old-removed", "cleaned"); tests send themselves a signal
# there to check that every instant of a replace is safe (tests/badinput/test_signals.py).
STEP_HOOK = None


def _step(name: str) -> None:
    if STEP_HOOK is not None:
        STEP_HOOK(name)


def refuse_cwd(path: Path, what: str) -> None:
    """An output folder must not be the current folder or one that holds it."""
    cwd = Path.cwd().resolve()
    root = Path(path).resolve()
    if root == cwd or root in cwd.parents:
        raise QDeployError(f"{what} {str(path)!r} is the current folder or holds it; it would be "
                           "replaced as a whole: give a new folder name such as out/")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Build an output folder in a temporary sibling and move it into place
    only when the block finishes without error. An existing folder is replaced
    as a whole (never partially overwritten). The moves run with SIGINT and
    SIGTERM held back (:func:`qdeploy.interrupt.deferred`), so a signal at any
    instant leaves either the old folder or the complete new one, and no
    temporary sibling; folders created above ``path`` are removed again on
    failure."""
    from .interrupt import deferred
    if not str(path).strip():
        raise QDeployError("the output folder name is empty; give a folder name such as out/")
    path = Path(path).resolve()
    refuse_cwd(path, "output folder")
    made = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    tmp = None
    try:
        with deferred():   # a signal held back here arrives inside the try: cleaned up below
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
            os.chmod(tmp, 0o777 & ~_umask())
            _step("created")
        yield tmp
        _step("written")
    except BaseException:
        with deferred():
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            _rmdirs(made)
            _step("cleaned")
        raise
    with deferred():
        try:
            _swap(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            _rmdirs(made)
            raise


def _swap(tmp: Path, path: Path) -> None:
    """``tmp`` becomes ``path``; an old ``path`` is removed, or put back when
    the new one could not be moved in."""
    if not path.exists():
        os.replace(tmp, path)
        _step("new-moved")
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    try:
        os.replace(path, old / "x")
        _step("old-moved")
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old / "x", path)
            raise
        _step("new-moved")
    finally:
        if path.exists():   # the new folder or the old one is in place: the spare goes
            shutil.rmtree(old, ignore_errors=True)
    _step("old-removed")


def _rmdirs(made: list[Path]) -> None:
    for p in made:   # innermost first; only folders this call created, and only if empty
        with contextlib.suppress(OSError):
            p.rmdir()
