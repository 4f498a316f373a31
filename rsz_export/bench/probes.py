"""The effects bench's timing loops rely on: machine facts, memory readings, matmul peaks, runner variants."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rsz_export import benchreport, hostinfo
from rsz_export.backends import require_backend
from rsz_export.benchstats import gflops_per_s
from rsz_export.errors import UsageError
from rsz_export.manifest import EngineRecord, Manifest
from rsz_export.shapes import Resolution

if TYPE_CHECKING:
    from rsz_export.bench import BenchSpec

TORCH = "torch"


def wall_timer(run: Callable[[], object]) -> Callable[[], float]:
    """Times one call of ``run`` in ms by the wall clock (runners return host arrays, so calls are synchronous)."""

    def timed() -> float:
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) * 1000.0

    return timed


def cuda_timer(run: Callable[[], object]) -> Callable[[], float]:
    """Times one call with CUDA events after synchronising, so earlier queued GPU work is not counted."""
    import torch

    def timed() -> float:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    return timed


def machine_info() -> dict:
    """The host (CPU model, cores, memory, GPU) plus the BLAS/OpenMP variables that could colour a timing."""
    blas = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    return {**hostinfo.host_info(), "cores_online": os.cpu_count(), "blas_env": blas}


def versions() -> dict:
    """Installed versions of everything that shapes a timing, and of rsz-export."""
    from rsz_export import __version__

    return {**hostinfo.library_versions(), "rsz-export": __version__}


def run_header(spec: BenchSpec, manifest: Manifest, threads: int) -> dict:
    """What every row shares: date, machine, versions, threads, the plan and its profile boundaries."""
    from dataclasses import asdict
    from datetime import datetime, timezone

    return {
        "schema": benchreport.SCHEMA,
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "versions": versions(),
        "threads": threads,
        "engines_dir": str(spec.engines_dir),
        "weights": manifest.weights.id,
        "plan": manifest.plan.to_dict(),
        "profile_boundaries": [p.max.h for p in manifest.plan.profiles[:-1]],
        "policy": asdict(spec.policy),
        "peak_gflops": {},
    }


def row_context(header: dict) -> dict:
    """The provenance fields every row carries, so a row read alone still says where it came from."""
    return {k: header[k] for k in ("threads", "date_utc", "machine", "versions")}


def point_record(size, batch, backend, variant, device, engine, profile, previous) -> dict:
    """The coordinates of one measured point."""
    return {
        "size": str(size),
        "h": size.h,
        "w": size.w,
        "batch": batch,
        "backend": backend,
        "variant": variant,
        "device": device,
        "engine": engine.name if engine else None,
        "precision": engine.precision if engine else "fp32",
        "profile": profile,
        "previous_shape": f"{batch}x3x{previous}" if previous else None,
    }


def image_maker() -> Callable:
    """A cache of seeded float32 NCHW inputs, one per shape (so input creation is never timed)."""
    import numpy as np

    cache: dict = {}

    def images(batch: int, size: Resolution):
        key = (batch, size.h, size.w)
        if key not in cache:
            rng = np.random.default_rng(hash(key) & 0xFFFF)
            cache[key] = rng.standard_normal((batch, 3, size.h, size.w), dtype=np.float32)
        return cache[key]

    return images


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
    """Peak process RSS since the last reset and, on a GPU, peak device memory allocated through torch."""
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


def device_for(backend: str, manifest: Manifest) -> str:
    """Where a backend runs: TensorRT on CUDA; torch on CUDA beside TensorRT engines when a GPU is visible."""
    if backend == "tensorrt":
        return "cuda"
    if backend == "onnxruntime":
        on_gpu = any(e.settings.get("device", "cpu") != "cpu" for e in manifest.engines if e.backend == backend)
        return "cuda" if on_gpu else "cpu"
    import torch

    gpu_engines = any(e.backend == "tensorrt" for e in manifest.engines)
    return "cuda" if gpu_engines and torch.cuda.is_available() else "cpu"


def engine_for(manifest: Manifest, backend: str, profile: int | None) -> EngineRecord:
    """The backend's engine that carries plan profile ``profile`` (the first of the backend's if None)."""
    engines = [e for e in manifest.engines if e.backend == backend]
    for engine in engines:
        if profile is None or profile in engine.profiles:
            return engine
    raise UsageError(f"no {backend} engine carries plan profile {profile}; engines: {[e.name for e in engines]}")


def variants(backend: str, manifest: Manifest, engines_dir: str, threads: int, device: str) -> list:
    """(variant name, opener(engine) -> runner context) pairs for a backend: one per engine kind or torch mode."""
    if backend != TORCH:
        module = require_backend(backend)
        kwargs = {"threads": threads} if backend == "onnxruntime" else {}
        return [("dynamic", lambda engine: module.open_runner(manifest, engine, engines_dir, **kwargs))]
    import torch

    from rsz_export.backends.pyt import TorchRunner
    from rsz_export.model import reference_from_record

    torch.set_num_threads(threads)
    model = reference_from_record(manifest.weights, engines_dir)
    modes = [("eager-fp32", {})]
    if device == "cuda":
        modes += [("fp16-channels-last", {"half": True, "channels_last": True}), ("cuda-graphs", {"cuda_graphs": True})]
    # each mode gets its own copy: TorchRunner converts its module in place (half, channels-last)
    return [(name, lambda _e, kw=kw: TorchRunner(copy.deepcopy(model), device=device, **kw)) for name, kw in modes]


def matmul_peak_gflops(backend: str, threads: int, device: str, n: int = 2048, reps: int = 10) -> float:
    """The best FP32 [n,n]x[n,n] product rate of the runtime a backend uses, with the same thread count."""
    if backend == "onnxruntime" and device == "cpu":
        run = ort_matmul(n, threads)
    else:
        run = _torch_matmul(n, threads, device)
    run()
    timer = cuda_timer(run) if device == "cuda" else wall_timer(run)
    best_ms = min(timer() for _ in range(reps))
    return gflops_per_s(2 * n**3, best_ms)


def ort_matmul(n: int, threads: int) -> Callable:
    """A call running one FP32 [n,n]x[n,n] MatMul model (built with onnx.helper) on ONNX Runtime's CPU provider."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul_peak",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.standard_normal((n, n), dtype=np.float32)}
    return lambda: session.run(None, feed)


def _torch_matmul(n: int, threads: int, device: str) -> Callable:
    import torch

    torch.set_num_threads(threads)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # FP32 peak, as the FP32 engines are judged against
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return lambda: torch.mm(a, b)
