"""SqueezeNet 1.1 style (64x64, opset 11): Fire modules (1x1 squeeze, then 1x1
and 3x3 expand branches concatenated), ceil-mode max pooling, and a conv
classifier followed by GlobalAveragePool and ``Flatten``.

Decision: unlike the 2016 original, every conv but the classifier has a
BatchNorm after it (as the BN variants deployed today do), so the folding
pass has work and the Fire concat joins two BN-scaled branches of different
ranges.
"""
from __future__ import annotations

from .net import Net

CLASSES = 10


def _fire(net: Net, x: str, squeeze: int, expand: int) -> str:
    s = net.relu(net.bn(net.conv(x, squeeze, 1)))
    e1 = net.relu(net.bn(net.conv(s, expand, 1)))
    e3 = net.relu(net.bn(net.conv(s, expand, 3)))
    return net.concat([e1, e3])


def _pool(net: Net, x: str) -> str:
    return net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)


def squeezenet():
    net = Net("squeezenet", [1, 3, 64, 64], seed=105, opset=11)
    x = _pool(net, net.relu(net.bn(net.conv(net.x, 32, 3, stride=2, pad=0))))   # 31 -> 15
    x = _pool(net, _fire(net, _fire(net, x, 8, 16), 8, 16))                      # 7
    x = _pool(net, _fire(net, _fire(net, x, 16, 32), 16, 32))                    # 3
    x = _fire(net, x, 24, 48)
    x = net.relu(net.conv(x, CLASSES, 1, bias=True))
    return net.model([net.flatten(net.op("GlobalAveragePool", [x]))])
