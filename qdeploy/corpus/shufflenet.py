"""ShuffleNet V2 (x0.25-ish, 64x64): channel split, two branches, concat, channel shuffle.

The basic unit splits the channels in two -- with ``Split`` in one unit and
with two ``Slice`` nodes in another (both occur in exports of ``chunk``) --
and the shuffle is ``Reshape(1, 2, C/2, H, W) -> Transpose(0, 2, 1, 3, 4) ->
Reshape(1, C, H, W)``. The head pools with ``ReduceMean`` over H and W
(``x.mean([2, 3])``), which feeds the classifier ``Gemm`` directly.
"""
from __future__ import annotations

import numpy as np

from .net import Net

CLASSES = 10


def _shuffle(net: Net, x: str, h: int, w: int) -> str:
    c = net.ch[x]
    y = net.reshape(x, [1, 2, c // 2, h, w], ch=2)
    y = net.op("Transpose", [y], perm=[0, 2, 1, 3, 4])
    return net.reshape(y, [1, c, h, w], ch=c)


def _branch(net: Net, x: str, cout: int, stride: int) -> str:
    h = net.relu(net.bn(net.conv(x, cout, 1)))
    h = net.bn(net.conv(h, cout, 3, stride=stride, group=cout))
    return net.relu(net.bn(net.conv(h, cout, 1)))


def _down_unit(net: Net, x: str, cout: int, hw: int) -> str:
    half = cout // 2
    b1 = net.bn(net.conv(x, net.ch[x], 3, stride=2, group=net.ch[x]))
    b1 = net.relu(net.bn(net.conv(b1, half, 1)))
    return _shuffle(net, net.concat([b1, _branch(net, x, half, 2)]), hw, hw)


def _basic_unit(net: Net, x: str, hw: int, use_slice: bool) -> str:
    c = net.ch[x]
    half = c // 2
    if use_slice:
        axes = net.const("axes", [1], np.int64)
        a = net.op("Slice", [x, net.const("starts", [0], np.int64), net.const("ends", [half], np.int64), axes],
                   ch=half)
        b = net.op("Slice", [x, net.const("starts", [half], np.int64),
                             net.const("ends", [2 ** 63 - 1], np.int64), axes], ch=half)
    else:
        a, b = net.op("Split", [x, net.const("split", [half, half], np.int64)], n_out=2, ch=half, axis=1)
    return _shuffle(net, net.concat([a, _branch(net, b, half, 1)]), hw, hw)


def shufflenet_v2():
    net = Net("shufflenet_v2", [1, 3, 64, 64], seed=104)
    x = net.relu(net.bn(net.conv(net.x, 16, 3, stride=2)))
    x = net.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])   # 16x16
    x = _basic_unit(net, _down_unit(net, x, 32, 8), 8, use_slice=False)
    x = _basic_unit(net, _down_unit(net, x, 64, 4), 4, use_slice=True)
    x = net.relu(net.bn(net.conv(x, 128, 1)))
    x = net.op("ReduceMean", [x], axes=[2, 3], keepdims=0)
    return net.model([net.gemm(x, 128, CLASSES)])
