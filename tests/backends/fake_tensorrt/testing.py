"""Helpers for tests that use the double: a tiny ONNX classifier with ResNet-50's interface, and a logger."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_classifier_onnx(
    path,
    classes: int = 1000,
    channels: int = 8,
    seed: int = 0,
    relu: bool = False,
    input_name: str = "images",
    output_name: str = "logits",
    opset: int = 17,
) -> Path:
    """Write a Conv -> (Relu) -> GlobalAveragePool -> Flatten -> Gemm model: input ``images`` float32
    [batch, 3, height, width] (all dynamic), output ``logits`` [batch, classes]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.2, "conv_w"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32) * 0.1, "conv_b"),
        numpy_helper.from_array(rng.standard_normal((classes, channels)).astype(np.float32) * 0.2, "fc_w"),
        numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32) * 0.1, "fc_b"),
    ]
    nodes = [helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["conv"], name="conv", pads=[1, 1, 1, 1])]
    last = "conv"
    if relu:
        nodes.append(helper.make_node("Relu", ["conv"], ["relu"], name="relu"))
        last = "relu"
    nodes += [
        helper.make_node("GlobalAveragePool", [last], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], [output_name], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_classifier",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", classes])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def recording_logger(trt):
    """An ILogger subclass instance that keeps (severity, message) pairs in ``.messages``."""

    class Recorder(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

        def errors(self):
            return [m for s, m in self.messages if s <= trt.ILogger.ERROR]

    return Recorder()
