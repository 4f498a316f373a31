"""Running TensorRT engines: one execution context per plan profile, torch CUDA buffers, CUDA-event timing."""

from __future__ import annotations

from pathlib import Path

from rsz_export.artifacts.manifest import EngineRecord, Manifest, verified_bytes
from rsz_export.backends import trt_support as ts
from rsz_export.backends.base import Runner
from rsz_export.backends.trt_env import NAME, check_compatible, import_trt, make_logger
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError


class TrtRunner(Runner):
    """Runs TensorRT engines: one execution context per plan profile, torch CUDA buffers, CUDA-event timing.

    Several engines (``--engine-per-profile``) are routed exactly like one engine with every profile.
    """

    name = NAME

    def __init__(self, manifest: Manifest, engines: tuple[EngineRecord, ...], out_dir):
        super().__init__(manifest.plan, sorted({i for r in engines for i in r.profiles}))
        self.manifest, self.records, self.out_dir = manifest, tuple(engines), Path(out_dir)
        self.last_latency_ms: float | None = None
        self._slots: dict = {}
        self._keep: list = []

    def __enter__(self) -> TrtRunner:
        import torch

        blobs = [verified_bytes(self.out_dir, r.file) for r in self.records]  # the checked bytes are the ones loaded
        for record in self.records:
            if problem := check_compatible(self.manifest, record):
                raise EnvironmentProblem(f"engine {record.name}: {problem}")
        trt = import_trt()
        self._torch, self._logger = torch, make_logger(trt, lambda _msg: None)
        self._stream = torch.cuda.Stream()
        for record, blob in zip(self.records, blobs, strict=True):
            self._load(trt, record, blob, self.out_dir / record.file.file)
        self._stream.synchronize()
        return self

    def _load(self, trt, record: EngineRecord, blob: bytes, path: Path) -> None:
        trt_runtime = trt.Runtime(self._logger)
        if record.settings.get("version_compat"):
            trt_runtime.engine_host_code_allowed = True  # a version-compatible plan embeds its lean runtime
        cuda_engine = trt_runtime.deserialize_cuda_engine(blob)
        if cuda_engine is None:
            raise IntegrityError(f"TensorRT could not deserialize {path}: " + "; ".join(self._logger.errors[-3:]))
        io = _io_tensors(trt, cuda_engine)
        self._keep.append((trt_runtime, cuda_engine))
        for k, plan_index in enumerate(record.profiles):
            exec_context = cuda_engine.create_execution_context(
                trt.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE
            )
            exec_context.set_optimization_profile_async(k, self._stream.cuda_stream)
            self._slots[plan_index] = (exec_context, io)

    def __exit__(self, *exc) -> None:
        self._slots.clear()
        self._keep.clear()

    def _run(self, images, plan_index: int | None):
        import numpy as np

        torch = self._torch
        images = np.ascontiguousarray(images)
        exec_context, ((in_name, in_dtype), (out_name, out_dtype)) = self._slots[plan_index]
        if not exec_context.set_input_shape(in_name, tuple(images.shape)):
            raise UsageError(f"TensorRT refused input shape {images.shape} for profile {plan_index}")
        out_shape = tuple(exec_context.get_tensor_shape(out_name))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(images).to("cuda", dtype=getattr(torch, in_dtype)).contiguous()
            y = torch.empty(out_shape, dtype=getattr(torch, out_dtype), device="cuda")
            exec_context.set_tensor_address(in_name, x.data_ptr())
            exec_context.set_tensor_address(out_name, y.data_ptr())
            start.record(self._stream)
            ok = exec_context.execute_async_v3(self._stream.cuda_stream)
            end.record(self._stream)
        self._stream.synchronize()
        if not ok:
            raise EnvironmentProblem(f"TensorRT failed to run {images.shape}: " + "; ".join(self._logger.errors[-3:]))
        self.last_latency_ms = start.elapsed_time(end)
        return y.float().cpu().numpy()


def _io_tensors(trt, cuda_engine) -> tuple:
    """((input name, torch dtype), (output name, torch dtype)) of an rsz-export engine."""
    io = {"in": [], "out": []}
    for i in range(cuda_engine.num_io_tensors):
        name = cuda_engine.get_tensor_name(i)
        kind = "in" if cuda_engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "out"
        io[kind].append((name, ts.torch_dtype_name(str(cuda_engine.get_tensor_dtype(name)))))
    if len(io["in"]) != 1 or len(io["out"]) != 1:
        raise IntegrityError(f"engine IO {io} is not one input and one output as rsz-export builds them")
    return io["in"][0], io["out"][0]


