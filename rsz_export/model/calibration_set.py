"""The images INT8 calibration runs on: which files, at which sizes, checked before anything is written.

Sizes: calibration must see the activations of every size the engines serve (they grow with the input), so
the set is spread over every planned profile: item k goes to profile k mod P, and the longer sides within a
profile are spread geometrically from its smallest to its largest side. Each image keeps its own aspect ratio:
it is resized, as ``plan.routing.fit_size`` resizes an image into a profile, to the scale that gives the
wanted longer side (clamped so both sides fit the profile), at the exact size that gives, as serving runs by
default (no snapping to multiples of 32). The pairing of images and sizes is shuffled with the seed, so a
folder sorted by size does not put its small images at the small sizes.

Files: ``--calib DIR`` (sub-folders included) gives ``count`` images drawn with the seed from its readable
images (default: all of them, at most ``DEFAULT_DIR_COUNT``). Without it the bundled photographs are used, each
several times with a seeded crop (40..100% of its area, aspect ratio 3:4..4:3), and the build warns that they
are no substitute for the images it will serve. Every file's sha256 goes into the calibration's cache key and
into the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rsz_export.artifacts.files import sha256_file
from rsz_export.errors import UsageError, check_choice, check_int, check_number, shown
from rsz_export.images.loading import SAMPLE_DIR, calibration_photos, check_decodes, list_files
from rsz_export.interface import INT8_TARGET, MAX_INT8_TARGET
from rsz_export.model.calibration import DEFAULT_METHOD, METHODS
from rsz_export.model.holdout import HoldoutSet, bundled_holdout, holdout_from_dir, refuse_overlap, split_holdout
from rsz_export.plan.profiles import Plan
from rsz_export.plan.routing import Candidate, fit_size, plan_candidates, widest_aspect
from rsz_export.shapes import Resolution

DEFAULT_BUNDLED_COUNT = 32
"""Crops of the bundled photographs calibrated on by default (spread over those not held out)."""
DEFAULT_DIR_COUNT = 256
"""Most images of ``--calib DIR`` used when ``--calib-count`` is not given."""
MAX_COUNT = 4096
CROP_AREA = (0.4, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
BUNDLED_WARNING = (
    "int8 calibration used the bundled sample photographs: give --calib DIR with images like the ones you serve "
    "(a few hundred) for ranges that fit your data"
)


@dataclass(frozen=True)
class CalibSpec:
    """How to calibrate: the images (None: the bundled photographs), how many, the range method, the seed; the
    held-out images (None: a share of the calibration images, ``model.holdout``) and the accuracy target on them
    (None: no float fallback)."""

    images_dir: Path | None = None
    count: int | None = None
    method: str = DEFAULT_METHOD
    seed: int = 0
    holdout_dir: Path | None = None
    target: float | None = INT8_TARGET

    def __post_init__(self) -> None:
        check_choice(self.method, "--calib-method", METHODS)
        if self.target is not None:
            check_number(self.target, "--int8-target", 0.0, MAX_INT8_TARGET)
        if self.count is not None:
            check_int(self.count, "--calib-count", 1, MAX_COUNT)


@dataclass(frozen=True)
class CalibItem:
    """One calibration input: the file, its sha256, the size it runs at, and the crop taken first (fractions of
    the image: left, top, right, bottom; None: the whole image)."""

    file: str
    sha256: str
    size: Resolution
    crop: tuple[float, float, float, float] | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["size"] = str(self.size)
        data["crop"] = None if self.crop is None else [round(c, 6) for c in self.crop]
        return data


@dataclass(frozen=True)
class CalibrationSet:
    """The resolved calibration inputs. ``root``: the folder the files are in."""

    source: str
    root: Path
    items: tuple[CalibItem, ...]
    method: str
    seed: int
    warning: str | None = None
    holdout: HoldoutSet | None = None
    target: float | None = None

    def key_data(self) -> dict:
        """What the calibration's cache key covers from the set (contents, not paths)."""
        items = [[i.sha256, str(i.size), i.crop] for i in self.items]
        holdout = None if self.holdout is None else self.holdout.key_data()
        return {"method": self.method, "seed": self.seed, "items": items, "holdout": holdout, "target": self.target}

    def feeds(self) -> Iterator[np.ndarray]:
        """The inputs, float32 [1,3,h,w], decoded one at a time (only one image is ever in memory)."""
        from rsz_export.images.loading import load_rgb
        from rsz_export.images.preprocess import to_input

        for item in self.items:
            image = load_rgb(self.root / item.file)
            if item.crop is not None:
                left, top, right, bottom = item.crop
                w, h = image.size
                image = image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
            yield to_input(image, item.size)


def _bands(plan: Plan) -> list[tuple[float, float]]:
    """(smallest, largest) longer side each profile serves: routing sends a size to the smallest profile that
    covers it, so a profile nested in a larger one serves its own sizes and the larger one those above them."""
    bands = []
    for p in plan.profiles:
        lo, hi = min(p.min.h, p.min.w), max(p.max.h, p.max.w)
        below = [max(q.max.h, q.max.w) for q in plan.profiles if max(q.max.h, q.max.w) < hi]
        bands.append((max([lo, *below]), hi))
    return bands


def _targets(plan: Plan, count: int, rng: np.random.Generator) -> list[tuple[int, float]]:
    """(profile, longer side) for ``count`` items spread over every profile's band, in shuffled order."""
    profiles, bands = len(plan.profiles), _bands(plan)
    per = [len(range(p, count, profiles)) for p in range(profiles)]
    targets = []
    for k in range(count):
        index, rank = k % profiles, k // profiles
        lo, hi = bands[index]
        fraction = 0.5 if per[index] == 1 else rank / (per[index] - 1)
        targets.append((index, math.exp(math.log(lo) + fraction * (math.log(hi) - math.log(lo)))))
    return [targets[i] for i in rng.permutation(count)]


def _size(plan: Plan, profile: int, side: float, h: int, w: int) -> tuple[Resolution, tuple | None]:
    """The size an h x w image runs at for a wanted longer side, its aspect ratio kept: in the wanted profile
    if it fits there, else in the profile serving the nearest scale (as ``plan.routing`` fits images). An image
    more elongated than any profile holds is first cropped at its centre to the widest aspect ratio that fits."""
    p = plan.profiles[profile]
    scale = side / max(h, w)
    fitted = fit_size(h, w, [Candidate(0, profile, p)], p.min.batch, "exact", scale)
    candidates = plan_candidates(plan)
    fitted = fitted or fit_size(h, w, candidates, p.min.batch, "exact", scale)
    if fitted is not None:
        return fitted, None
    widest = widest_aspect(candidates)
    ch, cw = (min(h, w * widest), w) if h > w else (h, min(w, h * widest))
    top, left = (1 - ch / h) / 2, (1 - cw / w) / 2
    fitted = fit_size(max(1, math.floor(ch)), max(1, math.floor(cw)), candidates, p.min.batch, "exact", scale)
    return fitted, (left, top, 1 - left, 1 - top)


def _crop(rng: np.random.Generator) -> tuple[float, float, float, float]:
    area = rng.uniform(*CROP_AREA)
    aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
    cw, ch = min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))
    left, top = rng.uniform(0, 1 - cw), rng.uniform(0, 1 - ch)
    return left, top, left + cw, top + ch


def _bundled(spec: CalibSpec, plan: Plan, rng: np.random.Generator) -> CalibrationSet:
    holdout, photos = bundled_holdout(calibration_photos(), SAMPLE_DIR, rng)
    if spec.holdout_dir is not None:
        holdout, photos = holdout_from_dir(Path(spec.holdout_dir), rng), calibration_photos()
    count = spec.count or DEFAULT_BUNDLED_COUNT
    hashes = {p: sha256_file(p) for p in photos}
    from rsz_export.images.sizes import read_size

    items = []
    for k, (profile, side) in enumerate(_targets(plan, count, rng)):
        photo = photos[k % len(photos)]
        crop = _crop(rng)
        h, w = read_size(photo)
        ch, cw = max(1, round((crop[3] - crop[1]) * h)), max(1, round((crop[2] - crop[0]) * w))
        size, inner = _size(plan, profile, side, ch, cw)
        if inner is not None:  # the crop of the crop, in the photograph's fractions
            x0, y0, x1, y1 = crop
            crop = (x0 + inner[0] * (x1 - x0), y0 + inner[1] * (y1 - y0), x0 + inner[2] * (x1 - x0),
                    y0 + inner[3] * (y1 - y0))
        items.append(CalibItem(photo.relative_to(SAMPLE_DIR).as_posix(), hashes[photo], size, crop))
    refuse_overlap(holdout, {sha: name for name, sha in hashes.items()})
    return CalibrationSet("bundled", SAMPLE_DIR, tuple(items), spec.method, spec.seed, BUNDLED_WARNING, holdout,
                          spec.target)


def _readable(folder: Path) -> tuple[list[tuple[Path, int, int]], list[str]]:
    from rsz_export.images.sizes import read_size

    try:
        files, passed_over = list_files(folder)
    except UsageError:
        raise UsageError(f"--calib {shown(folder)} does not exist or is not a directory",
                         hint="give a folder of images like the ones you serve") from None
    if not files and not passed_over:
        raise UsageError(f"--calib {shown(folder)} is empty", hint="give a folder of images like the ones you serve")
    readable = []
    skipped = [f"{shown(s.path.relative_to(folder))}: {s.reason}" for s in passed_over]
    for path in files:
        try:
            readable.append((path, *read_size(path)))
        except (ValueError, OSError) as exc:
            skipped.append(f"{shown(path.relative_to(folder))}: {exc}")
    if not readable:
        raise UsageError(f"--calib {shown(folder)} holds no readable image ({len(skipped)} file(s) skipped, e.g. "
                         f"{skipped[0]})", hint="give a folder of JPEG, PNG, ... images")
    return readable, skipped


def _from_folder(spec: CalibSpec, plan: Plan, rng: np.random.Generator) -> CalibrationSet:
    folder = Path(spec.images_dir)
    readable, _skipped = _readable(folder)
    if spec.count is not None and spec.count > len(readable):
        raise UsageError(f"--calib-count {spec.count} but --calib {shown(folder)} holds only {len(readable)} readable "
                         "image(s)", hint=f"give --calib-count {len(readable)} or more images")
    smallest = min(min(p.min.h, p.min.w) for p in plan.profiles)
    small = [f"{shown(p.relative_to(folder))} ({h}x{w})" for p, h, w in readable if min(h, w) < smallest]
    if small:
        raise UsageError(
            f"{len(small)} image(s) in --calib {shown(folder)} have a side shorter than the range minimum {smallest}: "
            f"{', '.join(small[:3])}{', ...' if len(small) > 3 else ''}",
            hint="give images at least as large as the smallest size served: remove these, or raise --min",
        )
    if spec.holdout_dir is not None:
        holdout = holdout_from_dir(Path(spec.holdout_dir), rng)
    else:
        holdout, kept = split_holdout(folder, [p for p, _, _ in readable], rng)
        readable = [readable[i] for i in sorted(kept)]
    if spec.count is not None and spec.count > len(readable):
        raise UsageError(f"--calib-count {spec.count} but --calib {shown(folder)} holds only {len(readable)} readable "
                         "image(s) besides the held-out ones", hint="give a smaller --calib-count or more images")
    count = spec.count or min(len(readable), DEFAULT_DIR_COUNT)
    chosen = sorted(rng.choice(len(readable), size=count, replace=False))
    targets = _targets(plan, count, rng)
    items = []
    for (profile, side), index in zip(targets, chosen):
        path, h, w = readable[index]
        check_decodes(path)  # a truncated body stops the build here, before its folder is created
        size, crop = _size(plan, profile, side, h, w)
        items.append(CalibItem(str(path.relative_to(folder)), sha256_file(path), size, crop))
    refuse_overlap(holdout, {i.sha256: i.file for i in items})
    return CalibrationSet(str(folder.resolve()), folder, tuple(items), spec.method, spec.seed, None, holdout,
                          spec.target)


def resolve_calibration_set(spec: CalibSpec, plan: Plan) -> CalibrationSet:
    """The calibration inputs for ``plan``; UsageError (exit 2) for a missing or empty folder, one without
    readable images, fewer images than ``count``, or images smaller than the range; IntegrityError (exit 4) for a
    chosen image whose pixel data does not decode (a truncated body)."""
    rng = np.random.default_rng(spec.seed)
    return _from_folder(spec, plan, rng) if spec.images_dir is not None else _bundled(spec, plan, rng)
