"""ONNX Runtime on its GPU providers: engines without CPU-only fused operators, one TensorRT-provider session per
plan profile, no silent fallback, fp16 only where a provider computes it.

onnxruntime-gpu is not installed here: the offline pass and the parse by TensorRT run for real (ONNX Runtime's
CPU build and the TensorRT test double); the GPU sessions are stand-ins that report the providers a real
session would, so the runner's checks run, not a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from rsz_export.artifacts.manifest import EngineRecord, file_record
from rsz_export.backends import load_backend, ort_providers, trt_build, trt_env
from rsz_export.backends import ort as ort_backend
from rsz_export.backends.base import BuildOptions
from rsz_export.errors import EnvironmentProblem, IntegrityError, OutputError, UsageError
from rsz_export.pipeline.run import BuildSpec, build
from rsz_export.shapes import BatchRange
from tests.backends.trt_double import V11, manifest_for, use_double
from tests.backends.trt_double import classifier_onnx as make_classifier
from tests.helpers import REPO, make_plan

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


OPTION_NAMES = json.loads((REPO / "tests" / "data" / "ort-provider-options.json").read_text())


def accepted_options(provider: str) -> set[str]:
    """The option names ONNX Runtime's parser takes for ``provider`` (tests/data/ort-provider-options.json, with
    its sources: tensorrt_execution_provider_info.cc, cuda_execution_provider_info.cc)."""
    entry = OPTION_NAMES[provider]
    return set(entry["names"]) | set(entry.get("later", ()))


def test_provider_options_are_names_onnx_runtime_parses(tmp_path):
    """Every option the project passes is one ONNX Runtime's ProviderOptionsParser accepts (it fails the session
    on any other name); the profile shapes follow ParseProfileShapes' ``name:NxCxHxW`` form."""
    for device in ("cuda", "tensorrt"):
        for precision in ("fp32", "fp16", "tf32"):
            (provider, options), _cpu = ort_providers.providers_for(device, PLAN, tmp_path, precision, profile=1,
                                                                     workspace_mib=256)
            unknown = set(options) - accepted_options(provider)
            assert not unknown, f"{provider} would refuse {sorted(unknown)}"
    (_, options), _ = ort_providers.providers_for("tensorrt", PLAN, tmp_path, "fp16", profile=1)
    for key in ("min", "opt", "max"):
        name, dims = options[f"trt_profile_{key}_shapes"].split(":")
        assert name == "images" and tuple(int(d) for d in dims.split("x")) == getattr(PLAN.profiles[1], key).nchw


class _Session:
    """Stands for an onnxruntime.InferenceSession on a GPU provider (onnxruntime-gpu is not installed here). Like
    ONNX Runtime it refuses an option name its parser does not know (ProviderOptionsParser::Parse: "Unknown
    provider option"), and the TensorRT provider creates only the last level of its cache folders
    (tensorrt_execution_provider.cc, fs::create_directory): a missing parent fails the session."""

    opened: list = []

    def __init__(self, so, providers, active):
        for provider, options in (p for p in providers if isinstance(p, tuple)):
            unknown = set(options) - accepted_options(provider)
            if unknown:
                raise IntegrityError(f"Unknown provider option: {sorted(unknown)[0]}")
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in options and not Path(options[key]).parent.is_dir():
                    raise IntegrityError(f"cannot create {options[key]}: its parent does not exist")
        self.so, self.providers, self.active = so, providers, active
        _Session.opened.append(self)

    def get_providers(self):
        return self.active

    def run(self, _names, feed):
        return [np.full((feed["images"].shape[0], 1000), len(_Session.opened), np.float32)]


def _runner(tmp_path, monkeypatch, device, active, content=b"model bytes"):
    (tmp_path / "engine.onnx").write_bytes(content)
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


def _cache_paths() -> list[Path]:
    return [Path(s.providers[0][1]["trt_engine_cache_path"]) for s in _Session.opened]


def test_tensorrt_provider_caches_are_keyed_by_the_engine_and_made_before_the_session(tmp_path, monkeypatch):
    """Each session's cache folder exists before it opens, carries the engine file's sha256 (ONNX Runtime keys
    its cached engines by file name and node names only), and the shape-pinned twin has its own."""
    from rsz_export.shapes import InputShape

    with _runner(tmp_path, monkeypatch, "tensorrt", [TRT_EP, CPU_EP]) as runner:
        runner.infer(np.zeros((1, 3, 64, 64), np.float32))
        sha = runner.engine.file.sha256
    (dynamic,) = _cache_paths()
    assert dynamic == tmp_path / "ort-trt-cache" / sha[:16] / "p0" and dynamic.parent.is_dir()
    manifest, record = runner.manifest, runner.engine
    _Session.opened.clear()
    with ort_backend.open_runner(manifest, record, tmp_path, pinned=InputShape(1, 64, 64)) as twin:
        twin.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert _cache_paths() == [tmp_path / "ort-trt-cache" / sha[:16] / "static-1x64x64"]
    (tmp_path / "engine.onnx").write_bytes(b"other weights")  # a rebuild: another engine, another folder
    _Session.opened.clear()
    with _runner(tmp_path, monkeypatch, "tensorrt", [TRT_EP, CPU_EP], content=b"other weights") as runner:
        runner.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert _cache_paths()[0].parent.name != sha[:16]


def test_a_cache_folder_that_cannot_be_made_stops_before_the_session(tmp_path, monkeypatch):
    (tmp_path / "ort-trt-cache").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create ONNX Runtime's TensorRT cache folder"):
        with _runner(tmp_path, monkeypatch, "tensorrt", [TRT_EP, CPU_EP]) as runner:
            runner.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert _Session.opened == []


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
    """The CUDA provider has no fp16 switch and the engine is the fp32 model: fp16 there would run fp32. The
    backend's own option check (what ``build`` calls) lets fp16 through on the TensorRT provider only."""
    backend = load_backend("onnxruntime")
    backend.check_options(BuildOptions(precision="fp16", device="tensorrt"))
    for device in ("cpu", "cuda"):
        with pytest.raises(UsageError, match=f"with --device {device}; allowed: fp32"):
            backend.check_options(BuildOptions(precision="fp16", device=device))
    for device in ("cpu", "cuda"):
        with pytest.raises(UsageError, match="fp16"):
            ort_backend.check_precision(BuildOptions(precision="fp16", device=device))
    ort_backend.check_precision(BuildOptions(precision="fp16", device="tensorrt"))


def test_the_tensorrt_provider_gets_the_workspace_and_its_fp32_is_recorded_as_tf32(tmp_path, monkeypatch):
    """``--workspace-mib`` reaches ``trt_max_workspace_size``; the provider's fp32 keeps TensorRT's TF32 (it has
    no option to turn it off), which the engine's settings say."""
    settings = ort_backend.session_settings(BuildOptions(device="tensorrt", workspace_mib=256))
    assert settings["tf32"] is True and settings["workspace_mib"] == 256
    assert "tf32" not in ort_backend.session_settings(BuildOptions(device="cuda"))
    for name in ("engine.onnx", "model.onnx"):
        (tmp_path / name).write_bytes(b"model bytes")
    record = EngineRecord("ort", "onnxruntime", "fp32", file_record(tmp_path, tmp_path / "engine.onnx"), (0, 1), 1.0,
                          settings)
    monkeypatch.setattr(ort_backend, "_load_session", lambda _o, _m, so, providers, _p: _Session(so, providers,
                                                                                                  [TRT_EP, CPU_EP]))
    _Session.opened.clear()
    with ort_backend.open_runner(manifest_for([record], tmp_path, PLAN), record, tmp_path) as runner:
        runner.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert _Session.opened[0].providers[0][1]["trt_max_workspace_size"] == str(256 << 20)
