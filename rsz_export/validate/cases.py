"""What validate checks: its settings, and the (profiles, size, batch) cases per stage. Pure.

The sizes come from the plan's shared grid (``plan.grid``), plus or instead of ``--sizes``; each case runs on
the export (ONNX Runtime) and on every engine, on every input, or (a backbone's feature maps by default,
``--inputs-per-size``) on a few taken in turn. Backends whose one engine runs every profile with the same
graph (ONNX Runtime, PyTorch) run a size once for all the profiles that share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rsz_export.artifacts.manifest import ENGINES_DIR
from rsz_export.errors import UsageError, check_int
from rsz_export.plan.grid import size_grid
from rsz_export.plan.profiles import Plan
from rsz_export.shapes import MAX_BATCH, Resolution
from rsz_export.validate.tolerance import TolerancePolicy, feature_policy

DEFAULT_RANDOM_INPUTS = 2
MAX_RANDOM_INPUTS = 64
FEATURE_INPUTS_PER_SIZE = 1
"""Inputs a backbone's feature maps are checked on at each size by default, taken in turn from the photographs and
random inputs (each one at some size, where the grid has as many sizes). Why one: each map is compared whole
(hundreds of thousands of values per image), so one image already measures the arithmetic at a size, and a
feature build's range (600..1344 for a detector) makes each image at each size cost seconds per stage on a CPU."""
MAX_INPUTS_PER_SIZE = 1000
FEATURE_GRID_ROLES = ("min", "max", "odd", "aspect")
"""The grid points (``plan.grid`` roles) a backbone's feature maps are checked at by default: each profile's min,
max, odd size and widest aspect, without its opt size, which lies inside the range those already run through the
profile's kernels (``--sizes`` adds it back)."""


@dataclass(frozen=True)
class ValidateSpec:
    """What to validate and how strictly. None tolerances keep each precision's preset."""

    directory: Path = Path(ENGINES_DIR)
    sizes: tuple[Resolution, ...] = ()
    replace_sizes: bool = False
    batches: tuple[int, ...] = ()
    images_dir: Path | None = None
    random_inputs: int = DEFAULT_RANDOM_INPUTS
    inputs_per_size: int | None = None
    """None: every input at every size for logits, FEATURE_INPUTS_PER_SIZE for feature maps."""
    seed: int = 0
    rtol: float | None = None
    atol: float | None = None
    min_top1: float | None = None
    min_cosine: float | None = None
    min_top5: float | None = None

    def __post_init__(self) -> None:
        if self.replace_sizes and not self.sizes:
            raise UsageError("--replace-sizes needs --sizes: give the sizes to check instead of the grid")
        for b in self.batches:
            check_int(b, "--batches values", 1, MAX_BATCH)
        check_int(self.random_inputs, "--random-inputs", 0, MAX_RANDOM_INPUTS)
        if self.inputs_per_size is not None:
            check_int(self.inputs_per_size, "--inputs-per-size", 1, MAX_INPUTS_PER_SIZE)
        self.policy("fp32")  # checks the overrides

    def per_size(self, outputs: str = "logits") -> int | None:
        """How many inputs each size is checked on (None: all of them): ``--inputs-per-size``, else every input for
        a classifier's logits and FEATURE_INPUTS_PER_SIZE for a backbone's feature maps."""
        if self.inputs_per_size is not None:
            return self.inputs_per_size
        return None if outputs == "logits" else FEATURE_INPUTS_PER_SIZE

    def policy(self, precision: str, outputs: str = "logits") -> TolerancePolicy:
        """The preset for ``precision`` (per feature map for a backbone's ``outputs``) with the overrides given."""
        preset = TolerancePolicy.preset(precision)
        preset = preset if outputs == "logits" else feature_policy(preset)
        return preset.override(self.rtol, self.atol, self.min_top1, self.min_cosine, self.min_top5)


@dataclass(frozen=True)
class PlannedCase:
    """A (profiles, size, batch) to run on one stage or engine."""

    profiles: tuple[int, ...]
    size: Resolution
    batch: int


def _batches_for(plan: Plan, index: int, wanted: tuple[int, ...]) -> list[int]:
    p = plan.profiles[index]
    if not wanted:
        return [1 if p.min.batch <= 1 else p.min.batch]
    return [b for b in wanted if p.min.batch <= b <= p.max.batch]


def grid_points(plan: Plan, spec: ValidateSpec, outputs: str = "logits") -> list[tuple[int, Resolution, int]]:
    """(profile, size, batch) points: the shared size grid (for ``outputs`` other than logits, its
    FEATURE_GRID_ROLES), plus or instead of --sizes, at the batches asked."""
    roles = FEATURE_GRID_ROLES if outputs != "logits" else None
    grid = [(g.profile, g.size) for g in size_grid(plan) if roles is None or g.role in roles]
    sizes = [] if spec.replace_sizes else grid
    for size in spec.sizes:
        covering = [i for i, p in enumerate(plan.profiles) if p.covers(p.min.batch, size.h, size.w)]
        if not covering:
            raise UsageError(f"--sizes {size} is outside every profile of this build ({plan.covered_ranges()})")
        sizes += [(i, size) for i in covering]
    for b in spec.batches:
        if not any(p.min.batch <= b <= p.max.batch for p in plan.profiles):
            allowed = ", ".join(f"{p.min.batch}..{p.max.batch}" for p in plan.profiles)
            raise UsageError(f"--batches {b} is outside every profile's batch range ({allowed})")
    points = [(i, size, b) for i, size in sizes for b in _batches_for(plan, i, spec.batches)]
    return list(dict.fromkeys(points))


def plan_cases(points: list[tuple[int, Resolution, int]], profiles: tuple[int, ...], shared: bool) -> list[PlannedCase]:
    """The cases for one stage: the points of its profiles, merged per (size, batch) when the graph is shared."""
    mine = [pt for pt in points if pt[0] in profiles]
    if not shared:
        return [PlannedCase((i,), size, b) for i, size, b in mine]
    merged: dict[tuple[Resolution, int], list[int]] = {}
    for i, size, b in mine:
        merged.setdefault((size, b), []).append(i)
    return [PlannedCase(tuple(sorted(set(ps))), size, b) for (size, b), ps in merged.items()]
