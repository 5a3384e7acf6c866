"""Fold a GlobalAveragePool into the 1x1 convolution that reads it (opt-in).

``GlobalAveragePool -> Conv 1x1`` (an SE block's squeeze, a conv head) becomes
one ``Conv`` whose kernel covers the whole H x W map, every tap holding the 1x1
weights divided by ``H * W``: ``W . mean(x) + b == sum_ij (W / HW) . x_ij + b``.
The float result is the same (up to float rounding); what changes under int8
is that the averaged vector is no longer a tensor of its own. As a tensor it is
a per-tensor int8 vector of C channel means of very different sizes, and its
rounding reaches the model as channel-wide errors (an SE gate scales a whole
channel by it). Folded, the int32 accumulator sums the int8 input directly and
only the conv's output is rounded. Per-channel weight quantization gives the
folded kernel the same int8 values as the 1x1 one (every tap is ``W / HW``).

It costs memory and time, which is why it is **not** in ``PIPELINE``: the
folded conv has ``H * W`` times the 1x1 conv's weights and MACs (an 8 x 8 map:
64 times). ``qdeploy quantize --fold-gap`` runs it; each fold is logged with
its cost. Measured (bench/sqnr.py pipeline, 64 calibration / 256 evaluation
inputs): ghostnet (two SE squeezes on 8 x 8 maps and a 4 x 4 conv head) gains
+0.8 dB output SQNR on average over 10 calibration draws, on every one of them
(+0.3 to +1.3), for 9.8x the weights (105 k -> 1.03 M) and +22 % MACs.
mobilenet_v3_small loses 0.3 dB (mean of 3 draws; 6x the weights): its first
SE block's fold (a 16 x 16 map) makes that SE path 2.4 dB more accurate, but
that block's evaluation activations exceed the calibration ranges by up to 2x
and which tensor clips changes with the fold. Worth trying where memory is
not the limit; compare with ``qdeploy run`` before keeping it.

Eligible: the pool's output has exactly one reader, is not a graph output,
and the reader is a ``Conv`` with constant 1x1 weights, ``group`` 1, no
padding, reading it as its data input. The fused conv keeps the reader's name,
outputs, bias and attributes (kernel ``H x W``, stride 1, no padding).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph

NAME = "fold_gap"


def run(g: Graph, opts=None) -> list[str]:
    msgs = []
    for pool in [n for n in g.nodes if n.op == "GlobalAveragePool"]:
        conv = _reader(g, pool)
        if conv is None:
            continue
        x = pool.inputs[0]
        h, w = g.shape(x)[2:]
        weights = g.const(conv.inputs[1])
        folded = np.repeat(np.repeat(weights / np.float32(h * w), h, axis=2), w, axis=3)
        name = g.add_const(conv.inputs[1] + "_fold", folded.astype(np.float32))
        conv.inputs = [x, name] + conv.inputs[2:]
        conv.attrs.update(kernel_shape=[h, w], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1])
        g.nodes.remove(pool)
        g.merged(pool.name, conv.name)
        cout, cin = weights.shape[:2]
        msgs.append(f"folded GlobalAveragePool '{pool.name}' into Conv '{conv.name}' (kernel {h}x{w}: "
                    f"{(h * w - 1) * cin * cout} more MACs and weights)")
    if msgs:
        g.remove_unused()
    return msgs


def _reader(g: Graph, pool):
    """The 1x1 Conv that is the pool output's only reader, or None."""
    out = pool.outputs[0]
    readers = g.consumers(out)
    if len(readers) != 1 or g.is_graph_output(out) or len(g.shape(pool.inputs[0])) != 4:
        return None
    conv = readers[0]
    weights = g.const(conv.inputs[1]) if conv.op == "Conv" else None
    if (weights is None or conv.inputs[0] != out or out in conv.inputs[1:] or weights.ndim != 4
            or weights.shape[2:] != (1, 1) or int(conv.attrs.get("group", 1)) != 1
            or any(conv.attrs.get("pads", [0, 0, 0, 0]))):
        return None
    return conv
