"""The CUDA side of the TensorRT backend, through torch: whether a GPU is usable, what it is, and the runner's
stream, device buffers and event timing (no pycuda, no cuda-python).

This is the only part of the TensorRT backend that needs a GPU to run. Everything else reaches it through
``trt_env.cuda()``, so the CPU tests put the test double's fake device memory in its place; keep it small.
"""

from __future__ import annotations


class TorchCuda:
    """One CUDA stream of the runner, device buffers as torch tensors, CUDA-event timing on that stream."""

    torch_device = "cuda"
    """Where torch-side measurements beside the engines run (bench's matmul peak and memory high-water marks)."""

    @staticmethod
    def problem() -> str | None:
        """None when torch sees a CUDA device, else why not."""
        try:
            import torch
        except ImportError as exc:
            return f"torch cannot be imported: {exc}"
        if not torch.cuda.is_available():
            return "torch sees no CUDA device; check the NVIDIA driver and that torch is a CUDA build"
        return None

    @staticmethod
    def facts() -> dict:
        """The current GPU: name, compute capability, driver, CUDA runtime, memory."""
        import torch

        from rsz_export.artifacts.host import driver_version

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return {
            "gpu_name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "driver": driver_version() or "unknown",
            "cuda_runtime": torch.version.cuda,
            "gpu_memory_mib": props.total_memory >> 20,
        }

    def __init__(self):
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.stream_handle = int(self.stream.cuda_stream)

    def to_device(self, array, dtype: str):
        """A contiguous device copy of a host array, as ``dtype``, queued on the runner's stream."""
        with self.torch.cuda.stream(self.stream):
            return self.torch.from_numpy(array).to("cuda", dtype=getattr(self.torch, dtype)).contiguous()

    def empty(self, shape, dtype: str):
        with self.torch.cuda.stream(self.stream):
            return self.torch.empty(tuple(shape), dtype=getattr(self.torch, dtype), device="cuda")

    @staticmethod
    def address(buffer) -> int:
        return int(buffer.data_ptr())

    def run_timed(self, run) -> tuple[object, float]:
        """``run()``'s result and the ms between CUDA events recorded on the runner's stream around it."""
        start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        start.record(self.stream)
        result = run()
        end.record(self.stream)
        self.stream.synchronize()
        return result, float(start.elapsed_time(end))

    @staticmethod
    def to_host(buffer):
        """A float32 host array of a device buffer (the runner synchronizes its stream first)."""
        return buffer.float().cpu().numpy()

    def synchronize(self) -> None:
        self.stream.synchronize()
