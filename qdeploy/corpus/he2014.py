"""He & Sun 2014 style net ("CNNs at constrained time cost"), 112x112, with SPP.

A 7x7 s2 stem conv, a 3x3 s3 max pool, stacks of unpadded 2x2 convs (each
shrinks the map by one), and spatial pyramid pooling on the last 6x6 map:
three ``MaxPool`` levels (6x6 s6 -> 1x1, 3x3 s3 -> 2x2, 2x2 s2 -> 3x3), each
flattened with the ``x.view(x.size(0), -1)`` shape subgraph, concatenated
and fed to two ``Gemm`` layers.
"""
from __future__ import annotations

from .net import Net

CLASSES = 10


def he2014():
    net = Net("he2014", [1, 3, 112, 112], seed=111)
    x = net.relu(net.bn(net.conv(net.x, 16, 7, stride=2)))                  # 56
    x = net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[3, 3])         # 18
    for c in (32, 32):
        x = net.relu(net.bn(net.conv(x, c, 2, pad=0)))                      # 17, 16
    x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])         # 8
    for c in (64, 64):
        x = net.relu(net.bn(net.conv(x, c, 2, pad=0)))                      # 7, 6
    levels = [net.torch_flatten(net.op("MaxPool", [x], kernel_shape=[k, k], strides=[k, k]))
              for k in (6, 3, 2)]
    x = net.concat(levels)
    x = net.relu(net.gemm(x, 64 * (1 + 4 + 9), 64))
    return net.model([net.gemm(x, 64, CLASSES)])
