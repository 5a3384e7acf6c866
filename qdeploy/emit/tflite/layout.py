"""Where each QGraph tensor lives in the TFLite file, and in which element order.

The QGraph is NCHW (the model's own layout); TFLite kernels are NHWC. Every
QGraph tensor that has been written gets an entry ``(index, layout)``:

* ``"nhwc"``: a 4-D activation stored as ``x.transpose(0, 2, 3, 1)``;
* ``"native"``: stored in the model's own order (2-D, 3-D, 5-D tensors, and
  4-D ones produced by a Reshape/Transpose in the model's order);
* :class:`Flat` ``(order)`` (2-D ``[1, K]`` tensors): a Flatten of an NHWC map,
  stored as ``native[:, order]``. A FullyConnected reading it permutes its weight
  columns the same way (no runtime transpose), as the TFLite converter does.

:class:`Placed` converts on demand (TRANSPOSE for 4-D, GATHER for a flattened
order) and caches the conversions, so each is written at most once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...quant.qgraph import QGraph, QTensor
from .writer import ModelWriter

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
NHWC_AXIS = (0, 3, 1, 2)   # model (NCHW) axis -> NHWC axis


def nhwc(shape) -> list[int]:
    return [shape[i] for i in TO_NHWC]


@dataclass(eq=False)
class Flat:
    """A flattened NHWC map: stored = native[:, order]."""
    order: np.ndarray


def is_flat(layout) -> bool:
    return isinstance(layout, Flat)


def flatten_order(c: int, h: int, w: int) -> np.ndarray | None:
    """The model-order index of every element of an NHWC map flattened; None
    when it is the identity (1x1 maps, single channels)."""
    idx = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return None if np.array_equal(idx, np.arange(idx.size)) else idx


class Placed:
    """QGraph tensors written into one :class:`ModelWriter`."""

    def __init__(self, qg: QGraph, w: ModelWriter):
        self.qg, self.w = qg, w
        self.at: dict[str, tuple[int, object]] = {}
        self._converted: dict[tuple[str, str], int] = {}
        self.skip: set[str] = set()   # nodes already written by an earlier lowering

    # -------------------------------------------------------------- new tensors
    def shape_in(self, name: str, layout) -> list[int]:
        shape = list(self.qg.tensors[name].shape)
        return nhwc(shape) if layout == "nhwc" else shape

    def output(self, name: str, layout, tflite_name: str | None = None) -> int:
        """A runtime tensor for the QGraph tensor ``name`` stored in ``layout``."""
        t = self.qg.tensors[name]
        idx = self.w.tensor(tflite_name or name, self.shape_in(name, layout), t.dtype, t.scale,
                            t.zero_point)
        self.at[name] = (idx, layout)
        return idx

    def like(self, name: str, base: str, shape, dtype: str | None = None) -> int:
        """An intermediate tensor with the quantization of QGraph tensor ``base``."""
        t = self.qg.tensors[base]
        return self.w.tensor(name, shape, dtype or t.dtype, t.scale, t.zero_point)

    # -------------------------------------------------------------- reading
    def layout(self, name: str):
        return self.at[name][1] if name in self.at else None

    def get(self, name: str, want: str) -> int:
        """The tensor ``name`` in layout ``want`` ("nhwc" or "native")."""
        t = self.qg.tensors[name]
        if t.is_const:
            return self.const(t, want)
        idx, have = self.at[name]
        if want == "nhwc" and len(t.shape) != 4:
            raise ValueError(f"tensor '{name}' is {len(t.shape)}-D, not an NHWC map")
        if not is_flat(have) and have == want:
            return idx
        key = (name, want)
        if key not in self._converted:
            self._converted[key] = self._convert(name, idx, have, want)
        return self._converted[key]

    def _convert(self, name: str, idx: int, have, want: str) -> int:
        w = self.w
        out = self.like(f"{name}_{want}", name, self.shape_in(name, want))
        if is_flat(have):   # stored = native[:, order] -> native = stored[:, argsort(order)]
            inv = np.argsort(have.order).astype(np.int32)
            w.op("GATHER", [idx, w.const(f"{name}_order", inv)], [out], axis=1, batchDims=0)
        else:
            perm = TO_NHWC if want == "nhwc" else TO_NCHW
            w.op("TRANSPOSE", [idx, w.const(f"{name}_perm", np.array(perm, np.int32))], [out])
        return out

    def const(self, t: QTensor, want: str = "native", rank: int | None = None) -> int:
        """A constant operand (element-wise operands, PRelu slopes), broadcast to
        ``rank`` dimensions (leading ones, as ONNX broadcasting) and then laid out."""
        data = np.asarray(t.data)
        if rank is not None and data.ndim < rank:
            data = data.reshape((1,) * (rank - data.ndim) + data.shape)
        if want == "nhwc" and data.ndim == 4:
            data = data.transpose(TO_NHWC)
        return self.w.const(f"{t.name}_{want}", np.ascontiguousarray(data), t.dtype,
                            t.scale, t.zero_point, t.axis or 0)
