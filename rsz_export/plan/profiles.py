"""Resolution range or profile file -> optimization profiles, the routing rule, and the test-size grid. Pure.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

import tomllib

from rsz_export.errors import UsageError
from rsz_export.shapes import STRIDE, BatchRange, InputShape, Profile, Resolution, check_side

ASPECTS = ("free", "square")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
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
        if self.aspect not in ASPECTS:
            raise UsageError(f"unknown aspect {self.aspect!r}: choose one of {', '.join(ASPECTS)}")
        if self.profiles is not None:
            if isinstance(self.profiles, bool) or not isinstance(self.profiles, int) or self.profiles < 1:
                raise UsageError(f"--profiles must be a whole number of at least 1, got {self.profiles!r}")
            limit = max_profiles(self.min_size, self.max_size)
            if self.profiles > limit:
                raise UsageError(
                    f"--profiles {self.profiles} is too many for {self.min_size}..{self.max_size}: at most {limit}"
                )

    @property
    def profile_count(self) -> int:
        return self.profiles if self.profiles is not None else default_profile_count(self.min_size, self.max_size)


def max_profiles(min_size: int, max_size: int) -> int:
    """The most profiles a range can be split into (each band at least one pixel wide)."""
    return max(1, min(MAX_PROFILES, max_size - min_size + 1))


@dataclass(frozen=True)
class Plan:
    """A family of optimization profiles over one resolution range."""

    min_size: int
    max_size: int
    aspect: str
    batch: BatchRange
    profiles: tuple[Profile, ...]

    def route(self, batch: int, h: int, w: int) -> int | None:
        """Index of the profile that serves this input (see module docstring), or None if none covers it."""
        return route(self.profiles, batch, h, w)

    def covered_ranges(self) -> str:
        """The covered ranges in words, for error messages."""
        return "; ".join(f"profile {i}: {p.describe()}" for i, p in enumerate(self.profiles))

    def to_dict(self) -> dict:
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "aspect": self.aspect,
            "batch": [self.batch.min, self.batch.opt, self.batch.max],
            "routing": "smallest max area among the covering profiles; ties to the lower index",
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


def route(profiles: tuple[Profile, ...] | list[Profile], batch: int, h: int, w: int) -> int | None:
    """Index of the covering profile with the smallest max area (ties: lowest index), or None."""
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


def _opt_side(lo: int, hi: int) -> int:
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
        opt = _opt_side(band_lo, band_hi)
        b = spec.batch
        profiles.append(
            Profile(InputShape(b.min, lo, lo), InputShape(b.opt, opt, opt), InputShape(b.max, band_hi, band_hi))
        )
    return Plan(spec.min_size, spec.max_size, spec.aspect, spec.batch, tuple(profiles))


@dataclass(frozen=True)
class GridPoint:
    """One size to check or time, the profile it exercises, and why it is in the grid."""

    profile: int
    size: Resolution
    role: str  # "min", "opt", "max", "odd", "aspect"


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


@dataclass(frozen=True)
class ProfileFile:
    """A deployment target read from ``profiles/NAME.toml``."""

    name: str
    description: str
    spec: PlanSpec
    precision: str = "fp32"
    explicit: tuple[Profile, ...] = ()

    def plan(self) -> Plan:
        """The profiles this file asks for: its explicit list if it has one, else planned from its range."""
        if not self.explicit:
            return plan_profiles(self.spec)
        return replace(plan_profiles(replace(self.spec, profiles=None)), profiles=self.explicit)


_FILE_KEYS = {"name", "description", "min", "max", "profiles", "batch", "aspect", "precision", "profile"}


def load_profile_file(path: str | Path) -> ProfileFile:
    """Read and check a profile TOML file; every problem is a UsageError naming the file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"profile file {path} does not exist", hint="see profiles/ for examples") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read profile file {path}: {exc}") from None
    return profile_file_from_dict(data, source=str(path))


def profile_file_from_dict(data: dict, source: str = "<profile>") -> ProfileFile:
    """Check a parsed profile file (see ``profiles/*.toml``) and turn it into a ProfileFile."""
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FILE_KEYS))}")
    try:
        spec = PlanSpec(
            min_size=data["min"],
            max_size=data["max"],
            profiles=data.get("profiles"),
            batch=BatchRange.parse(data.get("batch", 1)),
            aspect=data.get("aspect", "free"),
        )
    except KeyError as exc:
        raise UsageError(f"{source}: missing key {exc.args[0]!r} (min and max are required)") from None
    except UsageError as exc:
        raise UsageError(f"{source}: {exc.message}", exc.hint) from None
    precision = data.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"{source}: unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    explicit = tuple(_explicit_profile(p, spec, source) for p in data.get("profile", []))
    name = str(data.get("name", Path(source).stem))
    return ProfileFile(name, str(data.get("description", "")), spec, precision, explicit)


def _explicit_profile(entry: dict, spec: PlanSpec, source: str) -> Profile:
    try:
        lo, opt, hi = (Resolution.parse(str(entry[k])) for k in ("min", "opt", "max"))
    except KeyError as exc:
        raise UsageError(f"{source}: a [[profile]] entry lacks {exc.args[0]!r}") from None
    b = spec.batch
    profile = Profile(InputShape(b.min, lo.h, lo.w), InputShape(b.opt, opt.h, opt.w), InputShape(b.max, hi.h, hi.w))
    if lo.h < spec.min_size or lo.w < spec.min_size or hi.h > spec.max_size or hi.w > spec.max_size:
        raise UsageError(
            f"{source}: profile {profile.describe()} lies outside min..max {spec.min_size}..{spec.max_size}"
        )
    return profile


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
