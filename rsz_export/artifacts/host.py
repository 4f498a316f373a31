"""What machine and library versions a run happened on, read without importing heavy modules: CPU, cores,
memory, GPU and NVIDIA driver."""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata

LIBRARIES = (
    "torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxconverter-common", "tensorrt", "numpy",
    "pillow", "click", "openvino",
)


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


CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
             "amx_fp16", "avx512_fp16")
"""The /proc/cpuinfo flags that decide which kernels ONNX Runtime, PyTorch and OpenVINO can use on a CPU."""


def parse_cpu_flags(cpuinfo: str) -> list[str]:
    """Which of CPU_FLAGS the first ``flags`` line of a /proc/cpuinfo text names, in CPU_FLAGS' order."""
    found = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M)
    present = set(found.group(1).split()) if found else set()
    return [flag for flag in CPU_FLAGS if flag in present]


def cpu_flags() -> list[str]:
    """Which of CPU_FLAGS this CPU has (from /proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return parse_cpu_flags(handle.read())
    except OSError:
        return []


MAX_THREADS = 256
"""The most CPU threads any setting accepts."""


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one): the default thread count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


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
        "driver": driver_version(),
    }


def parse_driver_version(text: str) -> str | None:
    """The driver version in ``/proc/driver/nvidia/version`` or ``nvidia-smi --query-gpu=driver_version`` output."""
    match = re.search(r"Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)*)", text) or re.search(
        r"^\s*(\d+\.\d+(?:\.\d+)?)\s*$", text, re.M
    )
    return match.group(1) if match else None


def driver_version() -> str | None:
    """The NVIDIA driver's version from /proc, else from nvidia-smi; None without an NVIDIA driver."""
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as handle:
            return parse_driver_version(handle.read())
    except OSError:
        pass
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_driver_version(out)


def host_info() -> dict:
    """CPU model, cores, memory, OS and (when visible) the GPU."""
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": usable_cpus(),
        "memory_gib": memory_gib(),
        **gpu_info(),
    }


def provenance() -> dict:
    """When, where and with which libraries a result was measured: the record every benchmark result carries."""
    import datetime as dt

    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host_info(),
        "versions": library_versions(),
    }
