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

from rsz_export.artifacts.manifest import EngineRecord, Manifest, verify_file
from rsz_export.backends import trt_support as ts
from rsz_export.backends.trt_build import build_engines, recorded_options
from rsz_export.backends.trt_env import NAME, check_compatible, installed, unavailable_reason
from rsz_export.backends.trt_runner import TrtRunner
from rsz_export.errors import IntegrityError

SUPPORTED_PRECISIONS = ts.PRECISIONS
__all__ = [
    "NAME",
    "SUPPORTED_PRECISIONS",
    "bench_device",
    "build_engines",
    "check_compatible",
    "open_runner",
    "recorded_options",
    "static_twin",
    "timing_cache_problem",
    "unavailable_reason",
]


def bench_device() -> str:
    """Where bench runs its torch-side probes beside TensorRT engines (the matmul peak, memory high-water marks):
    the CUDA side's device, so a run over the test double's fake GPU never calls torch.cuda."""
    from rsz_export.backends import trt_env

    return trt_env.cuda().torch_device


def static_twin(manifest: Manifest, engine: EngineRecord, out_dir, timing_cache: str | None):
    """(the ONNX to build ``engine``'s shape-fixed twin from, whether it is already the network TensorRT parses,
    the BuildOptions): the engine's own recorded Q/DQ or reduced-precision ONNX when it has one, so the twin is
    the same network, else the export; every file hash-checked (IntegrityError, exit 4, when one was changed or
    removed); an int8 engine's options carry its calibrated ranges' file."""
    calibration = None
    if engine.precision == "int8":
        if manifest.calibration is None:
            raise IntegrityError(f"engine {engine.name} is int8 and the manifest records no calibration",
                                 hint="rebuild it: rsz-export build --precision int8 --force")  # fmt: skip
        calibration = str(verify_file(out_dir, manifest.calibration.file))
    options = recorded_options(engine, timing_cache=timing_cache, calibration=calibration)
    network = next((r for r in engine.extra_files if r.file.endswith(".onnx")), None)
    if network is not None:
        return verify_file(out_dir, network), True, options
    return verify_file(out_dir, manifest.onnx), False, options


def timing_cache_problem(settings: dict) -> str | None:
    """None when the timing cache written with engines of these build ``settings`` suits this machine's TensorRT
    and GPU, else why not (the build then starts a new cache instead of refusing it)."""
    return unavailable_reason() or ts.timing_cache_problem(settings, installed())


def open_runner(manifest: Manifest, engine: EngineRecord | None, out_dir, **_ignored):
    """A TrtRunner for ``engine``, or for every TensorRT engine in the manifest when None; enter it to load."""
    engines = (engine,) if engine is not None else tuple(e for e in manifest.engines if e.backend == NAME)
    if not engines:
        raise IntegrityError(
            "the manifest lists no TensorRT engine", hint="rebuild: rsz-export build --backend tensorrt"
        )
    return TrtRunner(manifest, engines, out_dir)
