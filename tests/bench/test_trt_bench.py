"""bench over TensorRT engines, on the CPU against the test double: the sweep across the engines of an
--engine-per-profile build, the shape-fixed twin built with the engine's own settings, TensorRT's own memory
figures and GPU time. Only the torch.cuda probes (peak memory, the matmul peak) are pointed at the CPU here:
they need a GPU; nothing about the timings themselves is claimed."""

from __future__ import annotations

import pytest

from rsz_export.artifacts.files import sha256_file
from rsz_export.backends import trt as trt_backend
from rsz_export.bench import probes
from rsz_export.bench import run as bench_run
from rsz_export.bench.run import BenchSpec, run_bench
from rsz_export.bench.runners import shape_change_feed
from rsz_export.bench.stats import MeasurePolicy
from rsz_export.plan.profiles import route
from rsz_export.shapes import Resolution
from tests.backends.trt_double import V11, build_folder, use_double
from tests.helpers import make_plan

PLAN = make_plan(64, 128, profiles=2)
SIZES = (Resolution(64, 64), Resolution(100, 100), Resolution(128, 128))


@pytest.fixture()
def cpu_probes(monkeypatch):
    """The torch.cuda probes read the CPU instead (they need a GPU); the timing loop, runners and rows are real."""
    monkeypatch.setattr(bench_run, "reset_peak_memory", lambda device: probes.reset_peak_memory("cpu"))
    monkeypatch.setattr(bench_run, "memory_snapshot", lambda device: probes.memory_snapshot("cpu"))
    monkeypatch.setattr(
        bench_run, "matmul_peak_gflops", lambda *a, **k: probes.matmul_peak_gflops(a[0], 1, "cpu", n=64)
    )


def _spy_builds(monkeypatch):
    builds = []

    def spy(onnx, plan, options, out, log):
        records = real(onnx, plan, options, out, log)
        builds.append((options, records))
        return records

    real = trt_backend.build_engines
    monkeypatch.setattr(trt_backend, "build_engines", spy)
    return builds


def test_bench_sweeps_the_engines_of_a_per_profile_build_with_static_twins(
    trt_double, tmp_path, monkeypatch, classifier_onnx, cpu_probes
):
    out = tmp_path / "engines"
    manifest = build_folder(out, PLAN, classifier_onnx, engine_per_profile=True, tf32=False, opt_level=2)
    cache_sha = sha256_file(out / "timing.cache")
    twins = _spy_builds(monkeypatch)
    spec = BenchSpec(str(out), sizes=SIZES, backends=("tensorrt",), policy=MeasurePolicy(warmup=0, iters=2))
    header, rows = run_bench(spec, lambda _line: None)
    rows = [r.record() for r in rows]
    dynamic = [r for r in rows if r["variant"] == "dynamic"]
    assert [r["profile"] for r in dynamic] == [route(PLAN.profiles, 1, s.h, s.w) for s in SIZES]
    assert [r["engine"] for r in dynamic] == [manifest.engines[r["profile"]].name for r in dynamic]
    assert all(r["previous_shape"] and r["previous_shape"] != f"1x3x{r['size']}" for r in dynamic)
    assert all(
        r["trt_activation_mib"] > 0 and r["engine_file_mib"] > 0 and r["gpu_compute_p50_ms"] > 0 for r in dynamic
    )
    assert all(r["dynamic_over_static"] > 0 and r["device"] == "cuda" for r in dynamic)
    assert header["peak_math"] == {"tensorrt": "fp32"}  # built with --no-tf32
    assert len([r for r in rows if r["variant"] == "static"]) == len(SIZES) == len(twins)
    for options, records in twins:  # each twin: the engine's settings, a warm private copy of its cache
        assert (options.tf32, options.opt_level) == (False, 2) and options.timing_cache != str(out / "timing.cache")
        assert records[0].settings["timing_cache"]["reused"] is True
    assert sha256_file(out / "timing.cache") == cache_sha  # bench never writes the build folder's cache


def test_one_engine_bench_without_twins(tmp_path, monkeypatch, classifier_onnx, cpu_probes):
    use_double(monkeypatch, V11)
    build_folder(tmp_path, PLAN, classifier_onnx, precision="fp16")
    spec = BenchSpec(str(tmp_path), sizes=SIZES, backends=("tensorrt",), static=False,
                     policy=MeasurePolicy(warmup=0, iters=2))
    header, rows = run_bench(spec, lambda _line: None)
    rows = [r.record() for r in rows]
    assert [r["profile"] for r in rows] == [route(PLAN.profiles, 1, s.h, s.w) for s in SIZES]
    assert header["peak_math"] == {"tensorrt": "fp16"} and all(r["precision"] == "fp16" for r in rows)


def test_the_shape_change_feed_stays_in_the_profile_that_is_timed():
    from rsz_export.artifacts.manifest import EngineRecord, FileRecord

    def engine(backend, profiles, device="cuda"):
        return EngineRecord("e", backend, "fp32", FileRecord("e", "0", 1), profiles, 1.0, {"device": device})

    small, big = Resolution(64, 64), Resolution(128, 128)
    assert shape_change_feed(PLAN, None, 1, small, big) == big  # PyTorch: any shape
    assert shape_change_feed(PLAN, engine("onnxruntime", (0, 1), "cpu"), 1, small, big) == big  # one session
    for trt in (engine("tensorrt", (0,)), engine("tensorrt", (0, 1)), engine("onnxruntime", (0, 1), "tensorrt")):
        warm = shape_change_feed(PLAN, trt, 1, small, big)  # per-profile state: stay inside profile 0
        assert warm != small and PLAN.profiles[0].covers(1, warm.h, warm.w)
    assert shape_change_feed(PLAN, engine("tensorrt", (0,)), 1, small, None) is None


def test_peak_math_follows_the_engines_arithmetic():
    from rsz_export.artifacts.manifest import EngineRecord, FileRecord

    class _Manifest:
        def __init__(self, precision, tf32):
            self.precision = precision
            self.engines = (
                EngineRecord("e", "tensorrt", precision, FileRecord("e", "0", 1), (0,), 1.0, {"tf32": tf32}),
            )

    assert probes.peak_math(_Manifest("fp32", True), "tensorrt") == "tf32"
    assert probes.peak_math(_Manifest("fp32", False), "tensorrt") == "fp32"
    assert probes.peak_math(_Manifest("bf16", True), "tensorrt") == "bf16"
    assert probes.peak_math(_Manifest("fp32", True), "torch") == "fp32"
