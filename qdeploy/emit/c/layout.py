"""Tensor layouts of the C bundle and strided walks between them.

The QGraph is NCHW; the bundle stores every 4-D tensor NHWC (what TFLite Micro and
CMSIS-NN use) and every other tensor in its own (row-major) order: memory =
``np.transpose(logical, perm_of(shape))``.

Data movement (concat, split, slice, pad, reshape, transpose, depth/space,
nearest resize) and broadcasting are not written per op: :func:`offsets` gives,
for every logical element of a tensor, its memory offset; running the op's own
numpy semantics on those offset arrays tells where every output byte comes from,
and :func:`walk` factors such a correspondence into an n-dimensional strided walk
(dims + strides per buffer) that the C kernels step through with counters.
"""
from __future__ import annotations

import numpy as np

MAX_DIMS = 8   # QD_MAX_DIMS of qd_fixedpoint.h


def perm_of(shape) -> tuple[int, ...]:
    """Memory order of a tensor of this (NCHW) shape: NHWC for 4-D, else as is."""
    return (0, 2, 3, 1) if len(shape) == 4 else tuple(range(len(shape)))


def to_memory(x: np.ndarray) -> np.ndarray:
    """A logical (NCHW) array in the bundle's memory order, flat."""
    return np.ascontiguousarray(np.transpose(x, perm_of(x.shape))).reshape(-1)


def from_memory(flat: np.ndarray, shape) -> np.ndarray:
    """The inverse of :func:`to_memory` for a tensor of ``shape``."""
    p = perm_of(shape)
    return np.transpose(np.asarray(flat).reshape([shape[i] for i in p]), np.argsort(p))


def offsets(shape) -> np.ndarray:
    """int64 array of ``shape``: the memory offset of each logical element."""
    n = int(np.prod(shape, dtype=np.int64))
    return from_memory(np.arange(n, dtype=np.int64), shape)


def _divisors_desc(m: int, at_most: int) -> list[int]:
    ds = set()
    i = 1
    while i * i <= m:
        if m % i == 0:
            ds.update((i, m // i))
        i += 1
    return sorted((d for d in ds if 1 < d <= at_most), reverse=True)


def walk(*arrays, max_dims: int = MAX_DIMS):
    """Factor offset sequences (one per buffer, same length, in iteration order) into
    ``(bases, dims, strides)``: ``arrays[k][i] == bases[k] + sum(idx[d] * strides[k][d])``
    where ``idx`` is ``i`` in the mixed radix ``dims`` (outermost first). None when no
    walk of at most ``max_dims`` dimensions exists."""
    cur = [np.asarray(a, np.int64).reshape(-1) for a in arrays]
    bases = [int(a[0]) for a in cur]
    cur = [a - a[0] for a in cur]
    dims: list[int] = []
    strides: list[list[int]] = []
    while cur[0].size > 1:
        m = cur[0].size
        st = [int(a[1] - a[0]) for a in cur]
        ok = np.ones(m - 1, bool)
        for a, s in zip(cur, st):
            ok &= np.diff(a) == s
        run = m if ok.all() else int(np.argmin(ok)) + 1
        found = None
        for d in _divisors_desc(m, run):
            rows = [a.reshape(-1, d) for a in cur]
            ramp = np.arange(d, dtype=np.int64)
            if all(np.array_equal(r, r[:, :1] + ramp * s) for r, s in zip(rows, st)):
                found = d
                break
        if found is None:
            return None
        dims.append(found)
        strides.append(st)
        cur = [a.reshape(-1, found)[:, 0] for a in cur]
    if not dims:
        dims, strides = [1], [[0] * len(cur)]
    # merge nothing further: each level is already a maximal run
    dims.reverse()
    strides.reverse()
    if len(dims) > max_dims:
        return None
    return bases, dims, [[s[k] for s in strides] for k in range(len(cur))]


def broadcast_offsets(in_shape, out_shape) -> np.ndarray:
    """Memory offsets of an input broadcast (numpy rules) to ``out_shape``, in the
    output's memory order (flat)."""
    off = offsets(in_shape)
    lead = len(out_shape) - len(in_shape)
    off = off.reshape((1,) * max(lead, 0) + tuple(in_shape))
    return to_memory(np.broadcast_to(off, tuple(out_shape)))
