"""A second FLOP count for the tests: walk an ONNX graph's Conv/Gemm/MatMul nodes with shapes inferred at one
size. It checks the library's analytic count against the model actually exported."""

from __future__ import annotations

from pathlib import Path

import onnx


def onnx_flop(model_path: str | Path, batch: int, h: int, w: int) -> int:
    """FLOP of the Conv, Gemm and MatMul nodes of an NCHW ONNX model, its free dims pinned to (batch, h, w)."""
    model = onnx.load(str(model_path))
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
    assert len(dims) == 4, f"model input {graph_input.name!r} has {len(dims)} dims"
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
    assert name in shapes, f"cannot infer the shape of {name!r} at {node.op_type} node {node.name!r}"
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
