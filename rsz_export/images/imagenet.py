"""ImageNet preprocessing constants and class names, as torchvision's ResNet-50 weights expect them. Pure."""

from __future__ import annotations

import functools
from pathlib import Path

from rsz_export.interface import NUM_CLASSES

MEAN = (0.485, 0.456, 0.406)
"""Per-channel (RGB) mean of ImageNet pixels scaled to 0..1: subtracted before the model."""
STD = (0.229, 0.224, 0.225)
"""Per-channel (RGB) standard deviation of ImageNet pixels scaled to 0..1: divided by before the model."""
CROP_RATIO = 0.875
"""The weights' evaluation crop: resize so the image covers S / 0.875 (256 for S = 224), then keep the centre S."""

_LABELS_FILE = Path(__file__).resolve().parents[1] / "data" / "imagenet_classes.txt"


@functools.cache
def _labels() -> tuple[str, ...]:
    names = tuple(line.strip() for line in _LABELS_FILE.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise RuntimeError(f"{_LABELS_FILE} has {len(names)} class names, not {NUM_CLASSES}: the package is damaged")
    return names


def labels() -> list[str]:
    """The 1000 ImageNet class names, index = logit position."""
    return list(_labels())
