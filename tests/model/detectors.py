"""torchvision detectors for the backbone tests, made here without the network: a seeded Faster R-CNN built as
torchvision builds a trained one (ResNet-50 body with FrozenBatchNorm2d, FPN with the max-pool level), saved as its
reference training script saves checkpoints; and key-only stand-ins of detectors with other backbones."""

from __future__ import annotations

import functools
from pathlib import Path

DETECTOR_SEED = 0


def make_detector(seed: int = DETECTOR_SEED):
    """A Faster R-CNN ResNet-50 FPN in eval mode: the body carries rsz-export's calibrated seeded weights (so its
    feature maps have a trained network's statistics), the FPN and heads torchvision's seeded initialisation."""
    import torch
    import torchvision
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    from rsz_export.model.weights import random_state_dict

    trained = random_state_dict(seed)  # before seeding torch: generating it the first time draws from torch's RNG
    torch.manual_seed(seed)
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    body.load_state_dict({k: v for k, v in trained.items() if not k.endswith("num_batches_tracked")})
    backbone = _resnet_fpn_extractor(body, 3)  # what fasterrcnn_resnet50_fpn does with trained weights
    return torchvision.models.detection.FasterRCNN(backbone, num_classes=91).eval()


def save_detector(detector, path: Path) -> Path:
    """``detector`` saved as torchvision's detection reference script does: the state_dict under ``model``
    beside the optimizer (with momentum buffers), the scheduler (whose milestones are a Counter), the epoch and
    the arguments (an argparse.Namespace)."""
    import argparse

    import torch

    optimizer = torch.optim.SGD(detector.rpn.parameters(), lr=0.02, momentum=0.9)
    for parameter in detector.rpn.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for parameter in detector.rpn.parameters():
        parameter.grad = None
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16, 22])
    torch.save({"model": detector.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": 25,
                "args": argparse.Namespace(model="fasterrcnn_resnet50_fpn", lr=0.02, epochs=26)}, path)
    return path


def key_only_checkpoint(shapes: dict, path: Path) -> Path:
    """A checkpoint with these tensor names and shapes, every tensor a zero expanded to its shape (one element
    stored): what a layout check reads, at a few kilobytes."""
    import torch

    state = {name: torch.zeros(()).expand(shape) for name, shape in shapes.items()}
    torch.save({"model": state, "epoch": 1}, path)
    return path


@functools.lru_cache(maxsize=1)
def _resnet50_detector() -> tuple:
    import torch
    import torchvision
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    with torch.device("meta"):
        model = torchvision.models.detection.FasterRCNN(resnet_fpn_backbone(backbone_name="resnet50", weights=None), 91)
    return tuple((name, tuple(t.shape)) for name, t in model.state_dict().items())


def detector_shapes(backbone: str = "resnet50") -> dict:
    """The tensor names and shapes of a torchvision Faster R-CNN FPN checkpoint with ``backbone`` (``resnet50``,
    ``resnet101``: layer3 of 23 blocks, ``mobilenet``: a MobileNetV3 body), or of a ResNet-50 ``classifier``."""
    shapes = dict(_resnet50_detector())
    if backbone == "classifier":
        body = "backbone.body."
        return {k[len(body):]: v for k, v in shapes.items() if k.startswith(body)} | {"fc.weight": (1000, 2048),
                                                                                       "fc.bias": (1000,)}
    if backbone == "resnet101":
        block = {k: v for k, v in shapes.items() if k.startswith("backbone.body.layer3.5.")}
        for index in range(6, 23):
            shapes |= {k.replace("layer3.5.", f"layer3.{index}."): v for k, v in block.items()}
    if backbone == "mobilenet":
        shapes = {k: v for k, v in shapes.items() if not k.startswith("backbone.body.")}
        shapes |= {"backbone.body.0.0.weight": (16, 3, 3, 3), "backbone.body.0.1.weight": (16,),
                   "backbone.body.1.block.0.0.weight": (16, 1, 3, 3), "backbone.body.16.0.weight": (960, 160, 1, 1)}
    return shapes


def tiny_feature_onnx(path: Path, outputs: str = "fpn", channels: dict | None = None, metadata: dict | None = None):
    """A small stand-in with a backbone's interface: each feature map a strided 1x1 convolution of the input
    (kernel 1, stride s: ceil(side / s), as the real network's sides), with the real names and channel counts
    (``channels`` overrides some, to make a wrong interface)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from rsz_export.interface import feature_maps
    from tests.helpers import save_model

    nodes, inits, values = [], [], []
    rng = np.random.default_rng(0)
    for name, count, stride in feature_maps(outputs):
        count = (channels or {}).get(name, count)
        weight = rng.standard_normal((count, 3, 1, 1)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w_{name}"))
        nodes.append(helper.make_node("Conv", ["images", f"w_{name}"], [name], strides=[stride, stride]))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", count, f"h{stride}",
                                                                             f"w{stride}"]))
    graph = helper.make_graph(
        nodes, "tiny_backbone",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])], values, inits)
    return save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path, metadata)


def tiny_feature_module(onnx_path: Path):
    """The stand-in of ``tiny_feature_onnx`` as a torch module with the same weights, giving its maps as a tuple in
    the ONNX's output order: a PyTorch reference for validate (whose manifest names weights the stand-in lacks)."""
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    convs = [(weights[node.input[1]], tuple(next(a.ints for a in node.attribute if a.name == "strides")))
             for node in model.graph.node]

    class Maps(torch.nn.Module):
        def forward(self, x):
            return tuple(torch.nn.functional.conv2d(x, w.to(x.dtype), stride=s) for w, s in convs)

    return Maps().eval()
