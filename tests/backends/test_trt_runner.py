"""The TensorRT runner on the CPU against the test double: real outputs (ONNX Runtime inside the double computes
them from the ONNX the fake plan carries), routing, and every refusal TensorRT can answer with."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rsz_export.backends import trt as backend
from rsz_export.backends.base import BuildOptions
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.plan.profiles import route
from rsz_export.shapes import BatchRange
from tests.backends import fake_tensorrt
from tests.backends.trt_double import V10, V11, FakeCuda, manifest_for, onnx_reference, use_double
from tests.helpers import make_plan

PLAN = make_plan(64, 128, profiles=2, batch=BatchRange(1, 2, 2))
A10 = fake_tensorrt.FakeGpu(name="NVIDIA A10", compute_capability=(8, 6))


def build(out, onnx, **options):
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, out / "model.onnx")
    return backend.build_engines(out / "model.onnx", PLAN, BuildOptions(**options), out, lambda _line: None)


def run_all(out, records, shapes):
    """(input, logits, profile) for each (batch, h, w), through one runner over every engine."""
    results = []
    with backend.open_runner(manifest_for(records, out, PLAN), None, out) as runner:
        for batch, h, w in shapes:
            x = np.random.default_rng(h * w + batch).standard_normal((batch, 3, h, w)).astype(np.float32)
            results.append((x, runner.infer(x), runner.last_profile))
    return results


@pytest.mark.parametrize("per_profile", [False, True])
def test_outputs_are_the_models_and_each_input_runs_in_its_profile(
    trt_double, per_profile, tmp_path, monkeypatch, classifier_onnx
):
    records = build(tmp_path, classifier_onnx, engine_per_profile=per_profile)
    reference = onnx_reference(classifier_onnx)
    for x, got, profile in run_all(tmp_path, records, [(1, 64, 64), (2, 100, 80), (2, 128, 128), (1, 64, 127)]):
        assert profile == route(PLAN.profiles, *x.shape[:1], *x.shape[2:])
        np.testing.assert_allclose(got, reference(x), rtol=1e-5, atol=1e-5)


def test_inputs_no_profile_serves_are_refused(trt_double, tmp_path, monkeypatch, classifier_onnx):
    records = build(tmp_path, classifier_onnx)
    with backend.open_runner(manifest_for(records, tmp_path, PLAN), None, tmp_path) as runner:
        with pytest.raises(UsageError, match="outside every profile"):
            runner.infer(np.zeros((1, 3, 200, 200), np.float32))
        with pytest.raises(UsageError, match="outside every profile"):
            runner.infer(np.zeros((3, 3, 64, 64), np.float32))  # batch 3 > 2
        with pytest.raises(UsageError, match="float32"):
            runner.infer(np.zeros((1, 3, 64, 64), np.float64))  # refused, not cast
        with pytest.raises(UsageError, match="cannot serve"):
            runner.infer(np.zeros((1, 3, 120, 120), np.float32), profile=0)


def test_version_compatible_10x_engine_runs_on_11x_and_a_plain_one_is_refused(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V10)
    compat = build(tmp_path / "vc", classifier_onnx, version_compat=True)
    plain = build(tmp_path / "plain", classifier_onnx)
    use_double(monkeypatch, V11)
    assert backend.check_compatible(manifest_for(compat, tmp_path / "vc", PLAN), compat[0]) is None
    assert run_all(tmp_path / "vc", compat, [(1, 64, 64)])[0][1].shape == (1, 1000)
    with pytest.raises(EnvironmentProblem, match="built by TensorRT 10.16.1.11 and this machine has 11.4.0.106"):
        run_all(tmp_path / "plain", plain, [(1, 64, 64)])


def test_engine_from_another_gpu_is_refused_unless_hardware_compatible(tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V11)
    portable = build(tmp_path / "hc", classifier_onnx, hardware_compat="ampere+")
    plain = build(tmp_path / "plain", classifier_onnx)
    use_double(monkeypatch, V11, gpu=A10)
    assert run_all(tmp_path / "hc", portable, [(1, 64, 64)])[0][1].shape == (1, 1000)
    with pytest.raises(EnvironmentProblem, match="compute capability 9.0 and this GPU has 8.6") as info:
        run_all(tmp_path / "plain", plain, [(1, 64, 64)])
    assert info.value.exit_code == 3


def test_a_plan_tensorrt_refuses_is_an_integrity_error(tmp_path, monkeypatch, classifier_onnx):
    """Below the manifest's compatibility check, TensorRT itself returns None for a plan from another GPU."""
    from rsz_export.backends import trt_env

    use_double(monkeypatch, V11, gpu=A10)
    (record,) = build(tmp_path, classifier_onnx)
    trt = use_double(monkeypatch, V11)
    blob = (tmp_path / record.file.file).read_bytes()
    with pytest.raises(IntegrityError, match="incompatible device") as info:
        trt_env.deserialize(trt, trt_env.make_logger(trt, print), blob, False, tmp_path / "e")
    assert info.value.exit_code == 4


def test_out_of_memory_at_context_creation_is_an_environment_problem(tmp_path, monkeypatch, classifier_onnx):
    trt = use_double(monkeypatch, V10)
    records = build(tmp_path, classifier_onnx)
    trt._fake.device.total_bytes = 1 << 20  # less than one profile's activations
    with pytest.raises(
        EnvironmentProblem, match="could not create an execution context .*could not be allocated"
    ) as info:
        run_all(tmp_path, records, [(1, 64, 64)])
    assert info.value.exit_code == 3 and trt._fake.device.used_bytes == 0  # nothing kept allocated


def test_engine_with_other_profiles_than_its_manifest_is_refused(tmp_path, monkeypatch, classifier_onnx):
    from dataclasses import replace

    use_double(monkeypatch, V11)
    (record,) = build(tmp_path, classifier_onnx)
    wrong = replace(record, profiles=(0,))
    with pytest.raises(IntegrityError, match="2 optimization profile"):
        with backend.open_runner(manifest_for([wrong], tmp_path, PLAN), wrong, tmp_path):
            pass


class _MisalignedCuda(FakeCuda):
    """Buffers 4 bytes past a 256-byte boundary (what a sliced torch tensor's data_ptr can be)."""

    @staticmethod
    def address(buffer) -> int:
        return buffer.ptr + 4


class _ForeignStreamCuda(FakeCuda):
    """A stream handle the device never created."""

    def __init__(self):
        super().__init__()
        self.stream_handle = 0xBAD0


class _NoSyncCuda(FakeCuda):
    """A CUDA side whose timing and reads never wait for the stream (on a GPU, a read before the queued work ran
    gives stale bytes, as the double does): the runner itself must synchronize before reading outputs. Its timing
    is a fixed 7.5 ms, taken around the call that enqueues the work."""

    def run_timed(self, run):
        before = self.device.pending(self.stream_handle)
        result = run()
        assert self.device.pending(self.stream_handle) > before  # the execute was enqueued inside the timing
        return result, 7.5

    def to_host(self, buffer):
        return self.device.read(buffer.ptr, buffer.shape, buffer.dtype).astype(np.float32)


@pytest.mark.parametrize(
    "cuda, error",
    [(_MisalignedCuda, "refused the device buffer of images"), (_ForeignStreamCuda, "refused profile 0")],
)
def test_buffers_and_streams_tensorrt_refuses(cuda, error, tmp_path, monkeypatch, classifier_onnx):
    use_double(monkeypatch, V10)
    records = build(tmp_path, classifier_onnx)
    use_double(monkeypatch, V10, cuda=cuda)
    with pytest.raises(EnvironmentProblem, match=error):
        run_all(tmp_path, records, [(1, 64, 64)])


class _SmallOutputCuda(FakeCuda):
    """Output buffers of one float: too small for the logits."""

    def empty(self, shape, dtype: str):
        return super().empty((1,), dtype)


def test_the_runner_synchronizes_before_reading_and_failures_are_reported(tmp_path, monkeypatch, classifier_onnx):
    trt = use_double(monkeypatch, V11, cuda=_NoSyncCuda)
    records = build(tmp_path, classifier_onnx)
    with backend.open_runner(manifest_for(records, tmp_path, PLAN), None, tmp_path) as runner:
        x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
        np.testing.assert_allclose(runner.infer(x), onnx_reference(classifier_onnx)(x), rtol=1e-5, atol=1e-5)
        assert runner.last_latency_ms == 7.5  # the CUDA side's timing of the execute, as it measured it
    use_double(monkeypatch, V11, cuda=_SmallOutputCuda)
    with pytest.raises(EnvironmentProblem, match=r"failed to run \(1, 3, 64, 64\): .*enqueueV3"):
        run_all(tmp_path, records, [(1, 64, 64)])
    trt = use_double(monkeypatch, V11)
    with backend.open_runner(manifest_for(records, tmp_path, PLAN), None, tmp_path) as runner:
        trt._fake.device.total_bytes = trt._fake.device.used_bytes  # no room left for the input
        with pytest.raises(EnvironmentProblem, match="no GPU memory for"):
            runner.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_an_engine_whose_profiles_differ_from_its_manifest(tmp_path, monkeypatch, classifier_onnx):
    """A manifest whose plan claims a wider range than the engine was built for: refused when it loads (exit 4),
    not at the first input of the wider range."""
    use_double(monkeypatch, V11)
    records = build(tmp_path, classifier_onnx)
    wider = make_plan(64, 160, profiles=2, batch=BatchRange(1, 2, 2))
    with pytest.raises(IntegrityError, match="profile 0 covers .* the manifest's plan says") as info:
        with backend.open_runner(manifest_for(records, tmp_path, wider), None, tmp_path):
            pass
    assert info.value.exit_code == 4


def test_an_engine_with_other_inputs_and_outputs_is_refused(tmp_path, monkeypatch, classifier_onnx):
    import onnx
    from onnx import helper

    model = onnx.load(str(classifier_onnx))
    model.graph.node.append(helper.make_node("Identity", ["logits"], ["copy"]))
    model.graph.output.append(helper.make_tensor_value_info("copy", onnx.TensorProto.FLOAT, ["batch", 1000]))
    onnx.save(model, str(tmp_path / "two-outputs.onnx"))
    use_double(monkeypatch, V10)
    records = build(tmp_path / "out", tmp_path / "two-outputs.onnx")
    with pytest.raises(IntegrityError, match=r"not one input and the outputs \['logits'\] the manifest names"):
        run_all(tmp_path / "out", records, [(1, 64, 64)])


def test_every_feature_map_is_bound_in_every_profile(trt_double, tmp_path):
    """A backbone's engine (a stand-in with the FPN's five outputs): each output bound and returned, equal to the
    model's, in each profile."""
    from dataclasses import replace

    from tests.model.detectors import tiny_feature_onnx

    onnx = tiny_feature_onnx(tmp_path / "fpn.onnx", "fpn")
    records = build(tmp_path / "out", onnx, engine_per_profile=True)
    manifest = replace(manifest_for(records, tmp_path / "out", PLAN), outputs="fpn")
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    with backend.open_runner(manifest, None, tmp_path / "out") as runner:
        for batch, h, w in [(1, 64, 64), (2, 97, 65), (2, 128, 128), (1, 65, 127)]:
            x = np.random.default_rng(h * w).standard_normal((batch, 3, h, w)).astype(np.float32)
            got = runner.infer_all(x)
            assert runner.last_profile == route(PLAN.profiles, batch, h, w)
            want = session.run(None, {"images": x})
            assert [g.shape for g in got] == [(batch, 256, -(-h // s), -(-w // s)) for s in (4, 8, 16, 32, 64)]
            for g, e in zip(got, want, strict=True):
                np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
