"""The TensorRT environment both the build and the runner need: importing TensorRT, its logger, this machine's
TensorRT and GPU facts, and whether a built engine may run here."""

from __future__ import annotations

from rsz_export.artifacts.manifest import EngineRecord, Manifest
from rsz_export.backends import trt_support as ts
from rsz_export.backends.base import Log
from rsz_export.errors import EnvironmentProblem

NAME = "tensorrt"


def import_trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EnvironmentProblem(f"TensorRT is not installed ({exc})", hint=ts.INSTALL_HINT) from None
    return trt


def _cuda_error() -> str | None:
    try:
        import torch
    except ImportError as exc:
        return f"torch cannot be imported: {exc}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device; check the NVIDIA driver and that torch is a CUDA build"
    return None


def unavailable_reason() -> str | None:
    """None when TensorRT imports, is a supported version and torch sees a CUDA GPU; else why and what to do."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return ts.unavailable_message(str(exc) or type(exc).__name__, None, None)
    return ts.unavailable_message(None, str(trt.__version__), _cuda_error())


def installed() -> dict:
    """TensorRT version and GPU facts of this machine (what ``check_compatible`` compares against)."""
    import torch

    from rsz_export.artifacts.host import driver_version

    trt = import_trt()
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "tensorrt_version": str(trt.__version__),
        "gpu_name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "driver": driver_version() or "unknown",
        "cuda_runtime": torch.version.cuda,
        "gpu_memory_mib": props.total_memory >> 20,
    }


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


def check_compatible(manifest: Manifest, engine: EngineRecord) -> str | None:
    """None if ``engine`` may run on this machine's TensorRT and GPU, else a sentence saying what differs."""
    reason = unavailable_reason()
    if reason:
        return reason
    return ts.compatibility_problem(engine.settings, installed())
