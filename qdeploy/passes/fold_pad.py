"""Fold an explicit Pad into the Conv or pool that reads it.

A ``Pad`` (IR attrs ``pads``, ``mode``, ``value``) is folded into its only
consumer's ``pads`` attribute when all of these hold:

* the Pad's output is not a graph output and the consumer reads it as its
  data input (input 0);
* ``mode`` is ``constant``, every pad is >= 0 (negative pads crop) and the
  batch and channel dims are not padded;
* the consumer pads with the same value the Pad writes:
  - ``Conv``: value 0 (a convolution's implicit padding is zeros);
  - ``AveragePool``: value 0 and ``count_include_pad=1`` (with the default 0
    the implicit zeros are left out of the divisor, explicit ones are not)
    and ``ceil_mode=0`` (with ceil_mode, windows that run past the padding
    are divided by a different count);
  - ``MaxPool``: value ``-inf`` only (its implicit padding never wins the max).
    A zero Pad before a MaxPool is equivalent only when the input is never
    negative, which this pass cannot prove on a float graph, so it is kept.
    Every folded MaxPool pad stays below the kernel extent, so no window lies
    wholly in the padding.

ConvTranspose is never a target (its ``pads`` crop the output). The importer
has already turned every ``auto_pad`` into explicit ``pads`` (IR contract).
"""
from __future__ import annotations

import math

from ..ir import Graph, Node

NAME = "fold_pad"


def run(g: Graph, opts) -> list[str]:
    msgs = []
    for pad in [n for n in g.nodes if n.op == "Pad"]:
        cons = g.consumers(pad.outputs[0])
        if len(cons) != 1 or g.is_graph_output(pad.outputs[0]):
            continue
        target = cons[0]
        extra = _spatial_pads(g, pad)
        if extra is None or target.inputs[0] != pad.outputs[0] or target.inputs.count(pad.outputs[0]) != 1:
            continue
        if not _legal(target, float(pad.attrs.get("value", 0.0))):
            continue
        k = len(extra) // 2
        own = [int(p) for p in target.attrs.get("pads", [0] * (2 * k))]
        new = [a + b for a, b in zip(own, extra)]
        if target.op == "MaxPool" and not _windows_overlap_data(target, new):
            continue
        target.attrs["pads"] = new
        g.bypass(pad)
        g.merged(pad.name, target.name)
        msgs.append(f"folded Pad '{pad.name}' (spatial pads {extra[:k]} begin, {extra[k:]} end) "
                    f"into {target.op} '{target.name}'")
    return msgs


def _spatial_pads(g: Graph, pad: Node) -> list[int] | None:
    """``[begin..., end...]`` over the spatial dims, or None if not foldable."""
    mode = pad.attrs.get("mode", "constant")
    pads = [int(p) for p in pad.attrs.get("pads", ())]
    rank = len(g.shape(pad.inputs[0]))
    if mode != "constant" or len(pads) != 2 * rank or rank < 3 or any(p < 0 for p in pads):
        return None
    if pads[0] or pads[1] or pads[rank] or pads[rank + 1]:
        return None
    return pads[2:rank] + pads[rank + 2:]


def _legal(target: Node, value: float) -> bool:
    if target.op == "Conv":
        return value == 0.0
    if target.op == "AveragePool":
        return (value == 0.0 and int(target.attrs.get("count_include_pad", 0)) == 1
                and not int(target.attrs.get("ceil_mode", 0)))
    if target.op == "MaxPool":
        return value == -math.inf and len(target.outputs) == 1
    return False


def _windows_overlap_data(node: Node, pads: list[int]) -> bool:
    kernel = node.attrs["kernel_shape"]   # a MaxPool's is never implicit
    k = len(kernel)
    dil = node.attrs.get("dilations", [1] * k)
    ext = [(kk - 1) * d + 1 for kk, d in zip(kernel, dil)]
    return all(pads[i] < ext[i] and pads[k + i] < ext[i] for i in range(k))
