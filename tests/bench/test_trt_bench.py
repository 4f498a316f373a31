"""bench over TensorRT engines, on the CPU against the test double: the sweep across the engines of an
--engine-per-profile build, the shape-fixed twin built with the engine's own settings, TensorRT's own memory
figures and GPU time. The torch-side probes (peak memory, the matmul peak) run where the CUDA side says
(``TensorRT.engine_device``): the double's fake GPU says the CPU, so no torch.cuda call is made; nothing about
the timings themselves is claimed."""

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
    """A small matmul peak (the real probe, on a 64x64 product): the rest of the run is unchanged."""
    monkeypatch.setattr(
        bench_run, "matmul_peak_gflops", lambda *a, **k: probes.matmul_peak_gflops(a[0], 1, a[2], n=64)
    )


def _spy_builds(monkeypatch):
    builds = []

    def spy(onnx, plan, options, out, log, **kwargs):
        records = real(onnx, plan, options, out, log, **kwargs)
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
    assert all(r["dynamic_over_static"] > 0 and r["device"] == "cpu" for r in dynamic)  # the fake GPU
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


def test_the_twin_is_built_from_the_engines_own_network_and_calibration(trt_double, tmp_path, classifier_onnx):
    """An int8 engine's twin parses its recorded Q/DQ ONNX with the recorded calibration (not a new quantization,
    not ``None``); a 10.x fp32 engine's twin parses the export; a manifest without the calibration is exit 4."""
    from dataclasses import replace

    from rsz_export.backends.base import BuildOptions
    from rsz_export.errors import IntegrityError
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.pipeline.run import BuildSpec, build

    spec = BuildSpec(PLAN, tmp_path / "int8", backend="tensorrt", options=BuildOptions(precision="int8"),
                     onnx=classifier_onnx, calibration=CalibSpec(count=4), command="pytest")
    manifest = build(spec).manifest
    (engine,) = manifest.engines
    source, prepared, options = trt_backend.twin_source(manifest, engine, tmp_path / "int8", None)
    assert prepared and source.name == "model.int8-tensorrt.onnx" and options.precision == "int8"
    assert options.calibration == str(tmp_path / "int8" / manifest.calibration.file.file)
    with pytest.raises(IntegrityError, match="records no calibration") as info:
        trt_backend.twin_source(replace(manifest, calibration=None), engine, tmp_path / "int8", None)
    assert info.value.exit_code == 4
    fp32 = build_folder(tmp_path / "fp32", PLAN, classifier_onnx, tf32=False)
    source, prepared, options = trt_backend.twin_source(fp32, fp32.engines[0], tmp_path / "fp32", "cache")
    assert not prepared and source.name == fp32.onnx.file and (options.tf32, options.timing_cache) == (False, "cache")
