"""Propose a resolution range and profiles from the sizes of real images. Pure.

Cost model (``CostModel``): running one image at h x w costs ``a + b * h * w`` milliseconds, fitted to
latencies from ``rsz-export bench`` (``plan --timings``; the default points are ONNX Runtime fp32 at batch 1
on a 2-core CPU, see ``DEFAULT_TIMINGS``). Only the ratio of b to a shapes the proposal, not the scale.
A profile's kernels are tuned for its opt shape, so an input of P pixels on a profile tuned for P_opt pays
``1 + tuning_penalty * |ln(P / P_opt)|`` times that (10% per e-fold of pixels by default: an assumption, set
it to 0 for backends without profiles, such as ONNX Runtime on CPU).

The proposal:
  * range: the smallest multiple-of-32 range whose sides cover ``coverage`` of the images (shorter side
    >= min and longer side <= max); the others are resized into it at serving time (``--preprocess fit``)
    and costed at that size;
  * profiles (aspect free, every profile starts at min): K bands of the longer side; the band edges
    (multiples of 32) and the opt points minimise the expected cost exactly (dynamic programming over
    edges, every multiple of 32 in a band tried as its opt);
  * K: the smallest count whose expected cost is within ``min_gain`` of the best count up to ``max_profiles``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from rsz_export.errors import UsageError, check_number
from rsz_export.interface import DEFAULT_PRECISION
from rsz_export.plan.profile_file import plan_to_toml
from rsz_export.plan.profiles import Plan, opt_side
from rsz_export.shapes import MAX_SIZE, MIN_SIZE, STRIDE, BatchRange, InputShape, Profile

DEFAULT_TIMINGS = "224=52.1,800=669.1"
"""(square side = ms) latencies the default cost model is fitted to: ``rsz-export bench`` p50s of ONNX Runtime's
dynamic engine, fp32, batch 1, on 2 CPU cores (benchmarks/results/amd-epyc-2c-2026-11-26.json). The fit through
them has a = 0 (clamped): on that CPU the time grows in proportion to the pixels."""

BATCH_ONE = BatchRange()  # frozen, so one shared default is safe


@dataclass(frozen=True)
class CostModel:
    """Milliseconds to run one image of ``pixels`` pixels: ``a_ms + b_ms_per_kpx * pixels / 1000``."""

    a_ms: float
    b_ms_per_kpx: float
    tuning_penalty: float = 0.10

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a_ms) and math.isfinite(self.b_ms_per_kpx)) or self.b_ms_per_kpx <= 0:
            raise UsageError(f"cost model needs a finite a and b > 0, got a={self.a_ms} b={self.b_ms_per_kpx}")
        check_number(self.tuning_penalty, "tuning penalty", 0.0, 1.0)

    def ms(self, pixels: float, opt_pixels: float | None = None) -> float:
        base = self.a_ms + self.b_ms_per_kpx * pixels / 1000
        if opt_pixels is None:
            return base
        return base * (1 + self.tuning_penalty * abs(math.log(pixels / opt_pixels)))


def fit_cost_model(points: list[tuple[int, float]] | tuple, tuning_penalty: float = 0.10) -> CostModel:
    """Least-squares fit of ``a + b * side^2`` to (square side, ms) points; UsageError if it cannot be fitted."""
    if len({side for side, _ in points}) < 2:
        raise UsageError(f"fitting the cost model needs timings at two or more different sizes, got {list(points)}")
    xs = [side * side / 1000 for side, _ in points]
    ys = [float(ms) for _, ms in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    if b <= 0:
        raise UsageError(f"timings {list(points)} do not grow with size: cannot fit a cost model to them")
    return CostModel(max(0.0, my - b * mx), b, tuning_penalty)


def parse_cost_points(text: str) -> list[tuple[int, float]]:
    """Parse ``224=22,800=270`` (square side = milliseconds)."""
    points = []
    for part in (p for p in str(text).split(",") if p.strip()):
        side, _, ms = part.partition("=")
        try:
            points.append((int(side), float(ms)))
        except ValueError:
            raise UsageError(f"cannot read timing {part!r}: write SIDE=MS pairs such as 224=22,800=270") from None
    if any(ms <= 0 or side < MIN_SIZE for side, ms in points):
        raise UsageError(f"timings {text!r} need sides >= {MIN_SIZE} and milliseconds > 0")
    return points


DEFAULT_COST = fit_cost_model(parse_cost_points(DEFAULT_TIMINGS))


@dataclass(frozen=True)
class SizeProposal:
    """Proposed range and profiles for a set of image sizes, with the expected costs that justify them."""

    min_size: int
    max_size: int
    edges: tuple[int, ...]
    opts: tuple[int, ...]
    images: int
    covered_share: float
    expected_ms: float
    single_profile_ms: float
    static_max_ms: float
    cost_by_count: tuple[tuple[int, float], ...]
    cost: CostModel = field(default=DEFAULT_COST)
    distinct_sizes: int = 0

    @property
    def count(self) -> int:
        return len(self.edges)


def _round_down(side: int) -> int:
    return max(MIN_SIZE, side // STRIDE * STRIDE)


def _round_up(side: int) -> int:
    return min(MAX_SIZE, -(-side // STRIDE) * STRIDE)


def choose_range(sizes: list[tuple[int, int]], coverage: float) -> tuple[int, int]:
    """Multiple-of-32 min and max covering at least ``coverage`` of the images on each side's tail."""
    if not 0 < coverage <= 1:
        raise UsageError(f"coverage must be in (0, 1], got {coverage}")
    tail = (1 - coverage) / 2
    shorter = sorted(min(s) for s in sizes)
    longer = sorted(max(s) for s in sizes)
    lo = shorter[min(len(shorter) - 1, int(math.floor(tail * len(shorter))))]
    hi = longer[max(0, int(math.ceil((1 - tail) * len(longer))) - 1)]
    lo, hi = _round_down(max(lo, MIN_SIZE)), _round_up(max(min(hi, MAX_SIZE), MIN_SIZE))
    return lo, max(lo, hi)


def run_size(h: int, w: int, lo: int, hi: int) -> tuple[int, int]:
    """Where an h x w image runs in a free-aspect lo..hi range: as is if inside, else resized into it."""
    scale = min(1.0, hi / max(h, w))
    scale = max(scale, lo / min(h, w))
    if scale == 1.0:
        return h, w
    return (min(hi, max(lo, round(h * scale))), min(hi, max(lo, round(w * scale))))


def _candidate_edges(lo: int, hi: int) -> list[int]:
    edges = list(range(_round_up(lo + 1), hi, STRIDE))
    return [e for e in edges if lo < e < hi] + [hi]


class _BandCost:
    """Expected cost of bands (low, high] of the longer side, each with its best opt point (total ms, opt side)."""

    def __init__(self, runs: list[tuple[tuple[int, int], int]], lo: int, cost: CostModel):
        import numpy as np

        ordered = sorted(runs, key=lambda item: max(item[0]))
        self.longer = np.array([max(hw) for hw, _ in ordered], dtype=np.int64)
        pixels = np.array([h * w for (h, w), _ in ordered], dtype=np.float64)
        counts = np.array([n for _, n in ordered], dtype=np.float64)
        self.weighted_base = counts * (cost.a_ms + cost.b_ms_per_kpx * pixels / 1000)
        self.log_pixels = np.log(pixels)
        self.lo, self.penalty = lo, cost.tuning_penalty
        self.best = lru_cache(maxsize=None)(self._best)

    def _best(self, low: int, high: int) -> tuple[float, int]:
        import numpy as np

        first, last = np.searchsorted(self.longer, [low, high], side="right")
        default = opt_side(max(self.lo, low + 1), high)
        if first == last:
            return 0.0, default
        opts = np.array(sorted({default} | set(range(_round_up(low + 1), high + 1, STRIDE))), dtype=np.float64)
        gap = np.abs(self.log_pixels[first:last, None] - 2 * np.log(opts)[None, :])
        totals = (self.weighted_base[first:last, None] * (1 + self.penalty * gap)).sum(axis=0)
        best = int(np.argmin(totals))
        return float(totals[best]), int(opts[best])


def _best_split(band: _BandCost, cands: list[int], lo: int, k: int) -> tuple[float, list[int]]:
    """Minimum total cost of k bands ending exactly at cands[-1], by dynamic programming over edges."""
    n = len(cands)
    inf = (math.inf, [])
    table = [[inf] * n for _ in range(k + 1)]
    for j in range(n):
        table[1][j] = (band.best(lo - 1, cands[j])[0], [cands[j]])
    for bands in range(2, k + 1):
        for j in range(n):
            options = [
                (table[bands - 1][i][0] + band.best(cands[i], cands[j])[0], table[bands - 1][i][1] + [cands[j]])
                for i in range(j)
                if table[bands - 1][i][0] < math.inf
            ]
            table[bands][j] = min(options, default=inf)
    return table[k][n - 1]


def propose(
    sizes: list[tuple[int, int]],
    cost: CostModel = DEFAULT_COST,
    coverage: float = 0.98,
    profiles: int | None = None,
    max_profiles: int = 6,
    min_gain: float = 0.02,
) -> SizeProposal:
    """Propose min, max, K and opt points for these (h, w) sizes (see the module docstring)."""
    if not sizes:
        raise UsageError("no image sizes to plan from")
    lo, hi = choose_range(list(sizes), coverage)
    runs_count: dict[tuple[int, int], int] = {}
    for h, w in sizes:
        key = run_size(h, w, lo, hi)
        runs_count[key] = runs_count.get(key, 0) + 1
    band = _BandCost(sorted(runs_count.items()), lo, cost)
    cands = _candidate_edges(lo, hi)
    limit = min(len(cands), max_profiles if profiles is None else profiles)
    if profiles is not None and not 1 <= profiles <= len(cands):
        raise UsageError(f"--profiles {profiles} does not fit {lo}..{hi} in steps of {STRIDE}: use 1..{len(cands)}")
    splits = {k: _best_split(band, cands, lo, k) for k in range(1, limit + 1) if profiles in (None, k)}
    best_total = min(total for total, _ in splits.values())
    k = profiles or min(k for k, (total, _) in splits.items() if total <= best_total * (1 + min_gain))
    total, edges = splits[k]
    lows = [lo - 1] + edges[:-1]
    opts = tuple(band.best(low, high)[1] for low, high in zip(lows, edges))
    covered = sum(1 for h, w in sizes if lo <= min(h, w) and max(h, w) <= hi)
    n = len(sizes)
    return SizeProposal(
        min_size=lo, max_size=hi, edges=tuple(edges), opts=opts, images=n,
        covered_share=covered / n, expected_ms=total / n,
        single_profile_ms=splits.get(1, _best_split(band, cands, lo, 1))[0] / n,
        static_max_ms=cost.ms(hi * hi),
        cost_by_count=tuple((c, t / n) for c, (t, _) in sorted(splits.items())),
        cost=cost, distinct_sizes=len(set(sizes)),
    )


def proposal_profiles(proposal: SizeProposal, batch: BatchRange = BATCH_ONE) -> tuple[Profile, ...]:
    """The proposal's profiles: each starts at min (free aspect) and ends at its band edge."""
    lo = proposal.min_size
    return tuple(
        Profile(InputShape(batch.min, lo, lo), InputShape(batch.opt, o, o), InputShape(batch.max, e, e))
        for o, e in zip(proposal.opts, proposal.edges)
    )


def proposal_plan(proposal: SizeProposal, batch: BatchRange = BATCH_ONE) -> Plan:
    """The proposal as a Plan (free aspect)."""
    return Plan(proposal.min_size, proposal.max_size, "free", batch, proposal_profiles(proposal, batch))


def to_profile_toml(
    proposal: SizeProposal, name: str = "from-images", batch: BatchRange = BATCH_ONE, precision: str = DEFAULT_PRECISION
) -> str:
    """The proposal as a profile file that ``build --profile-file`` accepts."""
    comment = (
        f"Proposed by `rsz-export plan --images` from {proposal.images} image(s): covers "
        f"{proposal.covered_share:.1%} of them; expected {proposal.expected_ms:.1f} ms/image "
        f"(one profile: {proposal.single_profile_ms:.1f} ms).\nCost model: "
        f"{proposal.cost.a_ms:.2f} ms + {proposal.cost.b_ms_per_kpx:.4f} ms per 1000 pixels."
    )
    description = f"{proposal.count} profile(s) over {proposal.min_size}..{proposal.max_size} fitted to image sizes"
    return plan_to_toml(proposal_plan(proposal, batch), name, description, precision, comment)


def render_proposal(proposal: SizeProposal) -> str:
    """The proposal and its costs as text."""
    c = proposal.cost
    lines = [
        f"proposal: min {proposal.min_size}, max {proposal.max_size}, {proposal.count} profile(s); "
        f"covers {proposal.covered_share:.1%} of {proposal.images} image(s) (the rest are resized into the range)",
        f"{'profile':>7}  {'min':<10} {'opt':<10} {'max':<10}",
    ]
    for i, (o, e) in enumerate(zip(proposal.opts, proposal.edges)):
        lo = proposal.min_size
        lines.append(f"{i:>7}  {f'{lo}x{lo}':<10} {f'{o}x{o}':<10} {f'{e}x{e}':<10}")
    lines.append(
        f"cost model: {c.a_ms:.2f} ms + {c.b_ms_per_kpx:.4f} ms/kpx, "
        f"+{c.tuning_penalty:.0%} per e-fold of pixels away from opt"
    )
    lines.append(
        f"expected cost per image: {proposal.expected_ms:.2f} ms; one profile over the same range "
        f"{proposal.single_profile_ms:.2f} ms; one static {proposal.max_size}x{proposal.max_size} shape "
        f"{proposal.static_max_ms:.2f} ms"
    )
    lines.append("by profile count: " + ", ".join(f"K={k}: {ms:.2f} ms" for k, ms in proposal.cost_by_count))
    if proposal.distinct_sizes == 1:
        lines.append(f"note: the {proposal.images} image(s) have one size, so this range fits that size alone: plan "
                     "from a folder of the images you will serve (several sizes), or give --min/--max")
    return "\n".join(lines)


def plan_from_folder(
    folder, points: list[tuple[int, float]], tuning_penalty: float, coverage: float, profiles: int | None,
    batch: BatchRange = BATCH_ONE,
) -> tuple[SizeProposal, Plan, str]:
    """The plan proposed for the images in ``folder`` (sizes from headers only) under the cost model fitted to
    ``points``: (proposal, plan, the size scan and the proposal as text)."""
    from rsz_export.images.sizes import render_scan, scan_sizes, size_stats

    cost = fit_cost_model(points, tuning_penalty)
    scan = scan_sizes(folder)
    proposal = propose(list(scan.sizes), cost, coverage, profiles)
    text = f"{render_scan(scan, size_stats(scan.sizes))}\n{render_proposal(proposal)}"
    return proposal, proposal_plan(proposal, batch), text
