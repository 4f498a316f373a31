"""FLOP count of ResNet-50 at a given (batch, height, width): computed per layer, never a constant.

Two ways that must agree: ``resnet50_flop`` counts torchvision's ResNet-50 layer by layer from its
architecture (pure, instant), and ``onnx_flop`` walks an exported ONNX graph's Conv/Gemm/MatMul nodes
with shapes inferred for that size (the model actually benchmarked). Both count 2 FLOP per
multiply-accumulate of convolutions and matrix products only, like ``torch.utils.flop_counter``:
batch-norm, ReLU, additions and pooling are under 1% of the work and are left out.
ResNet-50 at 1x3x224x224 is 4.09 GMAC = 8.18 GFLOP.
"""

from __future__ import annotations

from pathlib import Path

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.shapes import MAX_BATCH, Resolution

RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
NUM_CLASSES = 1000


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


def resnet50_flop(batch: int, h: int, w: int) -> int:
    """FLOP of torchvision's ResNet-50 forward pass at [batch, 3, h, w] (convolutions and the classifier)."""
    size = Resolution(h, w)  # raises a UsageError naming a side ResNet-50 cannot take
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise UsageError(f"batch must be a whole number in 1..{MAX_BATCH}, got {batch!r}")
    h, w = conv_out(size.h, 7, 2, 3), conv_out(size.w, 7, 2, 3)
    flop = conv_flop(batch, 3, 64, h, w, 7)
    h, w = conv_out(h, 3, 2, 1), conv_out(w, 3, 2, 1)
    c_in = 64
    for stage, (blocks, width) in enumerate(zip(RESNET50_BLOCKS, RESNET50_WIDTHS, strict=True)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            block_flop, h, w = _bottleneck(batch, c_in, width, stride, h, w)
            flop += block_flop
            c_in = width * EXPANSION
    return flop + 2 * batch * c_in * NUM_CLASSES


def onnx_flop(model_path: str | Path, batch: int, h: int, w: int) -> int:
    """FLOP of the Conv, Gemm and MatMul nodes of an NCHW ONNX model, its free dims pinned to (batch, h, w)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(model_path))
    except (OSError, ValueError, DecodeError) as exc:
        raise IntegrityError(f"cannot read ONNX model {model_path}: {exc}") from None
    _pin_input(model, (batch, 3, h, w))
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _known_shapes(inferred)
    total = 0
    for node in inferred.graph.node:
        if node.op_type in _COUNTERS:
            total += _COUNTERS[node.op_type](node, shapes)
    return total


def _pin_input(model, nchw: tuple[int, int, int, int]) -> None:
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise IntegrityError(f"model input {graph_input.name!r} has {len(dims)} dims; an NCHW image input has 4")
    for dim, value in zip(dims, nchw, strict=True):
        dim.Clear()
        dim.dim_value = value


def _known_shapes(model) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {init.name: tuple(init.dims) for init in model.graph.initializer}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes


def _shape(shapes: dict[str, tuple[int, ...]], name: str, node) -> tuple[int, ...]:
    if name not in shapes:
        raise IntegrityError(
            f"cannot infer the shape of {name!r} at {node.op_type} node {node.name!r}",
            hint="count the exported model (manifest onnx file): backend-optimised files use ops shape inference skips",
        )
    return shapes[name]


def _attr(node, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute.i if attribute.type == attribute.INT else attribute
    return default


def _conv(node, shapes) -> int:
    out = _shape(shapes, node.output[0], node)
    weight = _shape(shapes, node.input[1], node)
    macs_per_output = 1
    for d in weight[1:]:
        macs_per_output *= d
    outputs = 1
    for d in out:
        outputs *= d
    return 2 * outputs * macs_per_output


def _gemm(node, shapes) -> int:
    a = _shape(shapes, node.input[0], node)
    out = _shape(shapes, node.output[0], node)
    k = a[0] if _attr(node, "transA", 0) else a[1]
    return 2 * out[0] * out[1] * k


def _matmul(node, shapes) -> int:
    a = _shape(shapes, node.input[0], node)
    out = _shape(shapes, node.output[0], node)
    outputs = 1
    for d in out:
        outputs *= d
    return 2 * outputs * a[-1]


_COUNTERS = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul}
