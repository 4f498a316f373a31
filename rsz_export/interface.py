"""The model's interface, shared by every stage: tensor names and layout, class count, build precisions.

An rsz-export model takes ``images`` [batch, 3, height, width] float32 (ImageNet-normalised RGB, NCHW)
and gives ``logits`` [batch, classes] float32. Exporters, backends, runners, validators and servers read
these names from here, never from a string of their own.
"""

from __future__ import annotations

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
CHANNELS = 3
"""RGB."""
NUM_CLASSES = 1000
"""ImageNet-1k's class count: the head of torchvision's pretrained weights and of seeded random weights."""
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
"""Precisions an engine can be built in (each backend states which of them it supports)."""
