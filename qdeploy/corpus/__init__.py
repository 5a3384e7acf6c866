"""The architecture corpus: small ONNX models, built with fixed seeds, of the
CNN families qdeploy must handle (see ../shared/DESIGN.md §6).

Each builder returns an ``onnx.ModelProto`` that imports and runs in well
under a second, keeps BatchNorm unfolded and writes activations and shape
plumbing the way PyTorch and Paddle export them, so the graph passes have
real work. ``CORPUS`` is the plain registry ``{name: builder}``.
"""
from __future__ import annotations

import os
from typing import Callable

import onnx

from . import detection, ghostnet, he2014, mobilenet, resnet, segmentation, shufflenet, squeezenet

CORPUS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mobilenet_v1": mobilenet.mobilenet_v1,
    "mobilenet_v2": mobilenet.mobilenet_v2,
    "mobilenet_v3_small": mobilenet.mobilenet_v3_small,
    "shufflenet_v2": shufflenet.shufflenet_v2,
    "squeezenet": squeezenet.squeezenet,
    "resnet": resnet.resnet,
    "resnext": resnet.resnext,
    "ghostnet": ghostnet.ghostnet,
    "tiny_yolo": detection.tiny_yolo,
    "seg_head": segmentation.seg_head,
    "he2014": he2014.he2014,
}


def build(name: str) -> onnx.ModelProto:
    """The corpus model ``name`` (a fresh, identical copy on every call)."""
    if name not in CORPUS:
        raise KeyError(f"no corpus model '{name}'; known: {', '.join(CORPUS)}")
    return CORPUS[name]()


def save(name: str, path: str | os.PathLike) -> None:
    """Write the corpus model ``name`` to ``path`` (an .onnx file)."""
    from ..fsutil import write_bytes
    write_bytes(path, build(name).SerializeToString())
