"""Classifying image files: which arguments name the engines folder and which the images, and each file's
prediction or the reason it was skipped. One bad file never stops the others.

Images routed to the same engine, profile and size are run together, up to the profile's max batch (a plan
built with ``--batch 1`` runs each image at once). While images wait for companions, their inputs are held in
memory up to ``MAX_PENDING_PIXELS``; past that the oldest group runs as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rsz_export.artifacts.manifest import ENGINES_DIR, MANIFEST_NAME
from rsz_export.errors import IntegrityError, RszError, UsageError, did_you_mean, shown
from rsz_export.images.loading import SkippedFile, list_files, load_rgb
from rsz_export.plan.routing import Route
from rsz_export.serve.session import Pending, Prediction

MAX_PENDING_PIXELS = 16_000_000
"""Input pixels held back for batching at most (about 190 MB of float32 feeds)."""


@dataclass(frozen=True)
class ImageArguments:
    """``[DIR] IMAGE...`` resolved: the engines folder, the image files, those that came from a folder, and what
    the folders held that is not read (links, pipes: ``images.loading.list_files``)."""

    engines_dir: str
    images: tuple[Path, ...]
    from_folders: frozenset[Path]
    passed_over: tuple[SkippedFile, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """An image that was not classified: its name, why, whether it was named on the command line (rather than
    found in a folder), and the error (whose exit code a run ends with when the image was named)."""

    source: str
    reason: str
    named: bool
    error: RszError

    def to_dict(self) -> dict:
        return {"source": self.source, "reason": self.reason}


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
"""Names that say "an image file": a missing first path named so is a missing image, not a mistyped build."""


def split_arguments(paths: Sequence[str]) -> ImageArguments:
    """``[DIR] IMAGE...``: the first path is the engines folder when it holds a manifest (else ./engines is);
    a folder among the images stands for every file under it. A first path that does not exist and is not named
    like an image is a mistyped build folder: IntegrityError naming the close ones, never a run from ./engines."""
    paths = list(paths)
    if paths and (Path(paths[0]) / MANIFEST_NAME).is_file():
        engines_dir = paths.pop(0)
    else:
        engines_dir = ENGINES_DIR
        if paths and not Path(paths[0]).exists() and Path(paths[0]).suffix.lower() not in IMAGE_SUFFIXES:
            raise _not_a_build(Path(paths[0]))
    if not paths:
        raise UsageError("give at least one image: rsz-export predict [DIR] IMAGE...")
    images: list[Path] = []
    from_folders: set[Path] = set()
    passed_over: list[SkippedFile] = []
    for path in map(Path, paths):
        if path.is_dir():
            found, links = list_files(path)
            images += found
            from_folders.update(found)
            passed_over += links
        else:
            images.append(path)
    if not images and not passed_over:
        raise UsageError(f"no files to classify: {', '.join(shown(p) for p in paths)} hold(s) no files (hidden names "
                         "are left out)", hint="give image files, or folders that hold some")
    return ImageArguments(engines_dir, tuple(images), frozenset(from_folders), tuple(passed_over))


def _not_a_build(path: Path) -> IntegrityError:
    parent = path.parent
    try:
        near = {p.name: p for p in parent.iterdir() if not p.name.startswith(".")}
    except OSError:
        near = {}

    def shown(name: str) -> str:
        return f"{parent / name}/" if near[name].is_dir() else str(parent / name)

    return IntegrityError(
        f"{path} is neither a build folder (a folder with {MANIFEST_NAME}) nor an image: it does not exist",
        hint=did_you_mean(path.name, near, shown) or "give the engines folder first: rsz-export predict DIR IMAGE...",
    )


class Batcher:
    """Groups pending images by route; a group is ready when it reaches its route's ``limit`` (max batch), and
    the oldest groups go early while the images waiting hold more than ``max_pixels`` input pixels."""

    def __init__(self, limit: Callable[[Route], int], max_pixels: int = MAX_PENDING_PIXELS):
        self.limit, self.max_pixels = limit, max_pixels
        self.groups: dict[Route, list[Pending]] = {}  # insertion order: oldest first
        self.pixels = 0

    def add(self, item: Pending) -> list[list[Pending]]:
        """Queue ``item``; the groups now ready to run."""
        chosen = item.input.route
        self.groups.setdefault(chosen, []).append(item)
        self.pixels += chosen.size.pixels
        ready = [self._pop(chosen)] if len(self.groups[chosen]) >= self.limit(chosen) else []
        while self.groups and self.pixels > self.max_pixels:
            ready.append(self._pop(next(iter(self.groups))))
        return ready

    def drain(self) -> list[list[Pending]]:
        """Every group still waiting, oldest first."""
        return [self._pop(chosen) for chosen in list(self.groups)]

    def _pop(self, chosen: Route) -> list[Pending]:
        group = self.groups.pop(chosen)
        self.pixels -= chosen.size.pixels * len(group)
        return group


def predict_files(session, arguments: ImageArguments, top: int,
                  max_pending_pixels: int = MAX_PENDING_PIXELS) -> Iterator[Prediction | Skipped]:
    """A Prediction or a Skipped for every image of ``arguments``, as each is done (batched images come out
    together, so the order can differ from the arguments'). An image that cannot be read or cannot run under
    the session's policy is a Skipped; problems with the engines themselves stop the run."""
    batcher = Batcher(session.max_batch, max_pending_pixels)
    for item in arguments.passed_over:
        yield Skipped(str(item.path), item.reason, False, UsageError(item.reason))
    for path in arguments.images:
        started = time.perf_counter()
        try:
            ready = batcher.add(Pending(str(path), session.prepare(load_rgb(path)), started))
        except (IntegrityError, UsageError) as exc:
            yield Skipped(str(path), exc.message, path not in arguments.from_folders, exc)
            continue
        for group in ready:
            yield from session.classify(group, top)
    for group in batcher.drain():
        yield from session.classify(group, top)


def final_error(skipped: Sequence[Skipped], classified: int, total: int) -> RszError | None:
    """How a run over ``total`` images ends: with the error of an image named on the command line that could
    not be used (the only image: its own error; several: a count and the first reason), with a UsageError when
    nothing was classified, else None. Images skipped from folders alone are not an error."""
    named = [s for s in skipped if s.named]
    if named and total == 1:
        return named[0].error
    if named:
        first = named[0].error
        return type(first)(f"{len(named)} of the {total} image(s) named could not be used; the first, "
                           f"{shown(named[0].source)}: {first.message}", hint=first.hint)
    if not classified:
        return UsageError(f"none of the {total} file(s) given could be classified (each was skipped, see above)",
                          hint="give JPEG/PNG images within what the engines' range can hold")
    return None
