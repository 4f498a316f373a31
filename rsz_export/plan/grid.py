"""The grid of sizes that validate checks and bench times: each profile's corners and awkward sizes. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from rsz_export.plan.profiles import Plan
from rsz_export.shapes import STRIDE, Resolution


@dataclass(frozen=True)
class GridPoint:
    """One size to check or time, the profile it exercises, and why it is in the grid."""

    profile: int
    size: Resolution
    role: str
    """Why it is in the grid: "min", "opt", "max", "odd" (odd, non-square) or "aspect" (widest)."""


def _odd(value: int, lo: int, hi: int) -> int:
    value = value if value % 2 else value + 1
    return value if value <= hi else max(lo, value - 2)


def size_grid(plan: Plan) -> list[GridPoint]:
    """Per profile: its min, opt and max, an odd non-square size inside it, and its widest aspect ratio.

    Shared by validate and bench. Sizes repeat across profiles where profiles share an edge; callers that
    run one engine for all profiles can de-duplicate on ``size``.
    """
    points: list[GridPoint] = []
    for index, p in enumerate(plan.profiles):
        lo, hi = p.min.h, p.max.h
        points += [
            GridPoint(index, Resolution(lo, lo), "min"),
            GridPoint(index, Resolution(p.opt.h, p.opt.w), "opt"),
            GridPoint(index, Resolution(hi, hi), "max"),
        ]
        if hi - lo >= 4:
            h = _odd(lo + (hi - lo) // 3, lo, hi)
            w = _odd(lo + 2 * (hi - lo) // 3, lo, hi)
            if w % STRIDE == 0 or h == w:
                w = _odd(w + 2, lo, hi)
            points.append(GridPoint(index, Resolution(h, w), "odd"))
            points.append(GridPoint(index, Resolution(lo, hi), "aspect"))
    return points


