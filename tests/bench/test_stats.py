"""Latency statistics, the window stop rule and efficiency maths (pure; no torch, no clocks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsz_export.bench.stats import (
    MeasurePolicy,
    coefficient_of_variation,
    gflops_per_s,
    is_stable,
    latency_stats,
    paired_ratio,
    peak_share,
    percentile,
    should_stop,
    throughput_ips,
    window_medians,
)
from rsz_export.errors import UsageError

samples = st.lists(st.floats(0.01, 1e4, allow_nan=False), min_size=1, max_size=200)


@given(samples)
def test_stats_match_numpy(values):
    stats = latency_stats(values)
    arr = np.array(values)
    assert stats.n == len(values)
    for q, got in ((50, stats.p50_ms), (90, stats.p90_ms), (99, stats.p99_ms)):
        assert got == pytest.approx(np.percentile(arr, q), rel=1e-9, abs=1e-9)
    assert stats.mean_ms == pytest.approx(arr.mean(), rel=1e-9)
    assert stats.std_ms == pytest.approx(arr.std(), rel=1e-6, abs=1e-9)
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


def test_known_percentiles():
    stats = latency_stats([4.0, 1.0, 3.0, 2.0, 10.0])
    assert (stats.p50_ms, stats.min_ms, stats.max_ms, stats.mean_ms) == (3.0, 1.0, 10.0, 4.0)
    assert stats.p90_ms == pytest.approx(7.6)  # between 4 and 10, 60% of the way
    assert percentile([5.0], 99) == 5.0


def test_empty_samples_are_a_bug_not_a_number():
    with pytest.raises(ValueError):
        latency_stats([])


def test_coefficient_of_variation():
    assert coefficient_of_variation([10.0, 10.0, 10.0]) == 0.0
    assert coefficient_of_variation([9.0, 11.0]) == pytest.approx(0.1)
    assert coefficient_of_variation([3.0]) == 0.0
    assert math.isinf(coefficient_of_variation([0.0, 0.0]))


def test_stability_needs_enough_agreeing_windows():
    policy = MeasurePolicy(stable_windows=3, cv_threshold=0.05)
    assert not is_stable([10.0, 10.1], policy)  # too few windows to judge
    assert is_stable([50.0, 10.0, 10.1, 9.9], policy)  # a slow first window no longer counts
    assert not is_stable([10.0, 10.0, 13.0], policy)
    assert window_medians([[1.0, 5.0, 3.0], [], [2.0, 4.0]]) == [3.0, 3.0]


def test_time_mode_stops_when_stable_after_min_time_or_at_the_cap():
    policy = MeasurePolicy(min_time_s=1.0, max_time_s=5.0)
    steady = [10.0, 10.0, 10.0]
    assert not should_stop(steady, 0.5, 30, policy)  # stable, but min time not reached
    assert should_stop(steady, 1.2, 30, policy)
    noisy = [10.0, 20.0, 10.0]
    assert not should_stop(noisy, 4.9, 30, policy)
    assert should_stop(noisy, 5.0, 30, policy)  # cap: kept, flagged unstable by the caller


def test_iters_mode_runs_exactly_that_many_calls():
    policy = MeasurePolicy(iters=7)
    assert policy.window_iters(123.0) == 3  # 7 calls in windows of 3, 3, 1
    assert not should_stop([10.0, 30.0], 100.0, 6, policy)
    assert should_stop([], 0.0, 7, policy)


def test_time_mode_window_size_follows_the_call_time():
    policy = MeasurePolicy(min_time_s=1.5, stable_windows=3)
    assert policy.window_iters(10.0) == 50  # 0.5 s windows of 10 ms calls
    assert policy.window_iters(2000.0) == 1  # slow calls: one per window, so several windows still fit


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"warmup": -1}, "--warmup"),
        ({"iters": 0}, "--iters"),
        ({"min_time_s": -0.1}, "--min-time"),
        ({"min_time_s": 5.0, "max_time_s": 1.0}, "below --min-time"),
        ({"stable_windows": 1}, "stable windows"),
        ({"warmup": True}, "--warmup"),
    ],
)
def test_policy_rejects_bad_values_naming_them(kwargs, word):
    with pytest.raises(UsageError, match=word):
        MeasurePolicy(**kwargs)


def test_paired_ratio_ignores_a_slow_spell_that_hits_both_sides():
    # the machine ran 2x slower in rounds 1 and 5 and turned fast between round 2's two windows
    dynamic = [1312.0, 1372.0, 643.0, 701.0, 1406.0]
    static = [1300.0, 650.0, 640.0, 690.0, 1300.0]
    assert latency_stats(dynamic).p50_ms / latency_stats(static).p50_ms > 1.8  # unpaired: a phantom 1.9x
    assert paired_ratio(dynamic, static) == pytest.approx(701.0 / 690.0)
    assert paired_ratio([], []) is None


def test_efficiency_maths():
    assert gflops_per_s(8.18e9, 100.0) == pytest.approx(81.8)
    assert throughput_ips(8, 40.0) == pytest.approx(200.0)
    assert peak_share(35.0, 50.0) == pytest.approx(0.7)
    assert peak_share(35.0, None) is None



def test_the_matmul_peak_stops_timing_after_its_time_budget(monkeypatch):
    """At least three products, at most ``reps``, and no more once about a second has passed."""
    from rsz_export.bench import probes

    calls = []
    monkeypatch.setattr(probes, "wall_timer", lambda run: lambda: calls.append(1) or 1.0)
    monkeypatch.setattr(probes.time, "perf_counter", lambda: 0.6 * len(calls))  # every product takes 0.6 s
    probes.matmul_peak_gflops("onnxruntime", 1, "cpu", n=64, reps=10)
    assert len(calls) == probes.PEAK_MIN_REPS
    calls.clear()
    monkeypatch.setattr(probes.time, "perf_counter", lambda: 0.0)  # fast products: every rep
    probes.matmul_peak_gflops("onnxruntime", 1, "cpu", n=64, reps=10)
    assert len(calls) == 10
