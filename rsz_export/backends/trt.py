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

from rsz_export.artifacts.manifest import EngineRecord, Manifest
from rsz_export.backends import trt_support as ts
from rsz_export.backends.trt_build import build_engines, recorded_options
from rsz_export.backends.trt_env import NAME, check_compatible, installed, unavailable_reason
from rsz_export.backends.trt_runner import TrtRunner
from rsz_export.errors import IntegrityError

SUPPORTED_PRECISIONS = ts.PRECISIONS
__all__ = [
    "NAME",
    "SUPPORTED_PRECISIONS",
    "build_engines",
    "check_compatible",
    "open_runner",
    "recorded_options",
    "timing_cache_problem",
    "unavailable_reason",
]


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
