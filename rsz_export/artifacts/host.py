"""What machine and library versions a run happened on, read without importing heavy modules."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

LIBRARIES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy", "click")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that affect results (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def gpu_info() -> dict:
    """GPU name, compute capability and driver when torch is already loaded and sees CUDA; else {}."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "cuda_runtime": torch.version.cuda,
        "driver": _driver_version(),
    }


def _driver_version() -> str | None:
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as handle:
            first = handle.readline()
    except OSError:
        return None
    parts = [p for p in first.split() if p[:1].isdigit() and "." in p]
    return parts[0] if parts else None


def host_info() -> dict:
    """CPU model, cores, memory, OS and (when visible) the GPU."""
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib(),
        **gpu_info(),
    }
