"""Image files, read safely: folders of images, decoding to upright RGB, and the bundled sample photographs.

Safety: only raster formats that Pillow decodes itself are accepted (no EPS/PostScript, whose plugin runs
Ghostscript), the pixel count is checked from the header before anything is decoded (decompression bombs),
and every file that cannot be read is skipped with its reason instead of stopping the run.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from rsz_export.errors import IntegrityError, UsageError, os_reason, shown

ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Formats Pillow decodes in-process. EPS is left out on purpose: its plugin calls the Ghostscript program."""
MAX_PIXELS = 50_000_000
"""Larger images are refused before decoding (a 50-megapixel RGB image is already 150 MB of pixels)."""

LINK_REASON = "symbolic link not followed"
"""Why a link inside an image folder is skipped (see ``list_files``)."""

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "images"


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, and why."""

    path: Path
    reason: str


def _open_checked(path: Path):
    """Open ``path`` with Pillow (header only), refusing other formats and oversized images."""
    from PIL import Image

    if path.stat().st_size == 0:
        raise IntegrityError(f"{shown(path)} is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=ALLOWED_FORMATS)
        except (Image.UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise IntegrityError(
                f"{shown(path)} is not a readable image ({', '.join(ALLOWED_FORMATS)}): {exc}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise IntegrityError(f"{shown(path)} is {width}x{height} pixels, more than the {MAX_PIXELS:,} allowed")
    return image


def load_rgb(path: str | Path):
    """Decode an image file into an 8-bit RGB ``PIL.Image``; IntegrityError if it cannot be.

    EXIF rotation is applied; an animation gives its first frame; grey, palette, CMYK and 16-bit images are
    converted and transparency is flattened (``images.preprocess.to_rgb``)."""
    from PIL import Image, ImageOps

    from rsz_export.images.preprocess import to_rgb

    path = Path(path)
    try:
        with _open_checked(path) as image:
            image.seek(0)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy of a camera photo's pixels when upright
            return to_rgb(image)
    except IntegrityError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise _read_error(path, exc) from None


def _read_error(path: Path, exc: Exception) -> IntegrityError:
    """Why an image could not be read, in words: missing, not permitted, or corrupt (Pillow reports truncated and
    corrupt data as OSError, SyntaxError or ValueError depending on the plugin)."""
    if isinstance(exc, FileNotFoundError):
        return IntegrityError(f"image {shown(path)} does not exist")
    if isinstance(exc, PermissionError):
        return IntegrityError(f"cannot read image {shown(path)} (permission denied)")
    return IntegrityError(f"cannot read image {shown(path)} (corrupt or truncated): {exc}")


def check_decodes(path: str | Path) -> None:
    """IntegrityError unless ``path``'s pixel data decodes to its end: a truncated body, which a header scan
    cannot see, is found here. JPEGs are decoded at 1/8 scale (every coded block is still read), so a folder of
    camera photos is checked in a fraction of a full decode."""
    from PIL import Image

    path = Path(path)
    try:
        with _open_checked(path) as image:
            image.draft("RGB", (1, 1))  # JPEG only: the smallest DCT scale; other formats ignore it
            image.load()
    except IntegrityError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise _read_error(path, exc) from None


def list_files(folder: str | Path) -> tuple[list[Path], list[SkippedFile]]:
    """Every regular file under ``folder``, sub-folders included, hidden names left out, sorted: what every
    command that takes a folder of images (``--images DIR``, ``predict DIR``, ``--calib DIR``) looks at; and
    what was passed over, with why.

    One rule for links: a symbolic link inside the folder, to a file or to a folder, is never followed (it could
    lead anywhere on the machine) and is listed as skipped (``LINK_REASON``); so are pipes, sockets and devices.
    The folder itself may be a link: it was named."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"image folder {shown(folder)} does not exist or is not a directory")
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    def unlisted(exc: OSError) -> None:  # a sub-folder that cannot be listed is said, not silently left out
        skipped.append(SkippedFile(Path(exc.filename or folder), f"cannot list folder ({os_reason(exc)})"))

    for root, dirs, names in os.walk(folder, onerror=unlisted):  # never descends into a linked folder
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in [*dirs, *names]:
            path = Path(root) / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                skipped.append(SkippedFile(path, LINK_REASON))
            elif path.is_file():
                files.append(path)
            elif not path.is_dir():
                skipped.append(SkippedFile(path, "not a regular file"))
    return sorted(files), sorted(skipped, key=lambda s: s.path)


def image_files(directory: str | Path) -> tuple[list[Path], list[SkippedFile]]:
    """The decodable images in ``directory`` (see ``list_files``), and every other file with why.

    Each file is fully decoded once, so a truncated file is found here rather than half-way through a run.
    """
    paths: list[Path] = []
    found, skipped = list_files(directory)
    for path in found:
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


def calibration_photos() -> list[Path]:
    """Every bundled photograph int8 calibration may use by default: the sample photographs and those of
    ``calibration/`` (more subjects, colours and exposures; SOURCES.md), sorted by name within each."""
    extra = SAMPLE_DIR / "calibration"
    return [*sample_images(), *sorted(p for p in extra.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))]


def load_photos(directory: str | Path | None = None) -> tuple[list[tuple[str, object]], list[SkippedFile]]:
    """(name, RGB image) for each readable image in ``directory`` (default: the bundled photographs); the name
    is the file's path inside the folder."""
    if directory is None:
        return [(p.name, load_rgb(p)) for p in sample_images()], []
    paths, skipped = image_files(directory)
    if not paths:
        raise UsageError(f"--images {directory} holds no readable image ({len(skipped)} file(s) skipped)")
    return [(str(p.relative_to(directory)), load_rgb(p)) for p in paths], skipped
