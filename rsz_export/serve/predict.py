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
from rsz_export.errors import IntegrityError, RszError, UsageError
from rsz_export.images.loading import list_files, load_rgb
from rsz_export.plan.routing import Route
from rsz_export.serve.session import Pending, Prediction

MAX_PENDING_PIXELS = 16_000_000
"""Input pixels held back for batching at most (about 190 MB of float32 feeds)."""


@dataclass(frozen=True)
class ImageArguments:
    """``[DIR] IMAGE...`` resolved: the engines folder, the image files, and those that came from a folder."""

    engines_dir: str
    images: tuple[Path, ...]
    from_folders: frozenset[Path]


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


def split_arguments(paths: Sequence[str]) -> ImageArguments:
    """``[DIR] IMAGE...``: the first path is the engines folder when it holds a manifest (else ./engines is);
    a folder among the images stands for every file under it."""
    paths = list(paths)
    engines_dir = paths.pop(0) if paths and (Path(paths[0]) / MANIFEST_NAME).is_file() else ENGINES_DIR
    if not paths:
        raise UsageError("give at least one image: rsz-export predict [DIR] IMAGE...")
    images: list[Path] = []
    from_folders: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = list_files(path)
            images += found
            from_folders.update(found)
        else:
            images.append(path)
    return ImageArguments(engines_dir, tuple(images), frozenset(from_folders))


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
                           f"{named[0].source}: {first.message}", hint=first.hint)
    if not classified:
        return UsageError(f"none of the {total} file(s) given could be classified (each was skipped, see above)",
                          hint="give JPEG/PNG images within what the engines' range can hold")
    return None
