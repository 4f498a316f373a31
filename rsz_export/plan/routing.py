"""Routing an image to an engine and profile, at the size it will run. Pure.

Routing: every (engine, plan profile) pair the chosen engines carry is a candidate; the input goes to the
covering candidate with the smallest max area, ties to the earlier engine and lower profile index: the plan's
one routing rule (``plan.profiles.route``) applied across engines.

Sizes: ResNet-50 accepts any side >= 32 and the planned profiles accept every integer size in their band, so
sizes that are not multiples of the stride 32 run as they are (``stride="exact"``, the default: no resampling,
no padding). ``stride="snap"`` rounds each side to the nearest multiple of 32 first (a resize changing the
aspect ratio by under 32 pixels), for backends that are fastest there. An image no profile covers is refused
naming the covered range, unless ``fit`` is asked for: then it is resized, aspect ratio kept, by the scale
closest to the wanted one (1: its own size) that fits a profile: down into the largest profile for big images,
up to the smallest side for thumbnails. How an image is sized before routing is ``serve.preprocess_policy``'s business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rsz_export.errors import UsageError
from rsz_export.plan.profiles import route
from rsz_export.shapes import STRIDE, Profile, Resolution

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


def plan_candidates(plan) -> tuple[Candidate, ...]:
    """Every profile of a plan as a candidate of one engine (index 0): what a server holding one engine with
    all the plan's profiles (ONNX Runtime, or TensorRT's default) routes over."""
    return tuple(Candidate(0, i, p) for i, p in enumerate(plan.profiles))


def _snap(side: int, lo: int = STRIDE, hi: int = 1 << 30) -> int:
    """The multiple of 32 nearest ``side`` inside lo..hi, or ``side`` clamped there if none lies inside."""
    inside = [m for m in (math.floor(side / STRIDE) * STRIDE, math.ceil(side / STRIDE) * STRIDE) if lo <= m <= hi]
    return min(inside, key=lambda m: (abs(m - side), m)) if inside else min(max(side, lo), hi)


def covered_text(candidates: Sequence[Candidate]) -> str:
    shapes = sorted({c.shape.describe() for c in candidates})
    return "; ".join(shapes)


def widest_aspect(candidates: Sequence[Candidate]) -> float:
    """The most elongated aspect ratio (longer side / shorter side) any candidate accepts."""
    return max(max(c.shape.max.w / c.shape.min.h, c.shape.max.h / c.shape.min.w) for c in candidates)


def fit_size(h: int, w: int, candidates: Sequence[Candidate], batch: int, stride: str,
             target: float = 1.0) -> Resolution | None:
    """The size, aspect ratio kept, that fits a profile with the scale closest to ``target``; None if none can."""
    best = None
    for c in candidates:
        p = c.shape
        if not p.min.batch <= batch <= p.max.batch:
            continue
        lo_scale = max(p.min.h / h, p.min.w / w)
        hi_scale = min(p.max.h / h, p.max.w / w)
        if lo_scale > hi_scale:
            continue
        scale = min(max(target, lo_scale), hi_scale)
        key = (abs(math.log(scale / target)), p.max_pixels)
        if best is None or key < best[0]:
            best = (key, scale, p)
    if best is None:
        return None
    _, scale, p = best
    fh, fw = min(max(round(h * scale), p.min.h), p.max.h), min(max(round(w * scale), p.min.w), p.max.w)
    if stride == "snap":
        fh, fw = _snap(fh, p.min.h, p.max.h), _snap(fw, p.min.w, p.max.w)
    return Resolution(fh, fw)


def _wanted(h: int, w: int, stride: str, target: float) -> tuple[int, int]:
    want = (max(1, round(h * target)), max(1, round(w * target)))
    return want if stride == "exact" else (_snap(want[0]), _snap(want[1]))


def choose_route(h: int, w: int, candidates: Sequence[Candidate], batch: int = 1, fit: bool = False,
                 stride: str = "exact", target: float = 1.0) -> Route:
    """Route an h x w image scaled by ``target`` (see the module docstring); UsageError naming the covered range
    if it cannot run."""
    want = _wanted(h, w, stride, target)
    index = route([c.shape for c in candidates], batch, *want)
    if index is None and fit:
        fitted = fit_size(h, w, candidates, batch, stride, target)
        if fitted is None:
            raise UsageError(
                f"a {h}x{w} image cannot be resized into any profile with its aspect ratio kept: it is "
                f"{max(h, w) / min(h, w):.1f}:1 and the profiles hold at most {widest_aspect(candidates):.2f}:1",
                hint="use --preprocess crop (a centre crop), or build a range whose min and max allow this aspect "
                "ratio",
            )
        want = (fitted.h, fitted.w)
        index = route([c.shape for c in candidates], batch, *want)
    if index is None:
        raise UsageError(
            f"a {h}x{w} image (batch {batch}) is outside every profile; covered: {covered_text(candidates)}",
            hint="use --preprocess fit to resize it into the range (library: Preprocess('fit')), or build a wider "
            "range",
        )
    chosen = candidates[index]
    return Route(chosen.engine, chosen.profile, Resolution(*want), want != (h, w))
