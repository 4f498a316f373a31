"""Backends: one module per runtime, loaded lazily so the CLI starts without torch, onnxruntime or TensorRT.

``ort`` (ONNX Runtime, with ``ort_providers`` for its GPU execution providers), ``trt`` (TensorRT: ``trt_build``
builds, ``trt_runner`` runs, ``trt_support`` holds the pure helpers), ``openvino`` (OpenVINO on the CPU:
``ov_build``, ``ov_runner``, ``ov_support``) and ``pyt`` (the PyTorch reference). The contract each module
follows is in ``base``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rsz_export.errors import EnvironmentProblem, check_choice

BACKENDS = {
    "onnxruntime": "rsz_export.backends.ort",
    "tensorrt": "rsz_export.backends.trt",
    "torch": "rsz_export.backends.pyt",
    "openvino": "rsz_export.backends.openvino",
}
BUILD_BACKENDS = ("auto", "onnxruntime", "tensorrt", "openvino")
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


def choose_backend(name: str, precision: str = "fp32") -> tuple[str, str, tuple[str, ...]]:
    """Resolve ``auto``: TensorRT when it is importable and a CUDA GPU is visible, else the CPU runtimes that
    build ``precision`` here (``cpu_candidates``); the build measures them when there are two (``cpu_choice``).

    Returns (backend name, a sentence saying why, the backends still to choose between by measuring).
    """
    if name != "auto":
        load_backend(name)
        return name, f"backend {name} (asked for)", ()
    reason = load_backend("tensorrt").unavailable_reason()
    if reason is None:
        return "tensorrt", "backend tensorrt (auto: TensorRT and a CUDA GPU are present)", ()
    candidates = cpu_candidates(precision)
    if len(candidates) > 1:
        return candidates[0], f"backend auto: TensorRT not used ({reason}); timing {' and '.join(candidates)}", \
            candidates
    chosen = candidates[0] if candidates else "onnxruntime"
    return chosen, f"backend {chosen} (auto: TensorRT not used: {reason})", ()


def cpu_candidates(precision: str) -> tuple[str, ...]:
    """The CPU backends that build ``precision`` on this machine: ONNX Runtime for fp32 and int8, OpenVINO where
    it is installed and the CPU executes the precision (``ov_support``)."""
    found = ("onnxruntime",) if precision in ("fp32", "int8") else ()
    if load_backend("openvino").unavailable_reason() is None:
        from rsz_export.backends import ov_support

        if ov_support.precision_problem(precision, *ov_support.cpu_facts()) is None:
            found += ("openvino",)
    return found
