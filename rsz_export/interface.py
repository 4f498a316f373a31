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
INT8_TARGET = 0.995
"""``build --int8-target``'s default: the smallest cosine to fp32 logits allowed on any held-out image at the
plan's smallest and largest size (docs/int8.md has the measurements behind it)."""
MAX_INT8_TARGET = 0.9999

Log = Callable[[str], None]
"""How library functions report progress: called with one line of text at a time; the caller decides where it goes
(the CLI prints it, tests collect it)."""
