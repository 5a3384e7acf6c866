"""MobileNet V1, V2 and V3-small, narrow and at 64x64, as PyTorch/Paddle export them.

* V1: depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, BN, ReLU6 as
  ``Clip`` with min/max inputs), ``Flatten`` before the classifier.
* V2: inverted residuals (1x1 expand, 3x3 depthwise, linear 1x1 project) with
  an ``Add`` where stride 1 keeps the width; a dynamic ``batch`` input, small
  constants as ``Constant`` nodes and the ``x.view(x.size(0), -1)`` shape
  subgraph, as the TorchScript exporter writes them.
* V3-small: SE blocks (GlobalAveragePool, 1x1 convs, ``HardSigmoid``, ``Mul``
  scale), h-swish decomposed as ``x * Clip(x + 3, 0, 6) / 6``, 5x5 depthwise.
"""
from __future__ import annotations

from .net import Net

CLASSES = 10


def mobilenet_v1():
    net = Net("mobilenet_v1", [1, 3, 64, 64], seed=101)
    x = net.relu6(net.bn(net.conv(net.x, 8, 3, stride=2)))
    for cout, s in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1)]:
        x = net.relu6(net.bn(net.conv(x, net.ch[x], 3, stride=s, group=net.ch[x])))
        x = net.relu6(net.bn(net.conv(x, cout, 1)))
    x = net.flatten(net.op("GlobalAveragePool", [x]))
    return net.model([net.gemm(x, 128, CLASSES)])


def _inverted_residual(net: Net, x: str, t: int, cout: int, stride: int) -> str:
    cin = net.ch[x]
    h = x
    if t != 1:
        h = net.relu6(net.bn(net.conv(h, cin * t, 1)))
    h = net.relu6(net.bn(net.conv(h, net.ch[h], 3, stride=stride, group=net.ch[h])))
    h = net.bn(net.conv(h, cout, 1))
    return net.op("Add", [x, h]) if stride == 1 and cin == cout else h


def mobilenet_v2():
    net = Net("mobilenet_v2", ["batch", 3, 64, 64], seed=102, const_nodes=True)
    x = net.relu6(net.bn(net.conv(net.x, 16, 3, stride=2)))
    for t, c, n, s in [(1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 2, 2), (4, 24, 2, 1), (4, 32, 1, 2)]:
        for i in range(n):
            x = _inverted_residual(net, x, t, c, s if i == 0 else 1)
    x = net.relu6(net.bn(net.conv(x, 64, 1)))
    x = net.torch_flatten(net.op("GlobalAveragePool", [x]))
    return net.model([net.gemm(x, 64, CLASSES)])


def _se(net: Net, x: str, hsig) -> str:
    c = net.ch[x]
    s = net.op("GlobalAveragePool", [x])
    s = net.relu(net.conv(s, max(8, c // 4), 1, bias=True))
    s = hsig(net.conv(s, c, 1, bias=True))
    return net.op("Mul", [x, s])


def mobilenet_v3_small():
    net = Net("mobilenet_v3_small", [1, 3, 64, 64], seed=103)
    x = net.hswish_decomposed(net.bn(net.conv(net.x, 16, 3, stride=2)))
    # kernel, expansion width, out, SE, activation, stride
    cfg = [(3, 16, 16, True, "RE", 2), (3, 32, 24, False, "RE", 2), (3, 48, 24, False, "RE", 1),
           (5, 64, 32, True, "HS", 2), (5, 96, 32, True, "HS", 1), (5, 96, 48, True, "HS", 1)]
    for k, exp, cout, se, act, s in cfg:
        act_fn = net.relu if act == "RE" else net.hswish_decomposed
        cin, h = net.ch[x], x
        if exp != cin:
            h = act_fn(net.bn(net.conv(h, exp, 1)))
        h = act_fn(net.bn(net.conv(h, exp, k, stride=s, group=exp)))
        if se:
            h = _se(net, h, net.hsigmoid)
        h = net.bn(net.conv(h, cout, 1))
        x = net.op("Add", [x, h]) if s == 1 and cin == cout else h
    x = net.hswish_decomposed(net.bn(net.conv(x, 96, 1)))
    x = net.hswish_decomposed(net.conv(net.op("GlobalAveragePool", [x]), 128, 1, bias=True))
    return net.model([net.gemm(net.flatten(x), 128, CLASSES)])
