"""Calibration samples read from disk a batch at a time.

A qdeploy calibration set is an uncompressed .npz (``fsutil.npz_bytes``), so
its ``x`` member is a plain .npy stored at a fixed offset inside the zip file.
:class:`NpzSamples` reads that offset once and then serves ``x[i:j]`` with one
``seek`` + ``read``: nothing but the requested rows is ever in memory, and the
peak memory of ``calib ranges`` / ``quantize`` does not grow with the number
of samples (bench/RESULTS.md "Streamed calibration input").

It behaves like the read-only array the calibration code slices: ``shape``,
``dtype``, ``ndim``, ``len()``, ``x[k]`` / ``x[i:j]`` (new float32 arrays),
``x[:n]`` via :meth:`head` for ``--limit`` (still lazy), and ``np.asarray(x)``
loads everything (what the few whole-set consumers, ``--method auto`` and bias
correction, do). A compressed or Fortran-ordered member cannot be read by
offset; :func:`open_samples` then loads it whole, as before.

:class:`ImageSamples` does the same for a folder of images: the files are
decoded and preprocessed (``images.load`` with the set's recipe) when their
rows are read, so ``quantize --calib FOLDER`` holds one batch of pixels at a
time (each pass over the samples decodes the images again).
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import QDeployError

CHUNK_BYTES = 64 << 20     # whole-set scans (the NaN check) read at most this much at a time


class LazyRows:
    """Rows read on demand, behaving like the read-only array the calibration code
    slices. A subclass gives ``shape``, ``dtype``, ``rows(i, j)`` (rows ``i..j-1``
    as a new array) and ``head(n)``; ``len``, ``ndim``, ``size``, numpy-style
    indexing (rows first), :meth:`chunks` and ``np.asarray`` follow from those."""

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple) and key and key[0] is Ellipsis:
            return self[:][key]
        if isinstance(key, tuple):      # rows first, then numpy indexing of the rest
            rows = self[key[0]] if key else self[:]
            rest = key[1:]
            return rows[rest] if np.ndim(rows) < self.ndim else rows[(slice(None),) + rest]
        if key is Ellipsis:
            return self[:]
        if isinstance(key, (int, np.integer)):
            k = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= k < len(self):
                raise IndexError(key)
            return self.rows(k, k + 1)[0]
        if isinstance(key, slice) and key.step in (None, 1):
            i, j, _ = key.indices(len(self))
            return self.rows(i, j)
        idx = np.arange(len(self))[key]
        return np.stack([self[int(k)] for k in np.atleast_1d(idx)]) if np.ndim(idx) else self[int(idx)]

    def chunks(self, max_bytes: int = CHUNK_BYTES):
        """The rows in order, at most ``max_bytes`` at a time."""
        row = int(np.prod(self.shape[1:], dtype=np.int64)) * np.dtype(self.dtype).itemsize
        step = max(1, max_bytes // max(1, row))
        for i in range(0, len(self), step):
            yield self.rows(i, i + step)

    def __array__(self, dtype=None, copy=None):
        a = self.rows(0, len(self))
        return a if dtype is None else a.astype(dtype, copy=False)


class NpzSamples(LazyRows):
    """Rows ``[start, stop)`` of a stored .npy inside an .npz, read on demand."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                 start: int = 0, stop: int | None = None):
        self.path, self.offset, self.dtype = Path(path), int(offset), np.dtype(dtype)
        self._full = tuple(int(d) for d in shape)
        self.start = int(start)
        self.stop = self._full[0] if stop is None else min(int(stop), self._full[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.stop - self.start,) + self._full[1:]

    def _row_bytes(self) -> int:
        return int(np.prod(self._full[1:], dtype=np.int64)) * self.dtype.itemsize

    def rows(self, i: int, j: int) -> np.ndarray:
        """Rows ``i..j-1`` (relative to this view) as a new array."""
        i, j = max(0, i), min(len(self), j)
        n = max(0, j - i)
        rb = self._row_bytes()
        with open(self.path, "rb") as f:
            f.seek(self.offset + (self.start + i) * rb)
            buf = f.read(n * rb)
        if len(buf) != n * rb:
            raise QDeployError(f"{self.path}: truncated at sample {self.start + i} (it shrank while being read?); "
                               "write the set again (qdeploy calib build)")
        return np.frombuffer(buf, self.dtype).reshape((n,) + self._full[1:]).copy()

    def head(self, n: int) -> "NpzSamples":
        """The first ``n`` rows, still on disk."""
        return NpzSamples(self.path, self.offset, self._full, self.dtype, self.start,
                          self.start + max(0, int(n)))



def npy_member_offset(path: Path, member: str) -> tuple[int, tuple[int, ...], np.dtype] | None:
    """(absolute data offset, shape, dtype) of ``member`` (e.g. ``x.npy``) when it
    is stored uncompressed in C order; None otherwise."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with z.open(member) as m:
            version = np.lib.format.read_magic(m)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                return None
            shape, fortran, dtype = read(m)
            header = m.tell()
    if fortran or dtype.hasobject:
        return None
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size - header < need:
        raise QDeployError(f"{path}: its '{member}' declares {tuple(shape)} {dtype} samples ({need} bytes) but "
                           f"holds {info.file_size - header}: the set is damaged; write it again "
                           "(qdeploy calib build)")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len + header, tuple(shape), dtype


def open_samples(path: Path, member: str = "x.npy"):
    """The ``x`` member of a calibration set: lazy when stored plainly, else loaded."""
    found = npy_member_offset(Path(path), member)
    if found is None:
        with np.load(path, allow_pickle=False) as z:
            return z[member[:-4]]
    offset, shape, dtype = found
    return NpzSamples(Path(path), offset, shape, dtype)


def all_finite(x) -> bool:
    """NaN/Inf check without loading a lazy set whole."""
    if isinstance(x, LazyRows):
        return all(np.isfinite(c).all() for c in x.chunks())
    return bool(np.isfinite(x).all())


class ImageSamples(LazyRows):
    """Images decoded and preprocessed when their rows are read."""

    def __init__(self, paths: list, recipe: dict, sample_shape: tuple[int, ...]):
        self.paths, self.recipe = list(paths), recipe
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths),) + self.sample_shape

    def rows(self, i: int, j: int) -> np.ndarray:
        from .images import load
        sel = self.paths[max(0, i):min(len(self), j)]
        if not sel:
            return np.zeros((0,) + self.sample_shape, np.float32)
        return np.stack([load(p, self.recipe) for p in sel]).astype(np.float32, copy=False)


    def head(self, n: int) -> "ImageSamples":
        return ImageSamples(self.paths[:max(0, int(n))], self.recipe, self.sample_shape)
