"""The TensorRT environment both the build and the runner need: importing TensorRT, its logger, this machine's
TensorRT and GPU facts, whether a built engine may run here, and loading a serialized engine."""

from __future__ import annotations

from pathlib import Path

from rsz_export.artifacts.manifest import EngineRecord, Manifest
from rsz_export.backends import trt_support as ts
from rsz_export.errors import EnvironmentProblem, IntegrityError
from rsz_export.interface import Log

NAME = "tensorrt"


def import_trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EnvironmentProblem(f"TensorRT is not installed ({exc})", hint=ts.INSTALL_HINT) from None
    return trt


def cuda():
    """The CUDA side (GPU facts, streams, buffers, timing): ``trt_cuda.TorchCuda``. The CPU tests replace this
    function to run the backend against the TensorRT test double's fake device."""
    from rsz_export.backends.trt_cuda import TorchCuda

    return TorchCuda


def unavailable_reason() -> str | None:
    """None when TensorRT imports, is a supported version and a CUDA GPU is usable; else why and what to do."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return ts.unavailable_message(str(exc) or type(exc).__name__, None, None)
    return ts.unavailable_message(None, str(trt.__version__), cuda().problem())


def installed() -> dict:
    """TensorRT version and GPU facts of this machine (what ``check_compatible`` compares against)."""
    return {"tensorrt_version": str(import_trt().__version__), **cuda().facts()}


def make_logger(trt, log: Log):
    class _Logger(trt.ILogger):
        """Forwards warnings and errors to ``log``; keeps errors for the failure message."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.ERROR):
                self.errors.append(str(msg))
            if int(severity) <= int(trt.ILogger.WARNING):
                log(f"tensorrt: {msg}")

    return _Logger()


def logged(logger, count: int = 3) -> str:
    """The last ``count`` errors TensorRT logged, for a failure message."""
    return "; ".join(logger.errors[-count:]) or "TensorRT logged no error"


def check_compatible(manifest: Manifest, engine: EngineRecord) -> str | None:
    """None if ``engine`` may run on this machine's TensorRT and GPU, else a sentence saying what differs."""
    reason = unavailable_reason()
    if reason:
        return reason
    return ts.compatibility_problem(engine.settings, installed())


def deserialize(trt, logger, blob: bytes, version_compat: bool, path: Path):
    """(runtime, engine) for a serialized plan; IntegrityError with TensorRT's words when it cannot be loaded.

    A version-compatible plan embeds its lean runtime as host code, which TensorRT loads only when the runtime
    allows it (NvInferRuntime.h ``IRuntime::setEngineHostCodeAllowed``, default false); trtexec
    (samples/common/sampleEngines.cpp) and Polygraphy (backend/trt/loader.py) set it before loading such plans,
    also right after building one. ``deserialize_cuda_engine`` returns None for any plan it refuses.
    """
    trt_runtime = trt.Runtime(logger)
    if version_compat:
        trt_runtime.engine_host_code_allowed = True
    cuda_engine = trt_runtime.deserialize_cuda_engine(blob)
    if cuda_engine is None:
        raise IntegrityError(
            f"TensorRT could not load {path}: {logged(logger)}",
            hint="rebuild it on this machine: rsz-export build --force",
        )
    return trt_runtime, cuda_engine
