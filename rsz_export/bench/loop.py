"""The timing loop, at the edge: timers (wall clock, CUDA events), cached inputs, and alternating windows."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rsz_export.bench.stats import Measurement, MeasurePolicy, is_stable, should_stop, window_medians
from rsz_export.shapes import Resolution


def wall_timer(run: Callable[[], object]) -> Callable[[], float]:
    """Times one call of ``run`` in ms by the wall clock (runners return host arrays, so calls are synchronous)."""

    def timed() -> float:
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) * 1000.0

    return timed


def cuda_timer(run: Callable[[], object]) -> Callable[[], float]:
    """Times one call with CUDA events after synchronising, so earlier queued GPU work is not counted."""
    import torch

    def timed() -> float:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    return timed


def with_gpu_time(call: Callable[[], float], runner) -> tuple[Callable[[], float], list[float]]:
    """``call`` also recording the runner's own GPU time of each call (TensorRT's ``last_latency_ms``: CUDA
    events on the runner's stream), and the list it fills; unchanged for runners that do not measure it."""
    samples: list[float] = []
    if not hasattr(runner, "last_latency_ms"):
        return call, samples

    def recorded() -> float:
        ms = call()
        samples.append(runner.last_latency_ms)
        return ms

    return recorded, samples


def median_or_none(values: Sequence[float]) -> float | None:
    import statistics

    return statistics.median(values) if values else None


def image_maker() -> Callable:
    """A cache of seeded float32 NCHW inputs, one per shape (so input creation is never timed)."""
    import numpy as np

    cache: dict = {}

    def images(batch: int, size: Resolution):
        key = (batch, size.h, size.w)
        if key not in cache:
            rng = np.random.default_rng(hash(key) & 0xFFFF)
            cache[key] = rng.standard_normal((batch, 3, size.h, size.w), dtype=np.float32)
        return cache[key]

    return images


def measure(calls: Sequence[Callable[[], float]], policy: MeasurePolicy, firsts_ms: Sequence[float]) -> list:
    """Warm up each call, then time alternating windows of each until ``should_stop`` holds for all of them.

    Each call returns its own duration in ms. Timing two variants (dynamic and static) in alternating
    windows lets a busy machine's slow spells fall on both alike, so their ratio stays meaningful.
    """
    warm = [[call() for _ in range(policy.warmup)] for call in calls]
    per_window = [policy.window_iters(min(w) if w else f) for w, f in zip(warm, firsts_ms, strict=True)]
    windows: list[list[list[float]]] = [[] for _ in calls]
    start, done = time.perf_counter(), 0
    while not all(should_stop(window_medians(w), time.perf_counter() - start, done, policy) for w in windows):
        for call, per, own in zip(calls, per_window, windows, strict=True):
            count = per if policy.iters is None else min(per, policy.iters - done)
            own.append([call() for _ in range(count)])
        done += count
    found = []
    for own, first in zip(windows, firsts_ms, strict=True):
        medians = window_medians(own)
        samples = tuple(s for w in own for s in w)
        found.append(Measurement(samples, tuple(medians), is_stable(medians, policy), first))
    return found
