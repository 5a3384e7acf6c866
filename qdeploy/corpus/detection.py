"""A Tiny-YOLOv3 style detector (96x96, opset 11).

Conv + BN + ``LeakyRelu(0.1)`` layers with 2x2 s2 max pools, the 2x2 s1
max pool with asymmetric padding, two heads at strides 32 and 16 (3x3 and
6x6 on the 96x96 input): the coarse route goes through a 1x1 conv and a nearest x2 ``Resize`` (opset-11
form with ``roi`` and ``scales`` inputs, asymmetric coordinates, floor
rounding -- what ``nn.Upsample`` exports) and is concatenated with the
stride-16 route. Heads are plain convs with bias: 3 anchors x (5 + 3 classes).
"""
from __future__ import annotations

from .net import Net

HEAD = 3 * (5 + 3)


def _cbl(net: Net, x: str, cout: int, k: int = 3) -> str:
    return net.leaky(net.bn(net.conv(x, cout, k)), 0.1)


def _pool(net: Net, x: str) -> str:
    return net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])


def tiny_yolo():
    net = Net("tiny_yolo", [1, 3, 96, 96], seed=109, opset=11)
    x = net.x
    for c in (8, 16, 32, 64):
        x = _pool(net, _cbl(net, x, c))                          # 48, 24, 12, 6
    route16 = _cbl(net, x, 64)                                   # 6x6, stride 16
    x = _cbl(net, _pool(net, route16), 128)                      # 3x3, stride 32
    x = net.op("MaxPool", [x], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    route32 = _cbl(net, _cbl(net, x, 128), 64, k=1)
    head32 = net.conv(_cbl(net, route32, 128), HEAD, 1, bias=True)
    up = net.resize(_cbl(net, route32, 32, k=1), 2.0, "nearest", "asymmetric", "floor")
    y = _cbl(net, net.concat([up, route16]), 64)
    head16 = net.conv(y, HEAD, 1, bias=True)
    return net.model([head32, head16])
