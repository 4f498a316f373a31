"""Turning a decoded image into the model's input: any pixel format to 8-bit RGB, resize (or resize and crop),
normalise to float32 NCHW. Pure.

Resizing is bilinear with antialiasing, the interpolation torchvision's ResNet-50 weights were evaluated
with (``ImageClassification``: bilinear; on PIL images Pillow's filter is antialiased).
"""

from __future__ import annotations

import numpy as np

from rsz_export.errors import UsageError, check_number
from rsz_export.images.imagenet import CROP_RATIO, MEAN, STD
from rsz_export.interface import CHANNELS
from rsz_export.shapes import Resolution

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
"""Pillow's modes for 16-bit greyscale (``I`` is how some versions and TIFFs hand it over)."""
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
BACKGROUND = (255, 255, 255)
"""Transparent pixels are shown on white, as an image viewer or a web page shows them."""
MAX_CROP_INTERMEDIATE = 8
"""crop_input resizes the whole image first (as torchvision does) unless that would exceed this many times
the crop's pixels (a 20000x10 panorama): then it resizes only the centre region of the original."""


def to_rgb(image):
    """Any decoded ``PIL.Image`` as 8-bit RGB: 16-bit greys scaled into 0..255 (Pillow's own conversion clips
    them to white), transparency flattened onto ``BACKGROUND`` (an alpha channel, or a palette entry or a grey
    or RGB colour marked transparent), palette, CMYK and grey converted."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(image, dtype=np.int64)
        image = Image.fromarray(np.clip((wide + 128) // 257, 0, 255).astype(np.uint8), "L")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(flat, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


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
    """Resize an RGB image to exactly ``size`` (not at all when it has that size) and normalise it:
    float32 [1, 3, size.h, size.w].

    No crop: validation needs the exact shape, so the aspect ratio may change.
    """
    from PIL import Image

    image = to_rgb(image)
    if (image.height, image.width) != (size.h, size.w):
        image = image.resize((size.w, size.h), Image.Resampling.BILINEAR)
    return normalise(np.asarray(image))


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
    image = to_rgb(image)
    scale = max(size.h / crop_ratio / image.height, size.w / crop_ratio / image.width)
    rh, rw = max(size.h, round(image.height * scale)), max(size.w, round(image.width * scale))
    top, left = int(round((rh - size.h) / 2)), int(round((rw - size.w) / 2))
    if rh * rw <= MAX_CROP_INTERMEDIATE * size.pixels:
        resized = image.resize((rw, rh), Image.Resampling.BILINEAR)
        return normalise(np.asarray(resized.crop((left, top, left + size.w, top + size.h))))
    fy, fx = image.height / rh, image.width / rw  # the same centre region, in the original's coordinates
    box = (left * fx, top * fy, (left + size.w) * fx, (top + size.h) * fy)
    return normalise(np.asarray(image.resize((size.w, size.h), Image.Resampling.BILINEAR, box=box)))
