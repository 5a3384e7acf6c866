"""ResNet (basic blocks) and ResNeXt (grouped bottlenecks), narrow, at 64x64.

* resnet: 7x7 s2 stem + 3x3 s2 max pool, basic blocks with identity
  shortcuts and 1x1 s2 projection shortcuts (conv + BN) where the width or
  the resolution changes, ``Add`` then ``Relu``, GlobalAveragePool and the
  ``x.view(x.size(0), -1)`` shape subgraph before the classifier.
* resnext: bottlenecks whose 3x3 conv is grouped (group 8), projection
  shortcuts, ``Flatten`` before the classifier.
"""
from __future__ import annotations

from .net import Net

CLASSES = 10


def _shortcut(net: Net, x: str, cout: int, stride: int) -> str:
    if stride == 1 and net.ch[x] == cout:
        return x
    return net.bn(net.conv(x, cout, 1, stride=stride))


def _basic(net: Net, x: str, cout: int, stride: int) -> str:
    h = net.relu(net.bn(net.conv(x, cout, 3, stride=stride)))
    h = net.bn(net.conv(h, cout, 3))
    return net.relu(net.op("Add", [h, _shortcut(net, x, cout, stride)]))


def resnet():
    net = Net("resnet", [1, 3, 64, 64], seed=106)
    x = net.relu(net.bn(net.conv(net.x, 16, 7, stride=2)))
    x = net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])   # 16x16
    for cout, stride in [(16, 1), (16, 1), (32, 2), (32, 1), (64, 2)]:
        x = _basic(net, x, cout, stride)
    x = net.torch_flatten(net.op("GlobalAveragePool", [x]))
    return net.model([net.gemm(x, 64, CLASSES)])


def _bottleneck(net: Net, x: str, width: int, cout: int, stride: int, groups: int) -> str:
    h = net.relu(net.bn(net.conv(x, width, 1)))
    h = net.relu(net.bn(net.conv(h, width, 3, stride=stride, group=groups)))
    h = net.bn(net.conv(h, cout, 1))
    return net.relu(net.op("Add", [h, _shortcut(net, x, cout, stride)]))


def resnext():
    net = Net("resnext", [1, 3, 64, 64], seed=107)
    x = net.relu(net.bn(net.conv(net.x, 32, 3, stride=2)))                               # 32x32
    for width, cout, stride in [(32, 64, 1), (64, 128, 2), (64, 128, 1), (128, 192, 2)]:
        x = _bottleneck(net, x, width, cout, stride, groups=8)
    x = net.flatten(net.op("GlobalAveragePool", [x]))
    return net.model([net.gemm(x, 192, CLASSES)])
