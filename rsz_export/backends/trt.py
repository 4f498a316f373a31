"""The TensorRT backend (10.1+ and 11.x): its entry points. Building is in ``trt_build`` (with ``trt_timing``
for the timing cache and ``trt_cancel`` for Ctrl-C), running in ``trt_runner``, what both need from the
installed TensorRT in ``trt_env``, the GPU side (torch) in ``trt_cuda``, and the pure helpers (versions,
profile shapes, inspector JSON, compatibility) in ``trt_support``.

The ``trt*`` modules are the only ones that import ``tensorrt``, and only inside functions. Code that differs
between the API generations lives in functions suffixed ``_v10`` / ``_v11`` and is reached only through
``{10: ..., 11: ...}`` dispatch dicts; tests/backends/test_trt_api_surface.py checks every ``trt.`` name on each
path against the published 10.x and 11.x API surfaces. TensorRT objects always go by the same local names
(``builder``, ``network``, ``builder_config``, ``onnx_parser``, ``trt_profile``, ``trt_runtime``, ``cuda_engine``,
``exec_context``, ``inspector``, ``timing_cache``, ``parser_error``) so that test can check their members too.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from rsz_export.artifacts.manifest import EngineRecord, Manifest, verify_file
from rsz_export.backends import trt_support as ts
from rsz_export.backends.base import TIMING_CACHE_NAME, Backend, BuildOptions, RunnerOptions, TritonModel
from rsz_export.backends.trt_build import build_engines, recorded_options
from rsz_export.backends.trt_env import NAME, check_compatible, installed, unavailable_reason
from rsz_export.backends.trt_runner import TrtRunner
from rsz_export.errors import IntegrityError
from rsz_export.interface import Log
from rsz_export.plan.profiles import single_profile_plan
from rsz_export.shapes import InputShape

SUPPORTED_PRECISIONS = ts.PRECISIONS
__all__ = [
    "NAME",
    "SUPPORTED_PRECISIONS",
    "TensorRT",
    "build_engines",
    "check_compatible",
    "open_runner",
    "recorded_options",
    "timing_cache_problem",
    "twin_source",
    "unavailable_reason",
]


def timing_cache_problem(settings: dict) -> str | None:
    """None when the timing cache written with engines of these build ``settings`` suits this machine's TensorRT
    and GPU, else why not (the build then starts a new cache instead of refusing it)."""
    return unavailable_reason() or ts.timing_cache_problem(settings, installed())


def open_runner(manifest: Manifest, engine: EngineRecord | None, out_dir):
    """A TrtRunner for ``engine``, or for every TensorRT engine in the manifest when None; enter it to load."""
    engines = (engine,) if engine is not None else tuple(e for e in manifest.engines if e.backend == NAME)
    if not engines:
        raise IntegrityError(
            "the manifest lists no TensorRT engine", hint="rebuild: rsz-export build --backend tensorrt"
        )
    return TrtRunner(manifest, engines, out_dir)


class TensorRT(Backend):
    """TensorRT 10.1+ and 11.x on a CUDA GPU (the ``tensorrt`` extra): engines in every precision, one execution
    context per profile, timed on their own stream."""

    name = NAME
    precisions = SUPPORTED_PRECISIONS
    extra = "tensorrt"
    gpu_only = True
    measures_gpu_time = True
    uses_timing_cache = True

    def unavailable_reason(self) -> str | None:
        return unavailable_reason()

    def check_compatible(self, manifest: Manifest, engine: EngineRecord | None) -> str | None:
        return check_compatible(manifest, engine)

    def open_runner(self, manifest, engine, out_dir, options: RunnerOptions | None = None) -> TrtRunner:
        """Uses no option: TensorRT runs on the GPU (no CPU threads) and its shapes come from the engine's
        profiles (a fixed shape is a separate engine: ``static_twin``). ``engine`` None: every TensorRT engine of
        the manifest, routed as one."""
        return open_runner(manifest, engine, out_dir)

    def engine_device(self, engine: EngineRecord) -> str:
        """The CUDA side's device (``trt_env.cuda()``): ``cuda``; the test double's fake GPU computes on the CPU
        and says ``cpu``, so bench's torch-side probes (matmul peak, memory high-water marks) never call
        torch.cuda there."""
        from rsz_export.backends import trt_env

        return trt_env.cuda().torch_device

    def build_engines(self, onnx_path, plan, options, out_dir, log) -> list[EngineRecord]:
        return build_engines(onnx_path, plan, options, out_dir, log)

    def recorded_options(self, engine: EngineRecord) -> BuildOptions:
        return recorded_options(engine)

    def timing_cache_problem(self, settings: dict) -> str | None:
        return timing_cache_problem(settings)

    def keeps_state_per_profile(self, engine: EngineRecord | None) -> bool:
        return engine is not None

    @contextlib.contextmanager
    def static_twin(self, manifest: Manifest, engine: EngineRecord, out_dir, shape: InputShape,
                    options: RunnerOptions, log: Log):
        """A second engine with one profile min = opt = max = ``shape``, built by this backend's builder with the
        engine's own settings (precision, TF32, optimization level, workspace, compatibility), from the engine's own
        network (``twin_source``), with a private copy of its timing cache, so it starts warm and the build
        folder's cache is never written by a bench."""
        plan = single_profile_plan(manifest.plan, shape)
        with tempfile.TemporaryDirectory(prefix="rsz-static-") as tmp:
            onnx_path, prepared, built = twin_source(manifest, engine, out_dir, _private_cache(engine, out_dir, tmp))
            records = build_engines(onnx_path, plan, built, tmp, log, prepared=prepared)
            with open_runner(replace(manifest, plan=plan, engines=tuple(records)), records[0], tmp) as runner:
                yield lambda feed: runner.infer(feed, profile=0)

    def int8_model(self):
        """TensorRT's own Q/DQ model (symmetric int8 activations), judged with exact Q/DQ arithmetic."""
        from rsz_export.model.quantization import TENSORRT_QDQ

        return TENSORRT_QDQ

    def peak_math(self, manifest: Manifest) -> str:
        """fp32 engines built with TF32 allowed (TensorRT's default, NvInfer.h ``BuilderFlag::kTF32``) use TF32
        tensor cores, fp16/bf16 engines half types."""
        if manifest.precision in ("fp32", "tf32"):
            return "tf32" if any(e.settings.get("tf32", True) for e in self.engines_of(manifest)) else "fp32"
        return manifest.precision

    def engine_memory(self, engine: EngineRecord, profile: int | None) -> dict:
        """``trt_activation_mib`` (the profile's activations) and ``engine_file_mib`` (the serialized engine:
        weights and kernels), from the engine record."""
        if profile not in engine.profiles:
            return {}
        per_profile = engine.settings.get("device_memory_bytes_per_profile") or ()
        local = engine.profiles.index(profile)
        activations = per_profile[local] / 2**20 if local < len(per_profile) else None
        return {"trt_activation_mib": activations, "engine_file_mib": engine.file.bytes / 2**20}

    def triton_model(self, manifest: Manifest, engine: EngineRecord) -> TritonModel:
        """Triton's tensorrt backend loads the plan itself, on the GPU, with every optimization profile; it must
        be the TensorRT version that built it."""
        version = engine.settings.get("tensorrt_version") or manifest.versions.get("tensorrt") or "unknown"
        profiles = tuple(str(k) for k in range(len(engine.profiles)))
        return TritonModel("tensorrt_plan", NAME, "KIND_GPU", engine.file, "model.plan", engine_bound=True,
                           profiles=profiles, runtime_version=str(version))


def twin_source(manifest: Manifest, engine: EngineRecord, out_dir, timing_cache: str | None):
    """(the ONNX to build ``engine``'s shape-fixed twin from, whether it is already the network TensorRT parses,
    the BuildOptions): the engine's own recorded Q/DQ or reduced-precision ONNX when it has one, so the twin is
    the same network, else the export; every file hash-checked (IntegrityError, exit 4, when one was changed or
    removed); an int8 engine's options carry its calibrated ranges' file, as its build's did."""
    calibration = None
    if engine.precision == "int8":
        if manifest.calibration is None:
            raise IntegrityError(f"engine {engine.name} is int8 and the manifest records no calibration",
                                 hint="rebuild it: rsz-export build --precision int8 --force")
        calibration = str(verify_file(out_dir, manifest.calibration.file))
    options = recorded_options(engine, timing_cache=timing_cache, calibration=calibration)
    network = next((r for r in engine.extra_files if r.file.endswith(".onnx")), None)
    if network is not None:
        return verify_file(out_dir, network), True, options
    return verify_file(out_dir, manifest.onnx), False, options


def _private_cache(engine: EngineRecord, engines_dir, tmp: str) -> str:
    """A copy in ``tmp`` of the timing cache ``engine`` was built with (the folder's own when it has moved)."""
    recorded = Path((engine.settings.get("timing_cache") or {}).get("path") or Path(engines_dir) / TIMING_CACHE_NAME)
    source = recorded if recorded.is_file() else Path(engines_dir) / recorded.name
    target = Path(tmp) / TIMING_CACHE_NAME
    if source.is_file():
        shutil.copyfile(source, target)
    return str(target)
