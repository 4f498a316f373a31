"""Backends: one ``Backend`` object per runtime (the contract is in ``base``), loaded lazily so the CLI starts
without torch, onnxruntime or TensorRT.

``ort`` (ONNX Runtime: ``ort_runner`` runs, ``ort_providers`` holds its GPU execution providers), ``trt``
(TensorRT: ``trt_build`` builds, ``trt_runner`` runs, ``trt_support`` holds the pure helpers) and ``pyt`` (the
PyTorch reference). This module is the registry: every backend by name, and the one place that picks one.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

from rsz_export.errors import EnvironmentProblem, check_choice

if TYPE_CHECKING:
    from rsz_export.backends.base import Backend

BACKENDS = {
    "onnxruntime": "rsz_export.backends.ort:OnnxRuntime",
    "tensorrt": "rsz_export.backends.trt:TensorRT",
    "torch": "rsz_export.backends.pyt:TorchReference",
}
"""Every backend by name: the module and the ``Backend`` class that implement it (imported on first use)."""
BUILD_BACKENDS = ("auto", "onnxruntime", "tensorrt")
"""``build --backend``: ``auto`` (``choose_backend``) and the backends that build engines."""
REFERENCE = "torch"
"""The backend that runs the PyTorch reference (no engine file): bench's baseline, ``--backend torch``."""
EXPORT_RUNTIME = "onnxruntime"
"""The backend that runs the exported ONNX file itself (validate's first stage)."""


@functools.cache
def load_backend(name: str) -> Backend:
    """The backend called ``name`` (one instance per process); UsageError for unknown names."""
    check_choice(name, "backend", BACKENDS)
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def require_backend(name: str) -> Backend:
    """The backend, or EnvironmentProblem (exit 3) saying what to install when it cannot run here."""
    backend = load_backend(name)
    reason = backend.unavailable_reason()
    if reason:
        raise EnvironmentProblem(f"backend {name} is not usable on this machine: {reason}")
    return backend


def is_reference(name: str | None) -> bool:
    """Whether ``name`` asks for the PyTorch reference rather than a build's engines."""
    return name == REFERENCE


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


def export_runner(manifest, directory):
    """A runner of the build's exported ONNX file as it is (any size and batch, ONNX Runtime's CPU provider with
    its default session settings): what validate compares first, before any engine."""
    return load_backend(EXPORT_RUNTIME).open_onnx_file(manifest, directory)
