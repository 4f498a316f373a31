"""ONNX Runtime on its GPU providers: engines without CPU-only fused operators, one TensorRT-provider session per
plan profile, no silent fallback, fp16 only where a provider computes it.

onnxruntime-gpu is not installed here: the offline pass and the parse by TensorRT run for real (ONNX Runtime's
CPU build and the TensorRT test double); the GPU sessions are stand-ins that report the providers a real
session would, so the runner's checks run, not a GPU."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from rsz_export.artifacts.manifest import EngineRecord, file_record
from rsz_export.backends import ort as ort_backend
from rsz_export.backends import ort_providers, trt_build, trt_env
from rsz_export.backends.base import BuildOptions
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.pipeline.run import BuildSpec, build
from rsz_export.shapes import BatchRange
from tests.backends.trt_double import V11, manifest_for, use_double
from tests.backends.trt_double import classifier_onnx as make_classifier
from tests.helpers import make_plan

PLAN = make_plan(64, 128, profiles=2, batch=BatchRange(1, 2, 2))
TRT_EP, CPU_EP = ort_providers.TRT_EP, ort_providers.CPU_EP


@pytest.mark.parametrize("device, level, domains", [("cpu", "ORT_ENABLE_EXTENDED", {"", "com.microsoft"}),
                                                    ("tensorrt", "ORT_ENABLE_BASIC", {""}),
                                                    ("cuda", "ORT_ENABLE_BASIC", {""})])
def test_gpu_engines_keep_standard_operators_that_tensorrt_parses(device, level, domains, tmp_path, monkeypatch):
    source = make_classifier(tmp_path / "relu.onnx", relu=True)  # Conv + Relu: what the CPU pass fuses
    manifest = build(BuildSpec(PLAN, tmp_path / "out", backend="onnxruntime", options=BuildOptions(device=device),
                               onnx=source, command="pytest")).manifest
    (engine,) = manifest.engines
    assert engine.settings["offline_optimization_level"] == level
    path = tmp_path / "out" / engine.file.file
    assert {n.domain for n in onnx.load(str(path)).graph.node} == domains
    trt = use_double(monkeypatch, V11)
    logger = trt_env.make_logger(trt, print)
    if device == "cpu":
        with pytest.raises(IntegrityError, match="FusedConv"):
            trt_build._parse_onnx(trt, trt.Builder(logger), logger, path)
    else:
        trt_build._parse_onnx(trt, trt.Builder(logger), logger, path)  # the whole graph imports


def test_tensorrt_provider_gets_one_profile_per_session(tmp_path):
    chain = ort_providers.providers_for("tensorrt", PLAN, tmp_path, "fp16", profile=1)
    (name, options), cpu = chain
    assert (name, cpu) == (TRT_EP, CPU_EP) and options["trt_fp16_enable"] == "True"
    for key in ("min", "opt", "max"):
        shape = getattr(PLAN.profiles[1], key).nchw
        assert options[f"trt_profile_{key}_shapes"] == "images:" + "x".join(map(str, shape))
    assert options["trt_engine_cache_path"] == str(tmp_path / "ort-trt-cache" / "p1")


class _Session:
    """Stands for an onnxruntime.InferenceSession on a GPU provider (onnxruntime-gpu is not installed here)."""

    opened: list = []

    def __init__(self, so, providers, active):
        self.so, self.providers, self.active = so, providers, active
        _Session.opened.append(self)

    def get_providers(self):
        return self.active

    def run(self, _names, feed):
        return [np.full((feed["images"].shape[0], 1000), len(_Session.opened), np.float32)]


def _runner(tmp_path, monkeypatch, device, active):
    (tmp_path / "engine.onnx").write_bytes(b"model bytes")
    (tmp_path / "model.onnx").write_bytes(b"model bytes")
    settings = ort_backend.session_settings(BuildOptions(device=device))
    record = EngineRecord("ort", "onnxruntime", "fp32", file_record(tmp_path, tmp_path / "engine.onnx"), (0, 1), 1.0,
                          settings)
    opener = active if callable(active) else lambda so, providers: _Session(so, providers, active)
    monkeypatch.setattr(ort_backend, "_load_session", lambda _ort, _model, so, providers, _path: opener(so, providers))
    _Session.opened.clear()
    return ort_backend.open_runner(manifest_for([record], tmp_path, PLAN), record, tmp_path)


def test_tensorrt_provider_runner_opens_one_checked_session_per_profile(tmp_path, monkeypatch):
    with _runner(tmp_path, monkeypatch, "tensorrt", [TRT_EP, CPU_EP]) as runner:
        for h in (64, 128, 64, 100):
            runner.infer(np.zeros((1, 3, h, h), np.float32))
            assert runner.last_profile == (0 if h == 64 else 1)
    assert len(_Session.opened) == 2  # one per profile, each reused
    shapes = [s.providers[0][1]["trt_profile_max_shapes"] for s in _Session.opened]
    assert shapes == ["images:" + "x".join(map(str, PLAN.profiles[k].max.nchw)) for k in (0, 1)]
    assert all(s.so.get_session_config_entry("session.disable_cpu_ep_fallback") == "1" for s in _Session.opened)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_a_session_without_the_asked_provider_is_refused(device, tmp_path, monkeypatch):
    with pytest.raises(EnvironmentProblem, match=f"did not enable {ort_providers.PROVIDER_OF[device]}") as info:
        with _runner(tmp_path, monkeypatch, device, [CPU_EP]) as runner:  # ONNX Runtime dropped the GPU provider
            runner.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert info.value.exit_code == 3


def test_nodes_that_would_fall_back_to_the_cpu_refuse_the_session(tmp_path, monkeypatch):
    def refuse(_so, _providers):  # what _load_session makes of ONNX Runtime's refusal
        raise IntegrityError("ONNX Runtime cannot load engine.onnx: nodes are assigned to the default CPU EP, "
                             "but fallback to CPU EP has been explicitly disabled")

    with pytest.raises(EnvironmentProblem, match="CUDAExecutionProvider cannot run all of .*fallback to CPU EP"):
        with _runner(tmp_path, monkeypatch, "cuda", refuse):
            pass


def test_fp16_only_where_a_provider_computes_it():
    """The CUDA provider has no fp16 switch and the engine is the fp32 model: fp16 there would run fp32."""
    for device in ("cpu", "cuda"):
        with pytest.raises(UsageError, match="fp16"):
            ort_backend.check_precision(BuildOptions(precision="fp16", device=device))
    ort_backend.check_precision(BuildOptions(precision="fp16", device="tensorrt"))
