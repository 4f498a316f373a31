"""Latency statistics, the stop-or-continue rule for measurement windows, and compute efficiency. Pure.

How a measurement runs (the loop itself lives in ``loop``): after warm-up, timed calls are grouped
into windows. With ``iters`` the run is exactly that many calls, split into ``stable_windows`` windows,
and stability is only reported. Otherwise windows of about ``min_time_s / stable_windows`` seconds
are run until at least ``min_time_s`` has passed and the medians of the last ``stable_windows`` windows
agree (coefficient of variation at most ``cv_threshold``), or until ``max_time_s``: then the result is
kept and flagged unstable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rsz_export.errors import UsageError, check_int, check_number

MIN_WINDOW_ITERS = 1
"""Slow points (seconds per call) get one call per window, so the stability test still sees several windows."""


@dataclass(frozen=True)
class MeasurePolicy:
    """How long to time one (size, batch, backend) point: see the module docstring."""

    warmup: int = 3
    iters: int | None = None
    min_time_s: float = 1.0
    max_time_s: float = 10.0
    stable_windows: int = 3
    cv_threshold: float = 0.05

    def __post_init__(self) -> None:
        check_int(self.warmup, "--warmup", 0, 10_000)
        if self.iters is not None:
            check_int(self.iters, "--iters", 1, 1_000_000)
        check_number(self.min_time_s, "--min-time", 0.0, 3600.0)
        check_number(self.max_time_s, "--max-time", 0.0, 36_000.0)
        if self.max_time_s < self.min_time_s:
            raise UsageError(f"--max-time {self.max_time_s:g} s is below --min-time {self.min_time_s:g} s")
        check_int(self.stable_windows, "stable windows", 2, 100)
        check_number(self.cv_threshold, "cv threshold", 0.0, 1.0)

    def window_iters(self, estimate_ms: float) -> int:
        """Calls per window: fixed-count runs split evenly, timed runs fill about min_time / windows."""
        if self.iters is not None:
            return max(1, math.ceil(self.iters / self.stable_windows))
        window_ms = 1000.0 * self.min_time_s / self.stable_windows
        return max(MIN_WINDOW_ITERS, math.ceil(window_ms / max(estimate_ms, 1e-6)))


@dataclass(frozen=True)
class Measurement:
    """Timed calls of one point: all samples, their window medians, whether they settled, and the first call."""

    samples_ms: tuple[float, ...]
    medians_ms: tuple[float, ...]
    stable: bool
    first_call_ms: float | None


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency over all timed calls, in milliseconds."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear between ranks (numpy's default)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Percentiles, mean and (population) standard deviation of the samples."""
    if not samples_ms:
        raise ValueError("latency statistics need at least one sample")
    ordered = sorted(float(s) for s in samples_ms)
    mean = math.fsum(ordered) / len(ordered)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in ordered) / len(ordered))
    p50, p90, p99 = (percentile(ordered, q) for q in (50, 90, 99))
    return LatencyStats(len(ordered), p50, p90, p99, mean, std, ordered[0], ordered[-1])


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Standard deviation over mean; 0 for fewer than two values, inf for a zero mean."""
    if len(values) < 2:
        return 0.0
    mean = math.fsum(values) / len(values)
    if mean == 0:
        return math.inf
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values)) / mean


def window_medians(windows: Sequence[Sequence[float]]) -> list[float]:
    """The median of each window."""
    return [percentile(sorted(w), 50) for w in windows if w]


def is_stable(medians: Sequence[float], policy: MeasurePolicy) -> bool:
    """Whether the last ``stable_windows`` window medians agree within ``cv_threshold``."""
    tail = list(medians)[-policy.stable_windows :]
    return len(tail) >= policy.stable_windows and coefficient_of_variation(tail) <= policy.cv_threshold


def should_stop(medians: Sequence[float], elapsed_s: float, iters_done: int, policy: MeasurePolicy) -> bool:
    """Whether the window loop ends now (see the module docstring)."""
    if policy.iters is not None:
        return iters_done >= policy.iters
    if elapsed_s >= policy.max_time_s:
        return True
    return elapsed_s >= policy.min_time_s and is_stable(medians, policy)


def throughput_ips(batch: int, mean_ms: float) -> float:
    """Images per second when calls of ``batch`` images run back to back at ``mean_ms`` each."""
    return batch * 1000.0 / mean_ms if mean_ms > 0 else math.inf


def gflops_per_s(flop: float, latency_ms: float) -> float:
    """Achieved GFLOP/s for a call of ``flop`` floating-point operations taking ``latency_ms``."""
    return flop / (latency_ms * 1e6) if latency_ms > 0 else math.inf


def peak_share(achieved_gflops: float, peak_gflops: float | None) -> float | None:
    """Achieved over measured peak (1.0 = at peak), or None without a peak."""
    if not peak_gflops or peak_gflops <= 0:
        return None
    return achieved_gflops / peak_gflops


def paired_ratio(numerator_medians: Sequence[float], denominator_medians: Sequence[float]) -> float | None:
    """Median over rounds of numerator / denominator window medians, for two calls timed in alternating windows.

    Each round's two windows share one moment of the machine, so a slow spell scales both; the median of
    the per-round ratios stays put where a ratio of overall medians would jump with the spell.
    """
    ratios = sorted(a / b for a, b in zip(numerator_medians, denominator_medians, strict=False) if a > 0 and b > 0)
    return percentile(ratios, 50) if ratios else None
