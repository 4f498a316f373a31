"""A resolution range -> a family of optimization profiles (the plan), and the routing rule. Pure.

How profiles are planned: the side-length range min..max is cut into K bands of equal ratio
(so each band spans about the same factor of pixels, which is what cost follows), band edges rounded
to multiples of 32 where the range is wide enough. Each band becomes one profile whose opt point is
the band's geometric middle. With ``aspect="free"`` every profile starts at the global minimum, so
profile i accepts any (h, w) whose longer side is at most its band's top: every (h, w) in the range is
covered, non-square ones included. With ``aspect="square"`` profile i starts where profile i-1 ends:
tighter ranges, but an input whose two sides fall in different bands is not covered.

Routing: among the profiles that cover an input, take the one with the smallest max area (the least
compute reserved for nothing); ties go to the lower index. The same rule serves every backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rsz_export.errors import UsageError, check_choice, check_int
from rsz_export.shapes import STRIDE, BatchRange, InputShape, Profile, Resolution, check_side

ASPECTS = ("free", "square")
ROUTING_RULE = "smallest max area among the covering profiles; ties to the lower index"
BAND_RATIO = 1.4
"""Default: one profile per 1.4x step in side length (about 2x in pixels)."""
MAX_PROFILES = 16


def default_profile_count(min_size: int, max_size: int) -> int:
    """One profile per 1.4x step in side length, at least 1 and at most 6."""
    if max_size <= min_size:
        return 1
    return max(1, min(6, math.ceil(math.log(max_size / min_size) / math.log(BAND_RATIO) - 1e-9)))


@dataclass(frozen=True)
class PlanSpec:
    """What the user asked for: a side-length range, a profile count, batch and aspect policy."""

    min_size: int
    max_size: int
    profiles: int | None = None
    batch: BatchRange = field(default_factory=BatchRange)
    aspect: str = "free"

    def __post_init__(self) -> None:
        check_side(self.min_size, "--min")
        check_side(self.max_size, "--max")
        if self.min_size > self.max_size:
            raise UsageError(f"--min {self.min_size} is above --max {self.max_size}: the range must be min <= max")
        check_choice(self.aspect, "aspect", ASPECTS)
        if self.profiles is not None:
            check_int(self.profiles, f"--profiles for {self.min_size}..{self.max_size}", 1, self.profile_limit)

    @property
    def profile_count(self) -> int:
        return self.profiles if self.profiles is not None else default_profile_count(self.min_size, self.max_size)

    @property
    def profile_limit(self) -> int:
        """The most profiles the range can be split into (each band at least one pixel wide)."""
        return max(1, min(MAX_PROFILES, self.max_size - self.min_size + 1))


@dataclass(frozen=True)
class Plan:
    """A family of optimization profiles over one resolution range."""

    min_size: int
    max_size: int
    aspect: str
    batch: BatchRange
    profiles: tuple[Profile, ...]

    def covered_ranges(self, indices: Sequence[int] | None = None) -> str:
        """The ranges of these profiles (default: all) in words, for error messages."""
        chosen = range(len(self.profiles)) if indices is None else indices
        return "; ".join(f"profile {i}: {self.profiles[i].describe()}" for i in chosen)

    def to_dict(self) -> dict:
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "aspect": self.aspect,
            "batch": [self.batch.min, self.batch.opt, self.batch.max],
            "routing": ROUTING_RULE,
            "profiles": [p.to_dict() for p in self.profiles],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        try:
            return cls(
                min_size=int(data["min_size"]),
                max_size=int(data["max_size"]),
                aspect=str(data["aspect"]),
                batch=BatchRange(*(int(b) for b in data["batch"])),
                profiles=tuple(Profile.from_dict(p) for p in data["profiles"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"malformed plan: {exc}") from None


def route(profiles: Sequence[Profile], batch: int, h: int, w: int) -> int | None:
    """The routing rule, used by every backend, runner and server: the index of the covering profile with the
    smallest max area (ties: lowest index), or None when no profile covers the input."""
    best = None
    for index, profile in enumerate(profiles):
        if profile.covers(batch, h, w) and (best is None or profile.max_pixels < profiles[best].max_pixels):
            best = index
    return best


def _round_step(min_size: int, max_size: int, count: int) -> int:
    span = max_size - min_size
    for step in (STRIDE, 8, 1):
        if span >= 2 * step * count:
            return step
    return 1


def band_edges(min_size: int, max_size: int, count: int) -> list[int]:
    """Upper edges of ``count`` equal-ratio bands over min..max; the last is max. Strictly increasing."""
    step = _round_step(min_size, max_size, count)
    ratio = (max_size / min_size) ** (1 / count)
    edges: list[int] = []
    for i in range(1, count):
        raw = min_size * ratio**i
        edge = max(round(raw / step) * step, (edges[-1] if edges else min_size) + 1)
        edges.append(min(edge, max_size - (count - i)))
    edges.append(max_size)
    return edges


def opt_side(lo: int, hi: int) -> int:
    """A band's default opt point: its geometric middle, snapped to a multiple of 32 when that stays inside."""
    mid = math.sqrt(lo * hi)
    snapped = round(mid / STRIDE) * STRIDE
    return snapped if lo <= snapped <= hi else min(max(round(mid), lo), hi)


def plan_profiles(spec: PlanSpec) -> Plan:
    """Cut the spec's range into profiles (see module docstring)."""
    edges = band_edges(spec.min_size, spec.max_size, spec.profile_count)
    lows = [spec.min_size] + [e + 1 for e in edges[:-1]]
    profiles = []
    for band_lo, band_hi in zip(lows, edges):
        lo = spec.min_size if spec.aspect == "free" else band_lo
        opt = opt_side(band_lo, band_hi)
        b = spec.batch
        profiles.append(
            Profile(InputShape(b.min, lo, lo), InputShape(b.opt, opt, opt), InputShape(b.max, band_hi, band_hi))
        )
    return Plan(spec.min_size, spec.max_size, spec.aspect, spec.batch, tuple(profiles))


def uncovered_example(plan: Plan) -> Resolution | None:
    """A size in the plan's range (batch 1... its min batch) that no profile covers, or None if all are covered.

    Exact, not sampled: coverage only changes at profile edges, so checking every pair of edge values
    (and their neighbours) over the range decides it.
    """
    cuts = {plan.min_size, plan.max_size}
    for p in plan.profiles:
        for s in (p.min.h, p.max.h, p.min.w, p.max.w):
            cuts.update({s - 1, s, s + 1})
    cuts = sorted(c for c in cuts if plan.min_size <= c <= plan.max_size)
    for h in cuts:
        for w in cuts:
            if route(plan.profiles, plan.batch.min, h, w) is None:
                return Resolution(h, w)
    return None


def single_profile_plan(plan: Plan, shape: InputShape) -> Plan:
    """``plan`` reduced to one profile fixed at ``shape`` (what a shape-fixed engine is built from)."""
    batch = BatchRange(shape.batch, shape.batch, shape.batch)
    return replace(plan, batch=batch, profiles=(Profile(shape, shape, shape),))
