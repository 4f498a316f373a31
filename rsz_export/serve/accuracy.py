"""Accuracy against input resolution: top-1/top-5 and latency per size for every built engine, Pareto front marked.

Labels come from an ImageFolder layout: ``LABELED_DIR/<class>/<image>``, where ``<class>`` is one of the build's
class names (its ``--labels``, or ImageNet's as in ``rsz_export/data/imagenet_classes.txt`` for a 1000-class
build without them; case and ``_``/``-`` for spaces do not matter) or a class index 0..classes-1.

Preprocessing at size S (HxW) is the weights' evaluation transform scaled to S (``preprocess.crop_input``):
resize (bilinear, antialiased, aspect ratio kept) so the image covers S / ``crop_ratio`` (shorter side 256
for S = 224 with the standard 0.875), then take the centre S. Every image is decoded once and run at every
size on every engine; latency is the median of the per-image inference calls at batch 1 (the first call per
engine and size, which pays one-off allocation, is left out when there are two or more images).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rsz_export.errors import UsageError
from rsz_export.images.files import image_files, load_rgb
from rsz_export.images.preprocess import crop_input
from rsz_export.model.imagenet import CROP_RATIO
from rsz_export.model.labels import normal_name
from rsz_export.plan.profiles import route
from rsz_export.serve.routing import Route
from rsz_export.shapes import Resolution
from rsz_export.validate.parity import top_k


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
        from rsz_export.model.imagenet import labels

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
    """One engine at one size: accuracy over the labeled set and per-image latency."""

    engine: str
    backend: str
    size: str
    profile: int | None
    images: int
    top1: float | None
    top5: float | None
    latency_ms: float | None
    pareto: bool = False

    @property
    def covered(self) -> bool:
        return self.profile is not None


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (accuracy, latency) points: True where no other point is at least as accurate and as fast,
    and better in one."""

    def dominated(a: tuple[float, float]) -> bool:
        return any(b[0] >= a[0] and b[1] <= a[1] and (b[0] > a[0] or b[1] < a[1]) for b in points)

    return [not dominated(p) for p in points]


def mark_pareto(rows: list[SweepRow]) -> list[SweepRow]:
    """Rows with ``pareto`` set on the covered rows no other covered row beats on top-1 and latency."""
    covered = [i for i, r in enumerate(rows) if r.covered]
    flags = pareto_front([(rows[i].top1, rows[i].latency_ms) for i in covered])
    front = {i for i, flag in zip(covered, flags) if flag}
    return [replace(r, pareto=i in front) for i, r in enumerate(rows)]


class _Tally:
    def __init__(self):
        self.top1 = self.top5 = 0
        self.latencies: list[float] = []

    def add(self, logits, label: int, latency_ms: float) -> None:
        order = top_k(logits, 5)[0].tolist()
        self.top1 += int(order[0] == label)
        self.top5 += int(label in order)
        self.latencies.append(latency_ms)

    def latency(self) -> float:
        timed = self.latencies[1:] if len(self.latencies) > 1 else self.latencies
        return statistics.median(timed)


def run_sweep(
    session, labeled: LabeledSet, sizes: list[Resolution], crop_ratio: float = CROP_RATIO, log=lambda message: None
) -> list[SweepRow]:
    """Every engine of ``session`` at every size over ``labeled``; sizes no profile of an engine covers get a row
    with no numbers. Returns rows in engine-then-size order with the Pareto front marked."""
    import numpy as np

    cells = {}
    for e in range(len(session.engines)):
        mine = [c for c in session.candidates if c.engine == e]
        for size in sizes:
            hit = route([c.shape for c in mine], session.batch, size.h, size.w)
            cells[(e, size)] = (None if hit is None else mine[hit].profile, _Tally())
    for n, (path, label) in enumerate(labeled.items, 1):
        image = load_rgb(path)
        for size in sizes:
            feed = crop_input(image, size, crop_ratio)
            feed = np.repeat(feed, session.batch, axis=0) if session.batch > 1 else feed
            for (e, s), (profile, tally) in cells.items():
                if s == size and profile is not None:
                    logits, ms = session.run(feed, Route(e, profile, size, True))
                    tally.add(logits[0], label, ms)
        log(f"[{n}/{len(labeled.items)}] {path}")
    return mark_pareto([_row(session, e, size, profile, tally) for (e, size), (profile, tally) in cells.items()])


def _row(session, engine: int, size: Resolution, profile: int | None, tally: _Tally) -> SweepRow:
    name, backend = session.engine_name(engine)
    count = len(tally.latencies)
    if profile is None or not count:
        return SweepRow(name, backend, str(size), None, 0, None, None, None)
    return SweepRow(name, backend, str(size), profile, count, tally.top1 / count, tally.top5 / count, tally.latency())


def render_sweep(rows: list[SweepRow], labeled: LabeledSet) -> str:
    """The sweep as a table; ``*`` marks the Pareto front (no other row is both more accurate and faster)."""
    lines = [
        f"{len(labeled.items)} image(s) in {len(labeled.classes)} class(es) from {labeled.root}"
        + (f"; skipped {len(labeled.skipped)} unreadable file(s)" if labeled.skipped else ""),
        f"{'engine':<18} {'size':<10} {'profile':>7} {'top-1':>7} {'top-5':>7} {'p50 ms':>9}  pareto",
    ]
    for r in rows:
        if not r.covered:
            lines.append(f"{r.engine:<18} {r.size:<10} {'-':>7} {'outside every profile of this engine':>34}")
            continue
        lines.append(
            f"{r.engine:<18} {r.size:<10} {r.profile:>7} {r.top1:>7.1%} {r.top5:>7.1%} "
            f"{r.latency_ms:>9.2f}  {'*' if r.pareto else ''}"
        )
    lines.append("pareto *: no other engine/size is both at least as accurate (top-1) and at least as fast")
    return "\n".join(lines)


def rows_to_json(rows: list[SweepRow], labeled: LabeledSet) -> dict:
    return {
        "images": len(labeled.items),
        "classes": len(labeled.classes),
        "skipped": len(labeled.skipped),
        "rows": [asdict(r) for r in rows],
    }
