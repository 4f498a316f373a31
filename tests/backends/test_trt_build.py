"""TensorRT builds on the CPU against the test double (tests/backends/trt_double.py): every precision path of
10.x and 11.x, one engine or one per profile, version compatibility, the timing cache, cancellation, failures.

The double enforces TensorRT's documented contract (each rule cites its source in fake_tensorrt/); what it cannot
know (tactics, reduced-precision numerics, real memory) these tests do not claim to check.
"""

from __future__ import annotations

import shutil
import signal

import pytest

from rsz_export.backends import trt as backend
from rsz_export.backends import trt_build, trt_env
from rsz_export.backends.base import BuildOptions
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.shapes import BatchRange
from tests.backends import fake_tensorrt
from tests.backends.trt_double import V10, V11, use_double
from tests.backends.trt_double import classifier_onnx as make_classifier
from tests.helpers import make_plan

PLAN = make_plan(64, 128, profiles=2, batch=BatchRange(1, 2, 2))
A10 = fake_tensorrt.FakeGpu(name="NVIDIA A10", compute_capability=(8, 6))


def build(out, onnx, log=None, **options):
    """The backend's build_engines on ``onnx`` copied into ``out``; (records, log lines)."""
    logs = []
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, out / "model.onnx")
    records = backend.build_engines(out / "model.onnx", PLAN, BuildOptions(**options), out, log or logs.append)
    return records, logs


def test_one_engine_with_every_profile(trt_double, tmp_path, monkeypatch, classifier_onnx):
    version = trt_double.__version__
    (record,), _ = build(tmp_path, classifier_onnx, workspace_mib=64, opt_level=2)
    settings = record.settings
    assert record.profiles == (0, 1) and settings["api_major"] == int(version.split(".")[0])
    assert len(settings["device_memory_bytes_per_profile"]) == 2
    assert settings["layers"]["schema"] == version.split(".")[0] and settings["layers"]["layers"] == 4
    assert settings["build_options"] == {"workspace_mib": 64, "opt_level": 2, "engine_per_profile": False,
                                         "profiling_verbosity": "detailed"}
    assert (tmp_path / record.file.file).stat().st_size == record.file.bytes
    assert settings["tensorrt_version"] == version and settings["gpu_name"] == "NVIDIA H100 80GB HBM3"


def test_engine_per_profile(trt_double, tmp_path, monkeypatch, classifier_onnx):
    records, _ = build(tmp_path, classifier_onnx, engine_per_profile=True)
    assert [r.profiles for r in records] == [(0,), (1,)]
    assert [r.name for r in records] == ["tensorrt-fp32-p0", "tensorrt-fp32-p1"]
    assert all(len(r.settings["device_memory_bytes_per_profile"]) == 1 for r in records)


@pytest.mark.parametrize(
    "version, precision, path, layer_type",
    [
        (V10, "fp16", "builder-flags", "FP16"),
        (V10, "bf16", "builder-flags", "BF16"),
        (V10, "tf32", "fp32-onnx", "FP32"),
        (V10, "fp32", "fp32-onnx", "FP32"),
        (V11, "fp16", "reduced-precision-onnx", "FP16"),
        (V11, "bf16", "reduced-precision-onnx", "BF16"),
        (V11, "tf32", "fp32-onnx", "FP32"),
        (V11, "fp32", "fp32-onnx", "FP32"),
    ],
)
def test_every_precision_path(version, precision, path, layer_type, tmp_path, monkeypatch, classifier_onnx):
    """10.x sets builder flags on a weakly typed network; 11.x has no such flags (the double hides them, as
    11.x does) and parses a reduced-precision ONNX, checked on the CPU first."""
    trt = use_double(monkeypatch, version)
    (record,), logs = build(tmp_path, classifier_onnx, precision=precision, tf32=precision != "fp32")
    settings = record.settings
    assert settings["precision_path"] == path and settings["tf32"] is (precision != "fp32")
    precisions = settings["layers"]["precisions"]  # the reduced ONNX casts back to float32 at its output
    assert max(precisions, key=precisions.get) == layer_type and set(precisions) <= {layer_type, "FP32"}
    if path == "reduced-precision-onnx":
        assert settings["reduced_check"]["passed"] and (tmp_path / f"model.{precision}.onnx").is_file()
        assert f"model.{precision}.onnx" in {f.file for f in record.extra_files}
        assert any("checked on the CPU" in line for line in logs)
    if version == V11:
        assert not hasattr(trt.BuilderFlag, "FP16") and not hasattr(trt.BuilderFlag, "BF16")


def test_version_compatible_build_reloads_its_own_engine(trt_double, tmp_path, monkeypatch, classifier_onnx):
    """The build reloads its engine for the manifest's facts: a version-compatible plan loads only with
    engine_host_code_allowed (before, this failed with AttributeError on None after the engine was written)."""
    (record,), _ = build(tmp_path, classifier_onnx, version_compat=True)
    assert record.settings["version_compat"] is True and record.settings["device_memory_bytes"] > 0


def test_timing_cache_is_reused_and_a_second_build_times_nothing_new(trt_double, tmp_path, classifier_onnx):
    (first,), _ = build(tmp_path, classifier_onnx)
    (again,), _ = build(tmp_path, classifier_onnx)
    one, two = first.settings["timing_cache"], again.settings["timing_cache"]
    assert one["reused"] is False and two["reused"] is True and two["loaded_sha256"] == one["sha256"]
    assert one["new_entries"] > 0 and two["new_entries"] == 0 and again.settings["timing_cache_new_entries"] == 0


def test_timing_cache_file_is_merged_not_overwritten(trt_double, tmp_path, monkeypatch, classifier_onnx):
    """Two builds sharing one cache file: the second to finish keeps the first one's entries."""
    trt = trt_double
    shared = tmp_path / "shared.cache"
    build(tmp_path / "a", classifier_onnx, timing_cache=str(shared))
    builder = trt.Builder(trt_env.make_logger(trt, print))
    keys = set(builder.create_builder_config().create_timing_cache(shared.read_bytes()).queryKeys())
    concurrent = builder.create_builder_config().create_timing_cache(b"")  # started before "a" saved
    concurrent._entries["entry-of-a-concurrent-build"] = {"tactic": "x"}
    from rsz_export.backends.trt_timing import save_timing_cache

    save_timing_cache(builder, concurrent, shared, print)
    merged = set(builder.create_builder_config().create_timing_cache(shared.read_bytes()).queryKeys())
    assert keys and merged == keys | {"entry-of-a-concurrent-build"}


@pytest.mark.parametrize("bad", ["corrupt", "other-version"])
def test_unreadable_timing_cache_is_refused_and_left_alone(bad, tmp_path, monkeypatch, classifier_onnx):
    """create_timing_cache returns None for it: the build stops (exit 4) and never overwrites the file."""
    cache = tmp_path / "user.cache"
    if bad == "other-version":
        use_double(monkeypatch, V11)
        build(tmp_path / "v11", classifier_onnx, timing_cache=str(cache))
    else:
        cache.write_bytes(b"not a timing cache")
    before = cache.read_bytes()
    use_double(monkeypatch, V10)
    with pytest.raises(IntegrityError, match="cannot read the timing cache") as info:
        build(tmp_path / "v10", classifier_onnx, timing_cache=str(cache))
    assert info.value.exit_code == 4 and cache.read_bytes() == before
    assert not list((tmp_path / "v10").glob("*.engine"))


def test_timing_cache_from_another_gpu_is_an_environment_problem(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V11, gpu=A10)
    build(tmp_path, classifier_onnx)
    use_double(monkeypatch, V11)
    with pytest.raises(EnvironmentProblem, match="made on another GPU") as info:
        build(tmp_path, classifier_onnx)
    assert info.value.exit_code == 3


def test_failed_build_reports_what_tensorrt_logged(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V10, knobs=fake_tensorrt.Knobs(min_workspace_bytes=256 << 20))
    with pytest.raises(EnvironmentProblem, match="could not build engine tensorrt-fp32: .*insufficient workspace"):
        build(tmp_path, classifier_onnx, workspace_mib=16)
    assert not list(tmp_path.glob("*.engine"))


def test_a_cpu_optimised_ort_graph_cannot_be_parsed(tmp_path, monkeypatch):
    """ONNX Runtime's EXTENDED offline pass on the CPU writes com.microsoft FusedConv, which TensorRT's parser has
    no importer for (onnx-tensorrt docs/operators.md): the reason ORT engines for GPU providers stay un-fused."""
    import onnxruntime as ort

    trt = use_double(monkeypatch, V10)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "cpu-optimised.onnx")
    source = make_classifier(tmp_path / "relu.onnx", relu=True)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    logger = trt_env.make_logger(trt, print)
    with pytest.raises(IntegrityError, match=r"FusedConv.*UNSUPPORTED_NODE"):
        trt_build._parse_onnx(trt, trt.Builder(logger), logger, tmp_path / "cpu-optimised.onnx")


def test_profile_tensorrt_refuses_is_a_usage_error(monkeypatch):
    """set_shape raises RuntimeError in the binding, where its docstring says ValueError: both are caught."""
    trt = use_double(monkeypatch, V11)
    builder = trt.Builder(trt_env.make_logger(trt, print))
    shapes = [("images", (1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 128, 128))]  # opt below min
    with pytest.raises(UsageError, match="rejected profile"):
        trt_build._add_profiles(builder, builder.create_builder_config(), shapes)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_build_cancels_it_and_writes_nothing(signum, tmp_path, monkeypatch, classifier_onnx):
    """The signal arrives inside a TensorRT callback, where the binding would swallow an exception; the progress
    monitor cancels the build instead and the signal is raised again afterwards under the previous handler."""

    class Stopped(BaseException):
        pass

    def stop(*_):
        raise Stopped

    trt = use_double(monkeypatch, V11, knobs=fake_tensorrt.Knobs(sigint_at_build_step=3, build_signal=signum))
    previous = signal.signal(signum, stop)
    try:
        with pytest.raises(Stopped):
            build(tmp_path, classifier_onnx)
        assert signal.getsignal(signum) is stop  # the build's own handler is gone
    finally:
        signal.signal(signum, previous)
    assert not list(tmp_path.glob("*.engine")) and not (tmp_path / "timing.cache").exists()
    assert any("cancelled" in message for _, message in trt._fake.knobs.build_log)


def test_ctrl_c_becomes_keyboard_interrupt(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V10, knobs=fake_tensorrt.Knobs(sigint_at_build_step=2))
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, classifier_onnx, engine_per_profile=True)
    assert not list(tmp_path.glob("*.engine"))


def test_builds_off_the_main_thread_and_same_compute_capability(tmp_path, monkeypatch, classifier_onnx):
    """No signal handler can be set off the main thread: the build runs without one."""
    from concurrent.futures import ThreadPoolExecutor

    use_double(monkeypatch, V10)
    with ThreadPoolExecutor(1) as pool:
        records, _ = pool.submit(build, tmp_path, classifier_onnx, hardware_compat="same-compute-capability").result()
    assert records[0].settings["hardware_compat"] == "same-compute-capability"


def test_recorded_options_rebuild_what_the_engine_was_built_with(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V10)
    options = dict(precision="fp16", workspace_mib=96, opt_level=5, tf32=False, hardware_compat="ampere+",
                   version_compat=True)
    (record,), _ = build(tmp_path, classifier_onnx, **options)
    again = backend.recorded_options(record, timing_cache="elsewhere.cache")
    assert again == BuildOptions(**options, timing_cache="elsewhere.cache")


def test_the_folders_cache_is_kept_across_builds_and_dropped_after_an_upgrade(tmp_path, monkeypatch, classifier_onnx):
    """The build folder's own cache is vouched for by its manifest; after a TensorRT upgrade it cannot be read,
    so the build starts a new one (instead of refusing it as it refuses a user's unreadable --timing-cache)."""
    from tests.backends.trt_double import build_folder

    use_double(monkeypatch, V10)
    first = build_folder(tmp_path, PLAN, classifier_onnx).engines[0].settings["timing_cache"]
    same = build_folder(tmp_path, PLAN, classifier_onnx, opt_level=2).engines[0].settings["timing_cache"]
    assert first["reused"] is False and same["reused"] is True and same["loaded_sha256"] == first["sha256"]
    use_double(monkeypatch, V11)
    upgraded = build_folder(tmp_path, PLAN, classifier_onnx).engines[0].settings["timing_cache"]
    assert upgraded["reused"] is False and upgraded["loaded_bytes"] == 0


def test_timing_cache_files_that_cannot_be_read_or_merged(tmp_path, monkeypatch, classifier_onnx):
    from rsz_export.backends.trt_timing import save_timing_cache

    trt = use_double(monkeypatch, V11)
    (tmp_path / "a-folder.cache").mkdir()
    with pytest.raises(IntegrityError, match="cannot read the timing cache .*a-folder.cache"):
        build(tmp_path / "out", classifier_onnx, timing_cache=str(tmp_path / "a-folder.cache"))
    shared = tmp_path / "shared.cache"
    shared.write_bytes(b"replaced meanwhile by something unreadable")
    builder, logs = trt.Builder(trt_env.make_logger(trt, print)), []
    cache = builder.create_builder_config().create_timing_cache(b"")
    written = save_timing_cache(builder, cache, shared, logs.append)
    assert shared.read_bytes() == written and any("cannot merge" in line for line in logs)


def test_a_cancelled_build_stops_even_when_the_previous_handler_returns(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V11, knobs=fake_tensorrt.Knobs(sigint_at_build_step=2))
    previous = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        with pytest.raises(KeyboardInterrupt):
            build(tmp_path, classifier_onnx)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not list(tmp_path.glob("*.engine"))


def _calibration(folder, onnx):
    """A calibration file for ``onnx`` from the bundled photographs at the plan's sizes."""
    from rsz_export.model.calibration import calibrate, write_ranges
    from rsz_export.model.quantization import photo_feeds
    from rsz_export.shapes import Resolution

    feeds = (photo_feeds(Resolution(s, s))[k : k + 1] for k, s in enumerate((64, 96, 128)))
    return write_ranges(folder / "calibration.json", calibrate(onnx, feeds, "minmax"), key="test")


def test_int8_builds_the_tensorrt_qdq_model_checked_on_the_cpu(trt_double, tmp_path, monkeypatch, classifier_onnx):
    """Both generations parse the symmetric Q/DQ model (10.x with the INT8 flag on its weakly typed network,
    11.x strongly typed without flags), after ONNX Runtime compared it with fp32 on the CPU."""
    trt = trt_double
    ranges = _calibration(tmp_path, classifier_onnx)
    (record,), logs = build(tmp_path, classifier_onnx, precision="int8", calibration=str(ranges))
    settings = record.settings
    assert settings["precision_path"] == "qdq-onnx" and record.name == "tensorrt-int8"
    assert settings["reduced_check"]["qdq_check"]["passed"]
    assert settings["reduced_check"]["quantization"]["activation_type"] == "QInt8"
    assert "model.int8-tensorrt.onnx" in {f.file for f in record.extra_files}
    assert "INT8" in settings["layers"]["precisions"]
    assert any("tensorrt Q/DQ vs fp32 on the CPU" in line for line in logs)
    if trt.__version__ == V11:
        assert not hasattr(trt.BuilderFlag, "INT8")


def test_int8_on_10x_needs_the_int8_flag(tmp_path, monkeypatch, classifier_onnx):
    """The double refuses a weakly typed Q/DQ network without BuilderFlag.INT8, as TensorRT 10.x documents."""
    use_double(monkeypatch, V10)
    monkeypatch.setitem(trt_build._SET_PRECISION, 10, lambda trt, builder_config, precision: None)
    ranges = _calibration(tmp_path, classifier_onnx)
    with pytest.raises(EnvironmentProblem, match="INT8 builder flag is not set"):
        build(tmp_path, classifier_onnx, precision="int8", calibration=str(ranges))


def test_int8_without_calibration_is_refused(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V11)
    with pytest.raises(IntegrityError, match="needs calibrated ranges"):
        build(tmp_path, classifier_onnx, precision="int8")
