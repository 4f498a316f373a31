"""Accuracy against input resolution and preprocessing: top-1/top-5 and latency per engine, policy and size,
Pareto front marked.

Labels come from an ImageFolder layout: ``LABELED_DIR/<class>/<image>``, where ``<class>`` is one of the build's
class names (its ``--labels``, or ImageNet's as in ``rsz_export/data/imagenet_classes.txt`` for a 1000-class
build without them; case and ``_``/``-`` for spaces do not matter) or a class index 0..classes-1.

Each cell is an engine, a preprocessing policy (``serve.preprocess_policy``, the same code predict runs) and a size S:

* ``crop`` at S: the weights' evaluation transform scaled to S: resize so the image covers S / ``crop_ratio``
  (shorter side 256 for S = 224 with the standard 0.875), then take the centre S;
* ``fit`` at S: the whole image, aspect ratio kept, its shorter side at S (fitted into the engine's profiles
  when its longer side would not fit: a wide image at a size near the top of the range runs smaller);
* ``native``: every image at its own size (one cell per engine, whatever the sizes; images no profile covers
  are counted as skipped).

A crop or fit cell whose SxS no profile of the engine covers gets a row with no numbers. Every image is decoded
once and run in every cell; latency is the median of the per-image inference calls at the profiles' smallest
batch (the first call of a cell, which pays one-off allocation, is left out when there are two or more images).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rsz_export.errors import UsageError
from rsz_export.images.imagenet import CROP_RATIO
from rsz_export.images.loading import image_files, load_rgb
from rsz_export.model.labels import normal_name
from rsz_export.parity import top_k
from rsz_export.plan.profiles import route
from rsz_export.serve.preprocess_policy import Preprocess
from rsz_export.shapes import Resolution


def class_index(folder: str, names: Sequence[str]) -> int | None:
    """The class index a folder name stands for (a name in ``names``, or an index), or None if it names no class
    the model knows."""
    table = {normal_name(n): i for i, n in enumerate(names)}
    if normal_name(folder) in table:
        return table[normal_name(folder)]
    if folder.isdigit():
        return int(folder) if int(folder) < len(names) else None
    return None


@dataclass(frozen=True)
class LabeledSet:
    """Images with their class index, and the files that were skipped (with why)."""

    root: str
    items: tuple[tuple[str, int], ...]
    classes: tuple[tuple[str, int], ...]
    skipped: tuple[tuple[str, str], ...] = ()


def load_labeled(root: str | Path, names: Sequence[str] | None = None) -> LabeledSet:
    """Read an ImageFolder-layout directory whose folders name classes of ``names`` (the build's class names;
    default ImageNet's); UsageError for a missing/empty folder or classes the model lacks."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--images {root} is not a directory", hint="give LABELED_DIR/<class name>/<image files>")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root} has no class folders", hint="lay it out as LABELED_DIR/<class name>/<image files>")
    if names is None:
        from rsz_export.images.imagenet import labels

        names = labels()
    mapped = {f.name: class_index(f.name, names) for f in folders}
    unknown = sorted(name for name, index in mapped.items() if index is None)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        known = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        raise UsageError(
            f"{len(unknown)} class folder(s) in {root} name no class the model knows: {shown}",
            hint=f"name each folder by one of the build's {len(names)} class names ({known}) or by a class index "
            f"0..{len(names) - 1}",
        )
    items, skipped = [], []
    for folder in folders:
        files, bad = image_files(folder)
        items += [(str(f), mapped[folder.name]) for f in files]
        skipped += [(str(s.path), s.reason) for s in bad]
    if not items:
        raise UsageError(f"{root} has class folders but no readable images in them")
    return LabeledSet(str(root), tuple(items), tuple((n, mapped[n]) for n in sorted(mapped)), tuple(skipped))


@dataclass(frozen=True)
class SweepRow:
    """One engine, policy and size: accuracy over the labeled set, per-image latency, mean input megapixels.
    ``profile`` is the one that runs a crop; fit and native route each image by its own size (None)."""

    engine: str
    backend: str
    preprocess: str
    size: str
    covered: bool
    profile: int | None
    images: int
    skipped: int
    top1: float | None
    top5: float | None
    latency_ms: float | None
    megapixels: float | None
    pareto: bool = False


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (accuracy, latency) points: True where no other point is at least as accurate and as fast,
    and better in one."""

    def dominated(a: tuple[float, float]) -> bool:
        return any(b[0] >= a[0] and b[1] <= a[1] and (b[0] > a[0] or b[1] < a[1]) for b in points)

    return [not dominated(p) for p in points]


def mark_pareto(rows: list[SweepRow]) -> list[SweepRow]:
    """Rows with ``pareto`` set on the measured rows no other measured row beats on top-1 and latency."""
    measured = [i for i, r in enumerate(rows) if r.top1 is not None]
    flags = pareto_front([(rows[i].top1, rows[i].latency_ms) for i in measured])
    front = {i for i, flag in zip(measured, flags) if flag}
    return [replace(r, pareto=i in front) for i, r in enumerate(rows)]


def sweep_sizes(plan) -> list[Resolution]:
    """The sizes a sweep runs by default: the plan's min, each profile's opt point, and its max."""
    sides = {plan.min_size, plan.max_size} | {p.opt.h for p in plan.profiles if p.opt.h == p.opt.w}
    return [Resolution(s, s) for s in sorted(sides)]


class _Tally:
    def __init__(self):
        self.top1 = self.top5 = self.skipped = 0
        self.latencies: list[float] = []
        self.pixels: list[int] = []

    def add(self, logits, label: int, latency_ms: float, pixels: int) -> None:
        order = top_k(logits, 5)[0].tolist()
        self.top1 += int(order[0] == label)
        self.top5 += int(label in order)
        self.latencies.append(latency_ms)
        self.pixels.append(pixels)

    def latency(self) -> float:
        timed = self.latencies[1:] if len(self.latencies) > 1 else self.latencies
        return statistics.median(timed)


@dataclass
class _Cell:
    engine: int
    policy: Preprocess
    candidates: tuple
    profile: int | None
    covered: bool
    tally: _Tally = field(default_factory=_Tally)

    def measure(self, session, image, label: int) -> None:
        try:
            ready = self.policy.prepare(image, self.candidates, session.batch)
        except UsageError:  # fit: an aspect ratio no profile holds; native: a size no profile covers
            self.tally.skipped += 1
            return
        logits, latency_ms = session.infer([ready])
        self.tally.add(logits[0], label, latency_ms, ready.route.size.pixels)

    def row(self, session) -> SweepRow:
        name, backend = session.engine_name(self.engine)
        t, size = self.tally, "native" if self.policy.size is None else str(self.policy.size)
        count = len(t.latencies)
        head = (name, backend, self.policy.mode, size, self.covered, self.profile, count, t.skipped)
        if not count:
            return SweepRow(*head, None, None, None, None)
        return SweepRow(*head, t.top1 / count, t.top5 / count, t.latency(), statistics.mean(t.pixels) / 1e6)


def _cells(session, sizes: list[Resolution], modes: tuple[str, ...], crop_ratio: float) -> list[_Cell]:
    """Engine by engine, size by size, policy by policy (native: once per engine, after the sizes)."""
    cells = []
    for e in range(len(session.engines)):
        mine = tuple(c for c in session.candidates if c.engine == e)
        for size in sizes:
            hit = route([c.shape for c in mine], session.batch, size.h, size.w)
            for mode in (m for m in modes if m != "native"):
                profile = mine[hit].profile if hit is not None and mode == "crop" else None
                cells.append(_Cell(e, Preprocess(mode, size, crop_ratio=crop_ratio), mine, profile, hit is not None))
        if "native" in modes:
            cells.append(_Cell(e, Preprocess("native", crop_ratio=crop_ratio), mine, None, True))
    return cells


def run_sweep(session, labeled: LabeledSet, sizes: list[Resolution], modes: tuple[str, ...] = ("crop",),
              crop_ratio: float = CROP_RATIO, log=lambda message: None) -> list[SweepRow]:
    """Every engine of ``session`` under every policy in ``modes`` at every size over ``labeled``; returns rows
    in engine, size, policy order with the Pareto front marked (see the module docstring)."""
    cells = _cells(session, sizes, modes, crop_ratio)
    for n, (path, label) in enumerate(labeled.items, 1):
        image = load_rgb(path)
        for cell in cells:
            if cell.covered:
                cell.measure(session, image, label)
        log(f"[{n}/{len(labeled.items)}] {path}")
    return mark_pareto([cell.row(session) for cell in cells])
