"""One benchmark result: the point measured, its latency statistics, throughput, efficiency and memory, and
where it was measured. Every row of ``bench`` is a ``BenchRow`` made by ``make_row``; ``record`` is its flat
form, the JSON/CSV schema that the reports render. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from rsz_export.bench.flops import resnet50_flop
from rsz_export.bench.stats import (
    LatencyStats,
    Measurement,
    gflops_per_s,
    latency_stats,
    paired_ratio,
    peak_share,
    throughput_ips,
)
from rsz_export.interface import DEFAULT_OUTPUTS, NUM_CLASSES
from rsz_export.shapes import Resolution

PROVENANCE = ("threads", "date_utc", "machine", "versions")
"""Run header fields every row carries, so a row read alone says where it came from."""


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
    """One measured point: what ran, its latency, and what the efficiency figures are computed from."""

    point: Point
    latency: LatencyStats
    measured: Measurement
    peak_gflops: float | None
    memory: dict
    """Peak process RSS and device memory (MiB) while the point ran; for TensorRT also the engine's own figures
    (``Backend.engine_memory``), which torch's allocator statistics do not see."""
    provenance: dict
    static_p50_ms: float | None = None
    """For a dynamic engine timed beside its shape-fixed twin: the twin's p50."""
    dynamic_over_static: float | None = None
    """The dynamic engine's latency over its twin's, as a paired ratio of window medians."""
    gpu_compute_p50_ms: float | None = None
    """TensorRT: median GPU time of ``execute_async_v3`` alone (CUDA events on the runner's own stream), where the
    latency figures are end to end (upload, run, download, host work)."""
    num_classes: int = NUM_CLASSES
    """The model's class count (its classifier's share of the FLOP)."""
    outputs: str = DEFAULT_OUTPUTS
    """What the model gives (a backbone's FLOP are its body's, and its feature pyramid's)."""
    baseline_p50_ms: float | None = None
    """With ``bench --baseline DIR``: the p50 of that build's engine at the same point, timed in alternating
    windows with this one."""
    speedup: float | None = None
    """The baseline's latency over this engine's (above 1: this engine is faster), a paired ratio of window
    medians."""

    @property
    def gflop(self) -> float:
        return resnet50_flop(self.point.batch, self.point.size.h, self.point.size.w, self.num_classes,
                             self.outputs) / 1e9

    @property
    def gflops_per_s(self) -> float:
        return gflops_per_s(self.gflop * 1e9, self.latency.p50_ms)

    def record(self) -> dict:
        """The flat record (JSON and CSV columns): point, statistics, efficiency, memory, provenance."""
        p, stats = self.point, asdict(self.latency)
        achieved = self.gflops_per_s
        return {
            "size": str(p.size), "h": p.size.h, "w": p.size.w, "batch": p.batch, "backend": p.backend,
            "variant": p.variant, "device": p.device, "engine": p.engine, "precision": p.precision,
            "profile": p.profile, "previous_shape": f"{p.batch}x3x{p.previous}" if p.previous else None,
            "iters": stats.pop("n"), "windows": len(self.measured.medians_ms),
            "window_medians_ms": list(self.measured.medians_ms), "stable": self.measured.stable, **stats,
            "throughput_ips": throughput_ips(p.batch, self.latency.mean_ms), "gflop": self.gflop,
            "gflops_per_s": achieved, "peak_gflops": self.peak_gflops,
            "peak_share": peak_share(achieved, self.peak_gflops),
            "first_call_after_shape_change_ms": self.measured.first_call_ms,
            "static_p50_ms": self.static_p50_ms, "dynamic_over_static": self.dynamic_over_static,
            "gpu_compute_p50_ms": self.gpu_compute_p50_ms, "baseline_p50_ms": self.baseline_p50_ms,
            "speedup": self.speedup, **self.memory, **self.provenance,
        }


def make_row(point: Point, measured: Measurement, peak_gflops: float | None, memory: dict, header: dict) -> BenchRow:
    """The row for a point measured in the run described by ``header`` (a header without the model's class
    count comes from a build before other heads existed: ImageNet's)."""
    provenance = {key: header[key] for key in PROVENANCE}
    classes = header.get("num_classes", NUM_CLASSES)
    return BenchRow(point, latency_stats(measured.samples_ms), measured, peak_gflops, dict(memory), provenance,
                    num_classes=classes, outputs=header.get("outputs", DEFAULT_OUTPUTS))


def paired_with_baseline(row: BenchRow, baseline: BenchRow) -> BenchRow:
    """``row`` with the baseline engine's p50 and the paired speed-up (baseline latency / this latency)."""
    ratio = paired_ratio(baseline.measured.medians_ms, row.measured.medians_ms)
    return replace(row, baseline_p50_ms=baseline.latency.p50_ms, speedup=ratio)


def paired_with_static(dynamic: BenchRow, static: BenchRow) -> BenchRow:
    """The dynamic row with its shape-fixed twin's p50 and the paired dynamic / static ratio."""
    ratio = paired_ratio(dynamic.measured.medians_ms, static.measured.medians_ms)
    return replace(dynamic, static_p50_ms=static.latency.p50_ms, dynamic_over_static=ratio)
