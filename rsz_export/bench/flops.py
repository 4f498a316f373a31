"""FLOP count of ResNet-50 at a given (batch, height, width): computed per layer, never a constant. Pure.

``resnet50_flop`` counts torchvision's ResNet-50 layer by layer from its architecture, as a classifier or as a
backbone (``--outputs features|fpn``); the tests check each against a walk of the exported ONNX graph. It
counts 2 FLOP per multiply-accumulate of convolutions and matrix products only, like
``torch.utils.flop_counter``: batch-norm, ReLU, additions and pooling are under 1% of the work and are left out.
ResNet-50 at 1x3x224x224 is 4.09 GMAC = 8.18 GFLOP.
"""

from __future__ import annotations

from rsz_export.errors import check_int
from rsz_export.interface import CHANNELS, DEFAULT_OUTPUTS, FEATURE_CHANNELS, FPN_CHANNELS, NUM_CLASSES
from rsz_export.shapes import MAX_BATCH, Resolution

RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


def conv_out(size: int, kernel: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """Output side length of a convolution or pooling window (floor rounding, as torch and ONNX do)."""
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def conv_flop(batch: int, c_in: int, c_out: int, h_out: int, w_out: int, kernel: int, groups: int = 1) -> int:
    """2 x multiply-accumulates of a convolution producing [batch, c_out, h_out, w_out]."""
    return 2 * batch * c_out * h_out * w_out * (c_in // groups) * kernel * kernel


def _bottleneck(batch: int, c_in: int, width: int, stride: int, h: int, w: int) -> tuple[int, int, int]:
    """FLOP of one torchvision Bottleneck (stride on the 3x3 conv, as in ResNet v1.5) and its output size."""
    c_out = width * EXPANSION
    ho, wo = conv_out(h, 3, stride, 1), conv_out(w, 3, stride, 1)
    flop = conv_flop(batch, c_in, width, h, w, 1)
    flop += conv_flop(batch, width, width, ho, wo, 3)
    flop += conv_flop(batch, width, c_out, ho, wo, 1)
    if stride != 1 or c_in != c_out:
        flop += conv_flop(batch, c_in, c_out, ho, wo, 1)
    return flop, ho, wo


def _body(batch: int, h: int, w: int) -> tuple[int, list[tuple[int, int]]]:
    """FLOP of the body (stem and layer1..layer4) and the side lengths each stage ends with."""
    h, w = conv_out(h, 7, 2, 3), conv_out(w, 7, 2, 3)
    flop = conv_flop(batch, CHANNELS, 64, h, w, 7)
    h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
    c_in, sides = 64, []
    for stage, (blocks, width) in enumerate(zip(RESNET50_BLOCKS, RESNET50_WIDTHS, strict=True)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            block_flop, h, w = _bottleneck(batch, c_in, width, stride, h, w)
            flop += block_flop
            c_in = width * EXPANSION
        sides.append((h, w))
    return flop, sides


def resnet50_flop(batch: int, h: int, w: int, num_classes: int = NUM_CLASSES, outputs: str = DEFAULT_OUTPUTS) -> int:
    """FLOP of torchvision's ResNet-50 forward pass at [batch, 3, h, w]: convolutions and the classifier (whose
    head has ``num_classes`` outputs); for ``outputs`` ``features`` the body alone, for ``fpn`` the body and the
    feature pyramid (a 1x1 lateral and a 3x3 output convolution of 256 channels per level; its top-down
    upsampling and extra max-pool level do no multiply-accumulates)."""
    size = Resolution(h, w)  # raises a UsageError naming a side ResNet-50 cannot take
    check_int(batch, "batch", 1, MAX_BATCH)
    flop, sides = _body(batch, size.h, size.w)
    if outputs == "features":
        return flop
    if outputs == "fpn":
        for c_in, (ho, wo) in zip(FEATURE_CHANNELS, sides, strict=True):
            flop += conv_flop(batch, c_in, FPN_CHANNELS, ho, wo, 1) + conv_flop(batch, FPN_CHANNELS, FPN_CHANNELS,
                                                                                  ho, wo, 3)
        return flop
    check_int(num_classes, "num_classes", 1, 1 << 31)
    return flop + 2 * batch * FEATURE_CHANNELS[-1] * num_classes
