"""Held-out images for int8: photographs calibration never sees, on which the build measures what quantization
costs (the coverage report, each layer's sensitivity, the accuracy target).

Where they come from: ``--holdout DIR`` (sub-folders included); else a seeded share of ``--calib DIR``'s files
(``HOLDOUT_SHARE``, at least one), taken out before the calibration images are drawn; else, with the bundled
photographs, ``BUNDLED_HOLDOUT`` whole photographs that are then not cropped for calibration. An image given in
both (same contents) is refused: it would not be held out. Each runs through the evaluation crop
(``images.preprocess.crop_input``) at each size measured, whatever its own size, as ``validate`` feeds images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsz_export.artifacts.files import sha256_file
from rsz_export.errors import UsageError, shown

HOLDOUT_SHARE = 0.2
"""Share of ``--calib DIR``'s readable images held out when no ``--holdout`` is given."""
BUNDLED_HOLDOUT = 2
"""Bundled photographs held out (whole) from the default calibration."""
MAX_MEASURED = 4
"""Most held-out images the build runs per size (seeded choice): each costs a forward pass per trial."""


@dataclass(frozen=True)
class HoldoutSet:
    """The held-out images: where from (``source``), the folder, and (file relative to it, sha256) per image."""

    source: str
    root: Path
    files: tuple[tuple[str, str], ...]

    def key_data(self) -> list:
        return [sha for _, sha in self.files]

    def measured(self) -> tuple[tuple[str, str], ...]:
        return self.files[:MAX_MEASURED]

    def feeds_at(self, size) -> np.ndarray:
        """The measured images through the evaluation crop at ``size``: [n,3,h,w]."""
        from rsz_export.images.loading import load_rgb
        from rsz_export.images.preprocess import crop_input

        return np.concatenate([crop_input(load_rgb(self.root / name), size) for name, _ in self.measured()])

    def to_dict(self) -> dict:
        return {"source": self.source, "images": [{"file": f, "sha256": s} for f, s in self.files],
                "measured": len(self.measured())}


def split_count(readable: int) -> int:
    """How many of ``readable`` --calib images are held out (none possible below two)."""
    return 0 if readable < 2 else max(1, round(HOLDOUT_SHARE * readable))


def holdout_from_dir(folder: Path, rng: np.random.Generator) -> HoldoutSet:
    """``--holdout DIR``: every readable image in it (seeded order); UsageError for a missing, empty or
    unreadable folder, or one without a readable image."""
    from rsz_export.images.loading import check_decodes, list_files
    from rsz_export.images.sizes import read_size

    hint = "give a folder of photographs that calibration does not see, like the ones you serve"
    try:
        files, passed_over = list_files(folder)
    except (UsageError, OSError):
        raise UsageError(f"--holdout {shown(folder)} does not exist, is not a directory or cannot be listed",
                         hint=hint) from None
    readable = []
    for path in files:
        try:
            read_size(path)
        except (ValueError, OSError):
            continue
        readable.append(path)
    if not readable:
        skipped = len(files) + len(passed_over)
        raise UsageError(f"--holdout {shown(folder)} holds no readable image ({skipped} file(s) skipped)", hint=hint)
    order = rng.permutation(len(readable))
    chosen = [readable[i] for i in order]
    for path in chosen[:MAX_MEASURED]:
        check_decodes(path)
    files = tuple((str(p.relative_to(folder)), sha256_file(p)) for p in chosen)
    return HoldoutSet(str(folder.resolve()), folder, files)


def split_holdout(folder: Path, paths: list[Path], rng: np.random.Generator) -> tuple[HoldoutSet, list[int]]:
    """A seeded share of ``--calib``'s readable images held out: the set, and the indexes left to calibrate on."""
    from rsz_export.images.loading import check_decodes

    count = split_count(len(paths))
    if count == 0:
        raise UsageError(f"--calib {shown(folder)} holds a single readable image: none is left to hold out",
                         hint="give --holdout DIR with other photographs, or more images in --calib")
    order = [int(i) for i in rng.permutation(len(paths))]
    held = [paths[i] for i in order[:count]]
    for path in held[:MAX_MEASURED]:
        check_decodes(path)
    files = tuple((str(p.relative_to(folder)), sha256_file(p)) for p in held)
    return HoldoutSet(f"{shown(folder.resolve())} (held out: {count} of {len(paths)})", folder, files), order[count:]


def bundled_holdout(photos: list[Path], root: Path, rng: np.random.Generator) -> tuple[HoldoutSet, list[Path]]:
    """``BUNDLED_HOLDOUT`` bundled photographs (under ``root``) held out whole (seeded), and the ones left to
    calibrate on."""
    order = [int(i) for i in rng.permutation(len(photos))]
    held = sorted(order[:BUNDLED_HOLDOUT])
    files = tuple((photos[i].relative_to(root).as_posix(), sha256_file(photos[i])) for i in held)
    return HoldoutSet("bundled", root, files), [p for i, p in enumerate(photos) if i not in held]


def refuse_overlap(holdout: HoldoutSet, calibration_hashes: dict[str, str]) -> None:
    """UsageError when an image of the held-out set is also a calibration image (same contents)."""
    both = [name for name, sha in holdout.files if sha in calibration_hashes]
    if both:
        raise UsageError(
            f"{len(both)} --holdout image(s) are also calibration images (same contents): "
            f"{', '.join(shown(b) for b in both[:3])}{', ...' if len(both) > 3 else ''}",
            hint="held-out images must be ones calibration never sees: remove them from one of the folders")
