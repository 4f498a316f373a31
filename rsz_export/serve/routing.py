"""Routing an image to an engine and profile, at the size it will run: its own when covered, else resized into
the range with its aspect ratio kept (``oversize="shrink"``). Pure.

Routing: every (engine, plan profile) pair the chosen engines carry is a candidate; the input goes to the
covering candidate with the smallest max area, ties to the earlier engine and lower profile index: the plan's
one routing rule (``plan.profiles.route``) applied across engines.

Sizes: ResNet-50 accepts any side >= 32 and the planned profiles accept every integer size in their band, so
sizes that are not multiples of the stride 32 run as they are (``stride="exact"``, the default: no resampling,
no padding). ``stride="snap"`` rounds each side to the nearest multiple of 32 first (a resize changing the
aspect ratio by under 32 pixels), for backends that are fastest there. An image no profile covers follows
``oversize``: ``"error"`` refuses it naming the covered range; ``"shrink"`` resizes it, aspect ratio kept, by
the scale closest to 1 that fits a profile: down into the largest profile for big images, up to the smallest
side for thumbnails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rsz_export.errors import UsageError
from rsz_export.plan.profiles import route
from rsz_export.shapes import STRIDE, Profile, Resolution

OVERSIZE_POLICIES = ("error", "shrink")
STRIDE_POLICIES = ("exact", "snap")


@dataclass(frozen=True)
class Candidate:
    """One place an input can run: engine ``engine`` (index into the session's engines), plan profile ``profile``."""

    engine: int
    profile: int
    shape: Profile


@dataclass(frozen=True)
class Route:
    """Where an image goes and at what size."""

    engine: int
    profile: int
    size: Resolution
    resized: bool


def _snap(side: int, lo: int = STRIDE, hi: int = 1 << 30) -> int:
    """The multiple of 32 nearest ``side`` inside lo..hi, or ``side`` clamped there if none lies inside."""
    inside = [m for m in (math.floor(side / STRIDE) * STRIDE, math.ceil(side / STRIDE) * STRIDE) if lo <= m <= hi]
    return min(inside, key=lambda m: (abs(m - side), m)) if inside else min(max(side, lo), hi)


def covered_text(candidates: Sequence[Candidate]) -> str:
    shapes = sorted({c.shape.describe() for c in candidates})
    return "; ".join(shapes)


def fit_size(h: int, w: int, candidates: Sequence[Candidate], batch: int, stride: str) -> Resolution | None:
    """The size, aspect ratio kept, that fits a profile with the scale closest to 1; None if none can."""
    best = None
    for c in candidates:
        p = c.shape
        if not p.min.batch <= batch <= p.max.batch:
            continue
        lo_scale = max(p.min.h / h, p.min.w / w)
        hi_scale = min(p.max.h / h, p.max.w / w)
        if lo_scale > hi_scale:
            continue
        scale = min(max(1.0, lo_scale), hi_scale)
        key = (abs(math.log(scale)), p.max_pixels)
        if best is None or key < best[0]:
            best = (key, scale, p)
    if best is None:
        return None
    _, scale, p = best
    fh, fw = min(max(round(h * scale), p.min.h), p.max.h), min(max(round(w * scale), p.min.w), p.max.w)
    if stride == "snap":
        fh, fw = _snap(fh, p.min.h, p.max.h), _snap(fw, p.min.w, p.max.w)
    return Resolution(fh, fw)


def choose_route(h: int, w: int, candidates: Sequence[Candidate], batch: int = 1, oversize: str = "error",
                 stride: str = "exact") -> Route:
    """Route an h x w image (see the module docstring); UsageError naming the covered range if it cannot run."""
    want = (h, w) if stride == "exact" else (_snap(h), _snap(w))
    index = route([c.shape for c in candidates], batch, *want)
    if index is None and oversize == "shrink":
        fitted = fit_size(h, w, candidates, batch, stride)
        if fitted is None:
            raise UsageError(
                f"a {h}x{w} image cannot be resized into any profile with its aspect ratio kept "
                f"(covered: {covered_text(candidates)})",
                hint="crop it first, or build a range whose min and max allow this aspect ratio",
            )
        want = (fitted.h, fitted.w)
        index = route([c.shape for c in candidates], batch, *want)
    if index is None:
        raise UsageError(
            f"a {h}x{w} image (batch {batch}) is outside every profile; covered: {covered_text(candidates)}",
            hint="use oversize='shrink' (--oversize shrink) to resize it into the range, or build a wider range",
        )
    chosen = candidates[index]
    return Route(chosen.engine, chosen.profile, Resolution(*want), want != (h, w))
