"""Backends: one module per runtime, loaded lazily so the CLI starts without torch, onnxruntime or TensorRT.

``ort`` (ONNX Runtime, with ``ort_providers`` for its GPU execution providers), ``trt`` (TensorRT: ``trt_build``
builds, ``trt_runner`` runs, ``trt_support`` holds the pure helpers) and ``pyt`` (the PyTorch reference). The
contract each module follows is in ``base``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rsz_export.errors import EnvironmentProblem, check_choice

BACKENDS = {
    "onnxruntime": "rsz_export.backends.ort",
    "tensorrt": "rsz_export.backends.trt",
    "torch": "rsz_export.backends.pyt",
}
BUILD_BACKENDS = ("auto", "onnxruntime", "tensorrt")
REQUIRED = ("NAME", "SUPPORTED_PRECISIONS", "unavailable_reason", "check_compatible", "open_runner")
"""What every backend module defines (see ``base``); the ones that build engines also define ``build_engines``."""


def load_backend(name: str) -> ModuleType:
    """The backend module called ``name``; UsageError for unknown names."""
    check_choice(name, "backend", BACKENDS)
    return importlib.import_module(BACKENDS[name])


def require_backend(name: str) -> ModuleType:
    """The backend module, or EnvironmentProblem (exit 3) saying what to install when it cannot run here."""
    module = load_backend(name)
    reason = module.unavailable_reason()
    if reason:
        raise EnvironmentProblem(f"backend {name} is not usable on this machine: {reason}")
    return module


def choose_backend(name: str) -> tuple[str, str]:
    """Resolve ``auto``: TensorRT when it is importable and a CUDA GPU is visible, else ONNX Runtime.

    Returns (backend name, a sentence saying why).
    """
    if name != "auto":
        load_backend(name)
        return name, f"backend {name} (asked for)"
    reason = load_backend("tensorrt").unavailable_reason()
    if reason is None:
        return "tensorrt", "backend tensorrt (auto: TensorRT and a CUDA GPU are present)"
    return "onnxruntime", f"backend onnxruntime (auto: TensorRT not used: {reason})"


def precision_fix(precision: str, backend: str) -> str:
    """How to build when ``backend`` does not build ``precision``: the flag that builds here (it overrides a
    profile file's precision), and the backends that build ``precision``."""
    here = load_backend(backend).SUPPORTED_PRECISIONS
    elsewhere = [name for name in BACKENDS if name not in (backend, "torch")
                 and precision in load_backend(name).SUPPORTED_PRECISIONS]
    fix = f"build here with --precision {here[0]} (it overrides a profile file's precision)"
    if elsewhere:
        fix += f"; {precision} builds with " + " or ".join(f"--backend {name}" for name in elsewhere)
        fix += " (TensorRT and a CUDA GPU)" if "tensorrt" in elsewhere else ""
    return fix
