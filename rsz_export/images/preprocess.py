"""Turning an image into the model's input: resize (or resize and crop) and normalise to float32 NCHW. Pure.

Resizing is bilinear with antialiasing, the interpolation torchvision's ResNet-50 weights were evaluated
with (``ImageClassification``: bilinear; on PIL images Pillow's filter is antialiased).
"""

from __future__ import annotations

import numpy as np

from rsz_export.errors import UsageError, check_number
from rsz_export.interface import CHANNELS
from rsz_export.model.imagenet import CROP_RATIO, MEAN, STD
from rsz_export.shapes import Resolution


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 (or 0..1 float) HWC RGB pixels -> ImageNet-normalised float32 [1, 3, h, w]."""
    array = np.asarray(pixels)
    scaled = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    if scaled.ndim != 3 or scaled.shape[2] != CHANNELS:
        raise UsageError(f"expected H x W x {CHANNELS} RGB pixels, got shape {scaled.shape}")
    mean = np.asarray(MEAN, dtype=np.float32)
    std = np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1)[None])


def to_input(image, size: Resolution) -> np.ndarray:
    """Resize an RGB image to exactly ``size`` and normalise it: float32 [1, 3, size.h, size.w].

    No crop: validation needs the exact shape, so the aspect ratio may change.
    """
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize((size.w, size.h), Image.Resampling.BILINEAR)
    return normalise(np.asarray(resized))


def random_input(size: Resolution, seed: int, batch: int = 1) -> np.ndarray:
    """Seeded random pixels (uniform over 0..255, as an image would span), normalised: float32 [batch,3,h,w]."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0.0, 1.0, size=(batch, size.h, size.w, 3)).astype(np.float32)
    return np.concatenate([normalise(p) for p in pixels])


def crop_input(image, size: Resolution, crop_ratio: float = CROP_RATIO) -> np.ndarray:
    """The evaluation transform at ``size``: resize to cover size / crop_ratio (aspect kept), centre-crop
    ``size``, normalise: float32 [1, 3, size.h, size.w]."""
    from PIL import Image

    check_number(crop_ratio, "crop ratio", 0.1, 1.0)
    scale = max(size.h / crop_ratio / image.height, size.w / crop_ratio / image.width)
    rh, rw = max(size.h, round(image.height * scale)), max(size.w, round(image.width * scale))
    resized = image.resize((rw, rh), Image.Resampling.BILINEAR)
    top, left = int(round((rh - size.h) / 2)), int(round((rw - size.w) / 2))
    return normalise(np.asarray(resized.crop((left, top, left + size.w, top + size.h))))
