"""Where the bytes of a TFLite file go: every byte owned by one part of the file.

    python -m qdeploy.emit.tflite.bytemap FILE.tflite [...]

Walks the flatbuffer (tables, their vtables, vectors, strings) and marks each
byte with what it holds; bytes nothing points at are alignment padding. Parts:
weights (int8 constants of rank >= 2), biases (int32 constants with per-channel
scales), other constant data, the per-channel weight scales, bias scales and
zero points, per-tensor quantization vectors, the quantization tables
themselves, tensor names, tensor tables (with their shape vectors and the
subgraph's offset vector), operator tables (with their input/output vectors and
builtin options), operator codes, buffer tables, vtables (the builder shares
identical ones), metadata, SignatureDef, and padding.

:func:`breakdown` returns {part: bytes} (summing to the file's size) plus counts
("#channels", "#operators", ...); :data:`PER_CHANNEL` names the parts the TFLite
int8 specification requires per output channel (int32 bias, float32 weight and
bias scales, int64 zero points); everything but those and the weights is
:func:`graph_bytes`. bench/tflite_size.py and tests/emit/test_tflite_size.py use it.
"""
from __future__ import annotations

import struct
import sys
from collections import Counter
from pathlib import Path

from . import schema_py_generated as fb

INT8, INT32 = fb.TensorType.INT8, fb.TensorType.INT32
RESHAPE_OPTIONS = fb.BuiltinOptions.ReshapeOptions
PER_CHANNEL = ("biases", "weight scales", "bias scales", "zero points")


class _Walk:
    def __init__(self, buf: bytes):
        self.b = buf
        self.owner: list[str | None] = [None] * len(buf)

    def mark(self, start: int, end: int, part: str) -> None:
        for i in range(start, end):
            if self.owner[i] is None:
                self.owner[i] = part

    def u32(self, p): return struct.unpack_from("<I", self.b, p)[0]
    def i32(self, p): return struct.unpack_from("<i", self.b, p)[0]
    def u16(self, p): return struct.unpack_from("<H", self.b, p)[0]

    def table(self, pos: int, part: str) -> int:
        vt = pos - self.i32(pos)
        self.mark(vt, vt + self.u16(vt), "vtables")
        self.mark(pos, pos + self.u16(vt + 2), part)
        return vt

    def field(self, pos: int, voff: int) -> int | None:
        """Position of the field at vtable offset ``voff``, None when absent."""
        vt = pos - self.i32(pos)
        if voff >= self.u16(vt):
            return None
        fo = self.u16(vt + voff)
        return pos + fo if fo else None

    def ref(self, pos: int, voff: int) -> int | None:
        f = self.field(pos, voff)
        return None if f is None else f + self.u32(f)

    def scalar(self, pos: int, voff: int, fmt: str, default=0):
        f = self.field(pos, voff)
        return default if f is None else struct.unpack_from(fmt, self.b, f)[0]

    def vector(self, pos: int | None, size: int, part: str) -> list[int]:
        """Mark a vector of ``size``-byte elements; returns element positions."""
        if pos is None:
            return []
        n = self.u32(pos)
        self.mark(pos, pos + 4 + n * size, part)
        return [pos + 4 + i * size for i in range(n)]

    def tables(self, pos: int | None, part: str) -> list[int]:
        return [p + self.u32(p) for p in self.vector(pos, 4, part)]

    def string(self, pos: int | None, part: str) -> str:
        if pos is None:
            return ""
        n = self.u32(pos)
        self.mark(pos, pos + 4 + n + 1, part)
        return self.b[pos + 4:pos + 4 + n].decode()


def breakdown(blob: bytes) -> dict:
    """{part: bytes} over the whole file (sums to len(blob)), plus counts under "#..." keys."""
    w = _Walk(blob)
    w.mark(0, 8, "header")
    model = w.u32(0)
    w.table(model, "model table")
    w.string(w.ref(model, 10), "description")
    for oc in w.tables(w.ref(model, 6), "operator codes"):
        w.table(oc, "operator codes")
    buffers = w.tables(w.ref(model, 12), "buffer tables")
    role = {}                                  # buffer index -> part of its data
    meta_bufs = set()
    for m in w.tables(w.ref(model, 16), "metadata"):
        w.table(m, "metadata")
        w.string(w.ref(m, 4), "metadata")
        meta_bufs.add(w.scalar(m, 6, "<I"))
    for s in w.tables(w.ref(model, 18), "signature"):
        w.table(s, "signature")
        w.string(w.ref(s, 8), "signature")
        for v in (4, 6):
            for tm in w.tables(w.ref(s, v), "signature"):
                w.table(tm, "signature")
                w.string(w.ref(tm, 4), "signature")
    counts = Counter()
    for sg in w.tables(w.ref(model, 8), "subgraph"):
        w.table(sg, "subgraph")
        w.string(w.ref(sg, 12), "subgraph")
        w.vector(w.ref(sg, 6), 4, "subgraph")
        w.vector(w.ref(sg, 8), 4, "subgraph")
        tensors = w.tables(w.ref(sg, 4), "tensor tables")
        kinds = []
        for t in tensors:
            ttype, buf = w.scalar(t, 6, "<b"), w.scalar(t, 8, "<I")
            shape = w.ref(t, 4)
            rank = w.u32(shape) if shape is not None else 0
            q = w.ref(t, 12)
            nscale = w.u32(w.ref(q, 8)) if q is not None and w.ref(q, 8) is not None else 0
            kind = ("weight" if ttype == INT8 and rank >= 2 else "bias" if ttype == INT32 and nscale > 1
                    else "const") if buf else "activation"
            kinds.append(kind)
            counts[f"#{kind} tensors"] += 1
            if buf:
                role[buf] = {"weight": "weights", "bias": "biases"}.get(kind, "other constants")
        # quantization first (shared vectors go to the first role that reaches them, weights first)
        order = sorted(range(len(tensors)), key=lambda i: ("weight", "bias", "const", "activation").index(kinds[i]))
        for i in order:
            t = tensors[i]
            q = w.ref(t, 12)
            if q is None:
                continue
            w.table(q, "quant tables")
            per_channel = w.ref(q, 8) is not None and w.u32(w.ref(q, 8)) > 1
            scales = w.vector(w.ref(q, 8), 4, {"weight": "weight scales", "bias": "bias scales"}
                              .get(kinds[i], "other scales") if per_channel else "tensor quant")
            if kinds[i] == "weight" and per_channel:
                counts["#channels"] += len(scales)
            w.vector(w.ref(q, 10), 8, "zero points" if per_channel else "tensor quant")
            w.vector(w.ref(q, 4), 4, "tensor quant")
            w.vector(w.ref(q, 6), 4, "tensor quant")
        for t in tensors:
            w.table(t, "tensor tables")
            w.vector(w.ref(t, 4), 4, "tensor tables")
            w.vector(w.ref(t, 18), 4, "tensor tables")
            w.string(w.ref(t, 10), "tensor names")
        for o in w.tables(w.ref(sg, 10), "operator tables"):
            counts["#operators"] += 1
            w.table(o, "operator tables")
            w.vector(w.ref(o, 6), 4, "operator tables")
            w.vector(w.ref(o, 8), 4, "operator tables")
            w.vector(w.ref(o, 20), 4, "operator tables")
            opt = w.ref(o, 12)
            if opt is not None:
                w.table(opt, "operator tables")
                if w.scalar(o, 10, "<B") == RESHAPE_OPTIONS:    # new_shape
                    w.vector(w.ref(opt, 4), 4, "operator tables")
    for k, b in enumerate(buffers):
        w.table(b, "buffer tables")
        part = "metadata" if k in meta_bufs else role.get(k, "other constants")
        w.vector(w.ref(b, 4), 1, part)
        counts["#buffers"] += 1
    out = Counter(p if p is not None else "padding" for p in w.owner)
    res = dict(sorted(out.items(), key=lambda kv: -kv[1]))
    res.update(counts)
    res["total"] = len(blob)
    return res


def graph_bytes(parts: dict) -> int:
    """Bytes that are neither weights nor the per-channel data the int8 spec requires."""
    return parts["total"] - parts.get("weights", 0) - sum(parts.get(k, 0) for k in PER_CHANNEL)


def show(name: str, parts: dict) -> str:
    total = parts["total"]
    rows = [f"{name}: {total:,} B"]
    for k, v in parts.items():
        if k == "total" or k.startswith("#"):
            continue
        rows.append(f"  {k:<16} {v:>10,}  {100 * v / total:5.1f}%")
    rows.append("  " + ", ".join(f"{k[1:]} {v:,}" for k, v in parts.items() if k.startswith("#")))
    return "\n".join(rows)


if __name__ == "__main__":
    for f in sys.argv[1:]:
        print(show(f, breakdown(Path(f).read_bytes())))
