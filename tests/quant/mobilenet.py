"""A small MobileNet-like ONNX model for end-to-end quantization tests:
stem conv + BN + ReLU6, depthwise-separable blocks, an inverted residual (Add),
an SE block (GAP, 1x1 convs, h-sigmoid, Mul), h-swish, a Concat branch,
GAP + Flatten + Gemm. Deterministic weights from a seed."""
from __future__ import annotations

import numpy as np
from onnx import helper

from tests.helpers import model


class _B:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], {}, 0

    def name(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def conv(self, x, cin, cout, k=3, s=1, group=1, act="relu6", bn=True):
        w = self.name("w")
        fan = cin // group * k * k
        self.inits[w] = (self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2 / fan)).astype(np.float32)
        y = self.name("conv")
        self.nodes.append(helper.make_node("Conv", [x, w], [y], kernel_shape=[k, k], strides=[s, s],
                                           pads=[k // 2] * 4, group=group))
        if bn:
            p = [self.name(b) for b in ("g", "b", "m", "v")]
            self.inits[p[0]] = self.rng.uniform(0.5, 1.5, cout).astype(np.float32)
            self.inits[p[1]] = self.rng.uniform(-0.3, 0.3, cout).astype(np.float32)
            self.inits[p[2]] = self.rng.uniform(-0.2, 0.2, cout).astype(np.float32)
            self.inits[p[3]] = self.rng.uniform(0.5, 1.5, cout).astype(np.float32)
            z = self.name("bn")
            self.nodes.append(helper.make_node("BatchNormalization", [y] + p, [z]))
            y = z
        return self.act(y, act)

    def act(self, y, act):
        if act is None:
            return y
        z = self.name(act)
        if act == "relu6":
            lo, hi = self.name("lo"), self.name("hi")
            self.inits[lo], self.inits[hi] = np.float32(0), np.float32(6)
            self.nodes.append(helper.make_node("Clip", [y, lo, hi], [z]))
        elif act == "relu":
            self.nodes.append(helper.make_node("Relu", [y], [z]))
        elif act == "hswish":
            self.nodes.append(helper.make_node("HardSwish", [y], [z]))
        elif act == "hsigmoid":
            self.nodes.append(helper.make_node("HardSigmoid", [y], [z], alpha=1 / 6, beta=0.5))
        elif act == "sigmoid":
            self.nodes.append(helper.make_node("Sigmoid", [y], [z]))
        return z

    def op(self, op, ins, **attrs):
        z = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [z], **attrs))
        return z


def mobilenet_like(size=32, seed=0, classes=10, width=16):
    b = _B(seed)
    c = width
    x = b.conv("x", 3, c, 3, 2)                                # stem
    x = b.conv(x, c, c, 3, 1, group=c)                         # depthwise
    x = b.conv(x, c, 2 * c, 1, act="relu6")                    # pointwise
    # inverted residual: expand, depthwise, project, add
    e = b.conv(x, 2 * c, 4 * c, 1)
    e = b.conv(e, 4 * c, 4 * c, 3, 1, group=4 * c, act="hswish")
    # SE block
    s = b.op("GlobalAveragePool", [e])
    s = b.conv(s, 4 * c, c, 1, act="relu", bn=False)
    s = b.conv(s, c, 4 * c, 1, act="hsigmoid", bn=False)
    e = b.op("Mul", [e, s])
    p = b.conv(e, 4 * c, 2 * c, 1, act=None)
    x = b.op("Add", [x, p])
    # downsample, concat of two branches
    d1 = b.conv(x, 2 * c, 2 * c, 3, 2)
    d2 = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.op("Concat", [d1, d2], axis=1)
    x = b.conv(x, 4 * c, 4 * c, 1, act="relu")
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    w = b.name("fcw")
    b.inits[w] = (b.rng.standard_normal((classes, 4 * c)) * 0.2).astype(np.float32)
    bias = b.name("fcb")
    b.inits[bias] = (b.rng.standard_normal(classes) * 0.1).astype(np.float32)
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], transB=1))
    return model(b.nodes, {"x": (1, 3, size, size)}, ["logits"], b.inits, opset=14)
