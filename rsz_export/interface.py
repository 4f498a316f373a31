"""The model's interface, shared by every stage: tensor names and layout, class count, build precisions.

An rsz-export model takes ``images`` [batch, 3, height, width] float32 (ImageNet-normalised RGB, NCHW)
and gives ``logits`` [batch, classes] float32, ``classes`` being the head's size (any number >= 1). Exporters,
backends, runners, validators and servers read these names from here, never from a string of their own.
"""

from __future__ import annotations

from collections.abc import Callable

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
CHANNELS = 3
"""RGB."""
NUM_CLASSES = 1000
"""ImageNet-1k's class count: the head of torchvision's pretrained weights, and the default head of seeded random
weights. A build's own count (a fine-tuned checkpoint's head) is in its manifest (``Manifest.num_classes``)."""
MAX_NUM_CLASSES = 100_000
"""The largest head ``--num-classes`` asks for (a seeded [classes, 2048] float32 matrix is 800 MB at the limit)."""
SERVED_MODEL_NAME = "resnet50"
"""The model name of a Triton repository (``rsz-export triton``) and of ``rsz-export serve`` unless ``--name`` says
otherwise: clients address both the same way."""
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")
"""Precisions an engine can be built in (each backend states which of them it supports)."""
DEFAULT_PRECISION = PRECISIONS[0]
"""What a build, a profile file and ``plan --write`` use when no precision is given."""
CALIBRATION_METHODS = ("percentile", "minmax", "entropy")
"""How int8 calibration turns activation statistics into ranges (``model.calibration``); the first is the default."""
INT8_TARGET = 0.996
"""``build --int8-target``'s default: the smallest cosine to fp32 logits allowed on any held-out image at every
profile's check sizes. It asks a little more of the few held-out photographs than photographs never seen must keep
(median cosine 0.995): at 0.995 the default build met it on its held-out photographs yet kept a median of 0.9949
on unseen ones at 224x224 (docs/int8.md has the measurements behind it)."""
MAX_INT8_TARGET = 0.9999

Log = Callable[[str], None]
"""How library functions report progress: called with one line of text at a time; the caller decides where it goes
(the CLI prints it, tests collect it)."""

OUTPUT_KINDS = ("logits", "features", "fpn")
"""What a build's model gives (``--outputs``): ``logits`` [batch, classes], the classifier (the default);
``features``, the ResNet-50 body's stage outputs as torchvision's ``IntermediateLayerGetter`` returns them;
``fpn``, torchvision's ``BackboneWithFPN`` (the body, the feature pyramid and its extra max-pool level), as
Faster/Mask R-CNN and RetinaNet use it."""
DEFAULT_OUTPUTS = OUTPUT_KINDS[0]
FEATURE_NAMES = ("layer1", "layer2", "layer3", "layer4")
FEATURE_CHANNELS = (256, 512, 1024, 2048)
FEATURE_STRIDES = (4, 8, 16, 32)
FPN_NAMES = ("0", "1", "2", "3", "pool")
"""The keys of torchvision's ``BackboneWithFPN`` output, which the detectors' RPN and ROI heads look up."""
FPN_CHANNELS = 256
FPN_STRIDES = (4, 8, 16, 32, 64)


def output_names(outputs: str) -> tuple[str, ...]:
    """The output tensors of a model that gives ``outputs`` (one of OUTPUT_KINDS), in the model's order."""
    return {"logits": (OUTPUT_NAME,), "features": FEATURE_NAMES, "fpn": FPN_NAMES}[outputs]


def feature_maps(outputs: str) -> tuple[tuple[str, int, int], ...]:
    """(name, channels, stride) of each feature map a ``features`` or ``fpn`` model gives: an input of height h
    and width w gives [batch, channels, ceil(h / stride), ceil(w / stride)]. Empty for ``logits``."""
    if outputs == "features":
        return tuple(zip(FEATURE_NAMES, FEATURE_CHANNELS, FEATURE_STRIDES, strict=True))
    if outputs == "fpn":
        return tuple((name, FPN_CHANNELS, stride) for name, stride in zip(FPN_NAMES, FPN_STRIDES, strict=True))
    return ()


def map_side(side: int, stride: int) -> int:
    """A feature map's side for an input side: ceil(side / stride), as the stride-2 convolutions and pools give."""
    return -(-side // stride)
