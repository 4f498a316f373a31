"""Image sizes from file headers only, across a folder, and their distribution.

Pillow's ``Image.open`` is lazy: it parses the header (and, for JPEG, the EXIF block) and stops. Nothing here
calls ``.load()``, so a folder of large photos is scanned in milliseconds per file. Sizes are reported as the
image will be seen after EXIF orientation (a portrait phone photo stored as 4032x3024 with orientation 6 is
3024 wide and 4032 high), which is what ``images.loading.load_rgb`` hands to the model.

Only the formats ``load_rgb`` decodes count as images. Files that are empty, not images, too large
for ``load_rgb``, or whose header Pillow cannot parse are skipped and counted by reason; a
file whose header is fine but whose pixel data is truncated is counted here (only decoding would tell).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rsz_export.errors import UsageError
from rsz_export.images.loading import ALLOWED_FORMATS, MAX_PIXELS, list_files

_ROTATED = {5, 6, 7, 8}
"""EXIF orientations that swap width and height (transpose, 90 and 270 degree rotations)."""
_ORIENTATION_TAG = 0x0112

ASPECT_BUCKETS = ((0.0, 0.6, "tall  < 0.6"), (0.6, 0.9, "portrait 0.6-0.9"), (0.9, 1.11, "square 0.9-1.11"),
                  (1.11, 1.67, "landscape 1.11-1.67"), (1.67, math.inf, "wide  >= 1.67"))
"""Aspect ratio (width / height) buckets for the distribution report."""
SIDE_BUCKETS = (64, 128, 224, 320, 480, 640, 800, 1024, 1600, 2048, 4096)
"""Upper edges of the longer-side histogram."""


@dataclass(frozen=True)
class SizeScan:
    """What a folder scan found: (h, w) per readable image, and the skipped files by reason."""

    folder: str
    files: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason in self.skipped))


def read_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of one image from its header, after EXIF orientation; ValueError saying why if unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            with Image.open(path, formats=ALLOWED_FORMATS) as image:
                w, h = image.size
                orientation = _orientation(image)
    except UnidentifiedImageError:
        raise ValueError("not an image") from None
    except Image.DecompressionBombError:
        raise ValueError("too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"corrupt header ({type(exc).__name__})") from None
    if w < 1 or h < 1:
        raise ValueError("zero-sized image")
    if w * h > MAX_PIXELS:
        raise ValueError(f"more than {MAX_PIXELS:,} pixels")
    return (w, h) if orientation in _ROTATED else (h, w)


def _orientation(image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block must not hide a readable size: treat it as upright
        return 1


def scan_sizes(folder: str | Path) -> SizeScan:
    """Read every image size under ``folder`` from headers; UsageError if no file in it is a readable image."""
    files, sizes, skipped = [], [], []
    candidates = list_files(folder)
    for path in candidates:
        try:
            sizes.append(read_size(path))
            files.append(str(path))
        except ValueError as exc:
            skipped.append((str(path), str(exc)))
    if not sizes:
        what = "is empty" if not candidates else f"has no readable image among its {len(candidates)} file(s)"
        raise UsageError(f"image folder {folder} {what}", hint="point --images at a folder of JPEG/PNG/WebP files")
    return SizeScan(str(folder), tuple(files), tuple(sizes), tuple(skipped))


@dataclass(frozen=True)
class SizeStats:
    """The distribution of image sizes: side quantiles, a longer-side histogram and aspect-ratio buckets."""

    count: int
    shorter: dict[str, int]
    longer: dict[str, int]
    megapixels_median: float
    longer_histogram: tuple[tuple[str, int], ...]
    aspect_buckets: tuple[tuple[str, int], ...]
    common_sizes: tuple[tuple[str, int], ...] = field(default=())


def _quantiles(values: list[int]) -> dict[str, int]:
    ordered = sorted(values)

    def at(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]

    return {"min": ordered[0], "p5": at(0.05), "p50": at(0.5), "p95": at(0.95), "max": ordered[-1]}


def size_stats(sizes: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> SizeStats:
    """Summarise (h, w) sizes; UsageError for an empty list."""
    if not sizes:
        raise UsageError("no image sizes to summarise")
    shorter = [min(h, w) for h, w in sizes]
    longer = [max(h, w) for h, w in sizes]
    hist = Counter(next((f"<= {edge}" for edge in SIDE_BUCKETS if side <= edge), f"> {SIDE_BUCKETS[-1]}")
                   for side in longer)
    labels = [f"<= {e}" for e in SIDE_BUCKETS] + [f"> {SIDE_BUCKETS[-1]}"]
    aspects = Counter(next(name for lo, hi, name in ASPECT_BUCKETS if lo <= w / h < hi) for h, w in sizes)
    return SizeStats(
        count=len(sizes),
        shorter=_quantiles(shorter),
        longer=_quantiles(longer),
        megapixels_median=statistics.median(h * w for h, w in sizes) / 1e6,
        longer_histogram=tuple((label, hist[label]) for label in labels if hist[label]),
        aspect_buckets=tuple((name, aspects[name]) for _, _, name in ASPECT_BUCKETS if aspects[name]),
        common_sizes=tuple((f"{h}x{w}", n) for (h, w), n in Counter(sizes).most_common(5)),
    )


def render_scan(scan: SizeScan, stats: SizeStats) -> str:
    """The scan and its distribution as text."""
    lines = [f"{stats.count} image(s) in {scan.folder}"]
    if scan.skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(scan.skipped_by_reason.items()))
        lines[0] += f"; skipped {len(scan.skipped)} ({reasons})"
    for name, q in (("shorter side", stats.shorter), ("longer side", stats.longer)):
        lines.append(f"  {name:<13} " + "  ".join(f"{k} {v}" for k, v in q.items()))
    lines.append(f"  median {stats.megapixels_median:.2f} MP; most common: "
                 + ", ".join(f"{s} ({n})" for s, n in stats.common_sizes))
    lines.append("  longer side:  " + ", ".join(f"{label}: {n}" for label, n in stats.longer_histogram))
    lines.append("  aspect (w/h): " + ", ".join(f"{label}: {n}" for label, n in stats.aspect_buckets))
    return "\n".join(lines)
