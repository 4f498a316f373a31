"""Facts a timing depends on, read at the edge: the machine and versions, memory high-water marks, and the
measured matrix-product peak that efficiency is judged against."""

from __future__ import annotations

import os
from collections.abc import Callable

from rsz_export.artifacts import host
from rsz_export.backends import load_backend
from rsz_export.bench.loop import cuda_timer, wall_timer
from rsz_export.bench.stats import gflops_per_s


def machine_info() -> dict:
    """The host (CPU model, cores, memory, GPU) plus the BLAS/OpenMP variables that could colour a timing."""
    blas = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    return {**host.host_info(), "cores_online": os.cpu_count(), "blas_env": blas}


def versions() -> dict:
    """Installed versions of everything that shapes a timing, and of rsz-export."""
    from rsz_export import __version__

    return {**host.library_versions(), "rsz-export": __version__}


def reset_peak_memory(device: str) -> None:
    """Restart the high-water marks: the process's peak RSS (Linux clear_refs) or CUDA's peak allocation."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")  # 5 = reset the peak RSS to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def memory_snapshot(device: str) -> dict:
    """Peak process RSS since the last reset and, on a GPU, peak device memory allocated through torch (which
    does not see TensorRT's own allocations: see ``Backend.engine_memory``)."""
    rss = None
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            rss = next((int(ln.split()[1]) / 1024 for ln in handle if ln.startswith("VmHWM:")), None)
    except OSError:
        pass
    device_mib = None
    if device == "cuda":
        import torch

        device_mib = torch.cuda.max_memory_allocated() / 2**20
    return {"peak_rss_mib": rss, "device_peak_mib": device_mib}


def peak_math(manifest, backend: str) -> str:
    """The arithmetic a backend's engines may use, which their efficiency is judged against
    (``Backend.peak_math``)."""
    return load_backend(backend).peak_math(manifest)


def matmul_peak_gflops(backend: str, threads: int, device: str, n: int = 2048, reps: int = 10, math="fp32") -> float:
    """The best [n,n]x[n,n] product rate of the runtime a backend uses (its own, ``Backend.matmul_peak``, else
    PyTorch's), with the same thread count; on CUDA in ``math`` (fp32 strict, tf32, fp16 or bf16: ``peak_math``)."""
    run = load_backend(backend).matmul_peak(n, threads, device) or _torch_matmul(n, threads, device, math)
    run()
    timer = cuda_timer(run) if device == "cuda" else wall_timer(run)
    best_ms = min(timer() for _ in range(reps))
    return gflops_per_s(2 * n**3, best_ms)


def _torch_matmul(n: int, threads: int, device: str, math: str = "fp32") -> Callable:
    import torch

    torch.set_num_threads(threads)
    dtype = torch.float32
    if device == "cuda":  # the peak of the arithmetic the engines use (``peak_math``)
        torch.backends.cuda.matmul.allow_tf32 = math == "tf32"
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(math, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return lambda: torch.mm(a, b)
