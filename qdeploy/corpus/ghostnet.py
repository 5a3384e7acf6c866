"""GhostNet (64x64, opset 17): ghost modules and ghost bottlenecks with SE.

A ghost module makes half its outputs with a 1x1 conv and the other half
with a cheap 3x3 depthwise conv of those, then concatenates both. The SE gate
is the hard sigmoid written as ``Clip(x + 3, 0, 6) * (1/6)`` (Paddle's
form, a ``Mul`` by 1/6 instead of a ``Div``), and the head uses the
single-op ``HardSwish`` (opset 14+), as exporters write it today.
"""
from __future__ import annotations

from .mobilenet import _se
from .net import Net

CLASSES = 10


def _ghost(net: Net, x: str, cout: int, relu: bool) -> str:
    act = net.relu if relu else (lambda t: t)
    primary = act(net.bn(net.conv(x, cout // 2, 1)))
    cheap = act(net.bn(net.conv(primary, cout // 2, 3, group=cout // 2)))
    return net.concat([primary, cheap])


def _bottleneck(net: Net, x: str, mid: int, cout: int, stride: int, se: bool) -> str:
    h = _ghost(net, x, mid, relu=True)
    if stride > 1:
        h = net.bn(net.conv(h, mid, 3, stride=stride, group=mid))
    if se:
        h = _se(net, h, lambda t: net.hsigmoid_decomposed(t, div=False))
    h = _ghost(net, h, cout, relu=False)
    if stride == 1 and net.ch[x] == cout:
        short = x
    else:
        short = net.bn(net.conv(x, net.ch[x], 3, stride=stride, group=net.ch[x]))
        short = net.bn(net.conv(short, cout, 1))
    return net.op("Add", [h, short])


def ghostnet():
    net = Net("ghostnet", [1, 3, 64, 64], seed=108, opset=17)
    x = net.relu(net.bn(net.conv(net.x, 16, 3, stride=2)))                               # 32x32
    for mid, cout, stride, se in [(16, 16, 1, False), (48, 24, 2, False), (72, 24, 1, False),
                                  (72, 40, 2, True), (120, 40, 1, True), (240, 80, 2, False)]:
        x = _bottleneck(net, x, mid, cout, stride, se)
    x = net.relu(net.bn(net.conv(x, 160, 1)))
    x = net.hswish(net.conv(net.op("GlobalAveragePool", [x]), 256, 1, bias=True))
    return net.model([net.gemm(net.flatten(x), 256, CLASSES)])
