"""A segmentation head on a small backbone (64x64 in, 5-class 64x64 map out).

Backbone: two s2 conv + BN + SiLU layers (SiLU exported as ``x * Sigmoid(x)``).
Context: dilated 3x3 convs (dilation 2 and 4) and an ASPP-like concat of a
1x1 branch and a dilated branch. Decoder: bilinear ``Resize`` x2
(half-pixel coordinates, as ``F.interpolate(align_corners=False)``), then two
upsampling heads summed: a ``ConvTranspose`` 4x4 s2 path and a sub-pixel path
(1x1 conv to 4x classes, ``DepthToSpace`` CRD, as ``nn.PixelShuffle`` exports).
"""
from __future__ import annotations

from .net import Net

CLASSES = 5


def seg_head():
    net = Net("seg_head", [1, 3, 64, 64], seed=110)
    x = net.silu(net.bn(net.conv(net.x, 16, 3, stride=2)))                  # 32
    x = net.silu(net.bn(net.conv(x, 32, 3, stride=2)))                      # 16
    x = net.relu(net.bn(net.conv(x, 32, 3, dilation=2)))
    x = net.relu(net.bn(net.conv(x, 32, 3, dilation=4)))
    a = net.relu(net.bn(net.conv(x, 16, 1)))
    b = net.relu(net.bn(net.conv(x, 16, 3, dilation=6)))
    x = net.relu(net.bn(net.conv(net.concat([a, b]), 32, 1)))
    x = net.resize(x, 2.0, "linear", "half_pixel")                          # 32
    up = net.relu(net.bn(net.conv_transpose(x, 16, 4, stride=2, pad=1)))   # 64
    logits_t = net.conv(up, CLASSES, 1, bias=True)
    sub = net.conv(x, CLASSES * 4, 1, bias=True)
    logits_s = net.op("DepthToSpace", [sub], ch=CLASSES, blocksize=2, mode="CRD")
    return net.model([net.op("Add", [logits_t, logits_s])])
