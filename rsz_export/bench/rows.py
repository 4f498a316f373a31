"""One benchmark result: the point measured, its latency statistics, throughput, efficiency and memory, and
where it was measured. Every row of ``bench`` (JSON, CSV, tables, plots) is a ``BenchRow`` made by
``make_row``. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from rsz_export.bench.flops import resnet50_flop
from rsz_export.bench.stats import Measurement, gflops_per_s, latency_stats, paired_ratio, peak_share, throughput_ips
from rsz_export.shapes import Resolution


@dataclass(frozen=True)
class Point:
    """What one measurement runs: a size and batch on one backend variant (an engine, or a PyTorch mode)."""

    size: Resolution
    batch: int
    backend: str
    variant: str
    device: str
    engine: str | None = None
    precision: str = "fp32"
    profile: int | None = None
    previous: Resolution | None = None
    """The size run just before the first timed call, which so measures a change of shape."""


@dataclass(frozen=True)
class BenchRow:
    """One measured point (field names are the JSON and CSV column names)."""

    size: str
    h: int
    w: int
    batch: int
    backend: str
    variant: str
    device: str
    engine: str | None
    precision: str
    profile: int | None
    previous_shape: str | None
    iters: int
    windows: int
    window_medians_ms: tuple[float, ...]
    stable: bool
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float
    gflop: float
    gflops_per_s: float
    peak_gflops: float | None
    peak_share: float | None
    first_call_after_shape_change_ms: float | None
    peak_rss_mib: float | None
    device_peak_mib: float | None
    threads: int
    date_utc: str
    machine: dict
    versions: dict
    static_p50_ms: float | None = None
    """For a dynamic engine timed beside its shape-fixed twin: the twin's p50."""
    dynamic_over_static: float | None = None
    """The dynamic engine's latency over its twin's, as a paired ratio of window medians."""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["window_medians_ms"] = list(self.window_medians_ms)
        return data


def make_row(point: Point, measured: Measurement, peak_gflops: float | None, memory: dict, header: dict) -> BenchRow:
    """The row for a point: statistics of its samples, FLOP-based efficiency, memory readings, and the
    run's provenance from ``header`` (threads, date, machine, versions) so a row read alone says where it
    came from."""
    stats = latency_stats(measured.samples_ms)
    flop = resnet50_flop(point.batch, point.size.h, point.size.w)
    achieved = gflops_per_s(flop, stats.p50_ms)
    previous = f"{point.batch}x3x{point.previous}" if point.previous else None
    return BenchRow(
        size=str(point.size),
        h=point.size.h,
        w=point.size.w,
        batch=point.batch,
        backend=point.backend,
        variant=point.variant,
        device=point.device,
        engine=point.engine,
        precision=point.precision,
        profile=point.profile,
        previous_shape=previous,
        iters=stats.n,
        windows=len(measured.medians_ms),
        window_medians_ms=tuple(measured.medians_ms),
        stable=measured.stable,
        p50_ms=stats.p50_ms,
        p90_ms=stats.p90_ms,
        p99_ms=stats.p99_ms,
        mean_ms=stats.mean_ms,
        std_ms=stats.std_ms,
        min_ms=stats.min_ms,
        max_ms=stats.max_ms,
        throughput_ips=throughput_ips(point.batch, stats.mean_ms),
        gflop=flop / 1e9,
        gflops_per_s=achieved,
        peak_gflops=peak_gflops,
        peak_share=peak_share(achieved, peak_gflops),
        first_call_after_shape_change_ms=measured.first_call_ms,
        peak_rss_mib=memory.get("peak_rss_mib"),
        device_peak_mib=memory.get("device_peak_mib"),
        threads=header["threads"],
        date_utc=header["date_utc"],
        machine=header["machine"],
        versions=header["versions"],
    )


def paired_with_static(dynamic: BenchRow, static: BenchRow, dynamic_m: Measurement, static_m: Measurement) -> BenchRow:
    """The dynamic row with its shape-fixed twin's p50 and the paired dynamic / static ratio."""
    return replace(
        dynamic,
        static_p50_ms=static.p50_ms,
        dynamic_over_static=paired_ratio(dynamic_m.medians_ms, static_m.medians_ms),
    )
