"""Safe image loading and the model's preprocessing: files -> RGB images -> normalised NCHW float32 arrays.

Safety: only raster formats that Pillow decodes itself are accepted (no EPS/PostScript, whose plugin runs
Ghostscript), the pixel count is checked from the header before anything is decoded (decompression bombs),
and every file that cannot be read is skipped with its reason instead of stopping the run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.imagenet import MEAN, STD
from rsz_export.shapes import Resolution

ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Formats Pillow decodes in-process. EPS is left out on purpose: its plugin calls the Ghostscript program."""
MAX_PIXELS = 50_000_000
"""Larger images are refused before decoding (a 50-megapixel RGB image is already 150 MB of pixels)."""

SAMPLE_DIR = Path(__file__).parent / "data" / "images"


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, and why."""

    path: Path
    reason: str


def _open_checked(path: Path):
    """Open ``path`` with Pillow (header only), refusing other formats and oversized images."""
    from PIL import Image

    if path.stat().st_size == 0:
        raise IntegrityError(f"{path} is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=ALLOWED_FORMATS)
        except (Image.UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise IntegrityError(f"{path} is not a readable image ({', '.join(ALLOWED_FORMATS)}): {exc}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise IntegrityError(f"{path} is {width}x{height} pixels, more than the {MAX_PIXELS:,} allowed")
    return image


def load_rgb(path: str | Path):
    """Decode an image file into an RGB ``PIL.Image`` (EXIF rotation applied); IntegrityError if it cannot be."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with _open_checked(path) as image:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
    except IntegrityError:
        raise
    except FileNotFoundError:
        raise IntegrityError(f"image {path} does not exist") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError/ValueError depending on the plugin.
        raise IntegrityError(f"cannot read image {path} (corrupt, truncated or not permitted): {exc}") from None


def image_files(directory: str | Path) -> tuple[list[Path], list[SkippedFile]]:
    """The decodable images directly inside ``directory`` (sorted by name), and every other file with why.

    Each file is fully decoded once, so a truncated file is found here rather than half-way through a run.
    Hidden files (names starting with '.') and sub-directories are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"--images {directory} is not a directory", hint="give a folder of JPEG/PNG images")
    paths: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in sorted(p for p in directory.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            continue
        try:
            load_rgb(path)
        except (IntegrityError, OSError) as exc:
            skipped.append(SkippedFile(path, getattr(exc, "message", None) or str(exc)))
            continue
        paths.append(path)
    return paths, skipped


def sample_images() -> list[Path]:
    """The photographs bundled with the package (see rsz_export/data/images/SOURCES.md), sorted by name."""
    return sorted(p for p in SAMPLE_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def load_photos(directory: str | Path | None = None) -> tuple[list[tuple[str, object]], list[SkippedFile]]:
    """(file name, RGB image) for each readable image in ``directory`` (default: the bundled photographs)."""
    paths, skipped = image_files(directory) if directory is not None else (sample_images(), [])
    if not paths:
        raise UsageError(f"--images {directory} holds no readable image ({len(skipped)} file(s) skipped)")
    return [(p.name, load_rgb(p)) for p in paths], skipped


def named_inputs(photos: list[tuple[str, object]], seeds: list[int], size: Resolution,
                 batch: int = 1) -> list[tuple[str, np.ndarray]]:
    """Every source at ``size``: one [1,3,h,w] array per photo and seed, or for ``batch`` > 1 a single
    [batch,3,h,w] stack that cycles through them (named ``mixed-batchN``)."""
    singles = [(name, to_input(img, size)) for name, img in photos]
    singles += [(f"random{s}", random_input(size, s)) for s in seeds]
    if batch == 1 or not singles:
        return singles
    stack = np.concatenate([singles[k % len(singles)][1] for k in range(batch)])
    return [(f"mixed-batch{batch}", stack)]


def normalise(pixels: np.ndarray) -> np.ndarray:
    """uint8 (or 0..1 float) HWC RGB pixels -> ImageNet-normalised float32 [1, 3, h, w]."""
    array = np.asarray(pixels)
    scaled = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    if scaled.ndim != 3 or scaled.shape[2] != 3:
        raise UsageError(f"expected H x W x 3 RGB pixels, got shape {scaled.shape}")
    mean = np.asarray(MEAN, dtype=np.float32)
    std = np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(((scaled - mean) / std).transpose(2, 0, 1)[None])


def to_input(image, size: Resolution) -> np.ndarray:
    """Resize an RGB image to exactly ``size`` and normalise it: float32 [1, 3, size.h, size.w].

    The resize is bilinear with antialiasing, the interpolation torchvision's ResNet-50 weights were
    evaluated with (``ImageClassification``: bilinear; on PIL images Pillow's filter is antialiased).
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
