"""Facts a timing depends on, read at the edge: the machine and versions, memory high-water marks, and the
measured matrix-product peak that efficiency is judged against."""

from __future__ import annotations

import os
from collections.abc import Callable

from rsz_export.artifacts import host
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
    does not see TensorRT's own allocations: see ``rows.engine_memory``)."""
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
    """The arithmetic a backend's engines may use, which their efficiency is judged against: TensorRT fp32
    engines built with TF32 allowed (TensorRT's default, NvInfer.h ``BuilderFlag::kTF32``) use TF32 tensor
    cores, fp16/bf16 engines half types; PyTorch and ONNX Runtime runners compute in fp32."""
    if backend != "tensorrt":
        return "fp32"
    engines = [e for e in manifest.engines if e.backend == backend]
    if manifest.precision in ("fp32", "tf32"):
        return "tf32" if any(e.settings.get("tf32", True) for e in engines) else "fp32"
    return manifest.precision


def matmul_peak_gflops(backend: str, threads: int, device: str, n: int = 2048, reps: int = 10, math="fp32") -> float:
    """The best [n,n]x[n,n] product rate of the runtime a backend uses, with the same thread count; on CUDA in
    ``math`` (fp32 strict, tf32, fp16 or bf16: see ``peak_math``)."""
    if backend == "onnxruntime" and device == "cpu":
        run = ort_matmul(n, threads)
    elif backend == "openvino":
        from rsz_export.backends.openvino import matmul_call

        run = matmul_call(n, threads)
    else:
        run = _torch_matmul(n, threads, device, math)
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
