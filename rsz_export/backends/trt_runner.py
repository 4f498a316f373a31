"""Running TensorRT engines: one execution context per plan profile, device buffers and timing on the runner's
own CUDA stream (``trt_env.cuda()``: torch on a GPU)."""

from __future__ import annotations

from pathlib import Path

from rsz_export.artifacts.manifest import EngineRecord, Manifest, verified_bytes
from rsz_export.backends import trt_env
from rsz_export.backends import trt_support as ts
from rsz_export.backends.base import Runner
from rsz_export.backends.trt_env import NAME, check_compatible, deserialize, import_trt, logged, make_logger
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError

FREE_MEMORY_HINT = "free GPU memory (other processes or engines), serve fewer profiles, or use fewer workers"


class TrtRunner(Runner):
    """Runs TensorRT engines: one execution context per plan profile, pinned to it once, on the runner's stream.

    Several engines (``--engine-per-profile``) are routed exactly like one engine with every profile.
    """

    name = NAME

    def __init__(self, manifest: Manifest, engines: tuple[EngineRecord, ...], out_dir):
        super().__init__(manifest.plan, sorted({i for r in engines for i in r.profiles}))
        self.manifest, self.records, self.out_dir = manifest, tuple(engines), Path(out_dir)
        self.last_latency_ms: float | None = None
        """GPU time of the last ``execute_async_v3`` (CUDA events on the runner's stream around it)."""
        self._slots: dict = {}
        self._keep: list = []

    def __enter__(self) -> TrtRunner:
        blobs = [verified_bytes(self.out_dir, r.file) for r in self.records]  # the checked bytes are the ones loaded
        for record in self.records:
            if problem := check_compatible(self.manifest, record):
                raise EnvironmentProblem(f"engine {record.name}: {problem}")
        trt = import_trt()
        self._logger = make_logger(trt, lambda _msg: None)
        self._device = trt_env.cuda()()
        try:
            for record, blob in zip(self.records, blobs, strict=True):
                self._load(trt, record, blob, self.out_dir / record.file.file)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._device.synchronize()
        return self

    def _load(self, trt, record: EngineRecord, blob: bytes, path: Path) -> None:
        trt_runtime, cuda_engine = deserialize(
            trt, self._logger, blob, bool(record.settings.get("version_compat")), path
        )
        if cuda_engine.num_optimization_profiles != len(record.profiles):
            raise IntegrityError(
                f"{path} has {cuda_engine.num_optimization_profiles} optimization profile(s) and its manifest "
                f"lists {len(record.profiles)}",
                hint="rebuild it: rsz-export build --force",
            )
        io = _io_tensors(trt, cuda_engine, self.manifest.output_names)
        _check_profiles(cuda_engine, ts.trt_profile_shapes(self.manifest.plan, record.profiles, io[0][0]), path)
        self._keep.append((trt_runtime, cuda_engine))
        for k, plan_index in enumerate(record.profiles):
            self._slots[plan_index] = (self._context(trt, cuda_engine, k, path), io)

    def _context(self, trt, cuda_engine, k: int, path: Path):
        """An execution context pinned to engine profile ``k``, holding only that profile's activation memory."""
        exec_context = cuda_engine.create_execution_context(trt.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE)
        if exec_context is None:  # NvInferRuntime.h createExecutionContext: nullptr when memory cannot be allocated
            mib = cuda_engine.get_device_memory_size_for_profile_v2(k) / 2**20
            raise EnvironmentProblem(
                f"TensorRT could not create an execution context for {path.name} profile {k} ({mib:.0f} MiB of "
                f"GPU memory): {logged(self._logger, 2)}",
                hint=FREE_MEMORY_HINT,
            )
        try:
            exec_context.set_optimization_profile_async(k, self._device.stream_handle)
        except RuntimeError:  # the binding raises where the C++ API returns false (pyCore.cpp)
            raise EnvironmentProblem(
                f"TensorRT refused profile {k} of {path.name}: {logged(self._logger, 2)}", hint=FREE_MEMORY_HINT
            ) from None
        return exec_context

    def __exit__(self, *exc) -> None:
        self._slots.clear()
        self._keep.clear()

    def _run(self, images, plan_index: int | None):
        return self._run_all(images, plan_index)[0]

    def _run_all(self, images, plan_index: int | None) -> list:
        """Every output of the engine (one for logits, one per feature map of a backbone), each bound to a buffer
        of the shape the context gives it for this input."""
        import numpy as np

        images = np.ascontiguousarray(images)
        exec_context, ((in_name, in_dtype), outputs) = self._slots[plan_index]
        if not exec_context.set_input_shape(in_name, tuple(images.shape)):
            raise UsageError(f"TensorRT refused input shape {images.shape} for profile {plan_index}")
        device = self._device
        shapes = [tuple(exec_context.get_tensor_shape(name)) for name, _ in outputs]
        for (out_name, _), out_shape in zip(outputs, shapes, strict=True):
            if any(d < 0 for d in out_shape):  # NvInferRuntime.h getTensorShape: -1 only for data-dependent outputs
                raise IntegrityError(
                    f"TensorRT gives no concrete shape for {out_name} ({out_shape}) at input {images.shape}: not "
                    "an engine rsz-export builds", hint="rebuild it: rsz-export build --force",
                )
        try:
            x = device.to_device(images, in_dtype)
            ys = [device.empty(shape, dtype) for (_, dtype), shape in zip(outputs, shapes, strict=True)]
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError and other CUDA errors are RuntimeErrors
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise EnvironmentProblem(f"no GPU memory for {images.shape}: {first}", hint=FREE_MEMORY_HINT) from None
        for name, buffer in ((in_name, x), *zip((n for n, _ in outputs), ys, strict=True)):
            if not exec_context.set_tensor_address(name, device.address(buffer)):  # unknown name, misaligned
                raise EnvironmentProblem(f"TensorRT refused the device buffer of {name}: {logged(self._logger, 1)}")
        ok, latency_ms = device.run_timed(lambda: exec_context.execute_async_v3(device.stream_handle))
        if not ok:
            raise EnvironmentProblem(f"TensorRT failed to run {images.shape}: {logged(self._logger)}")
        self.last_latency_ms = latency_ms
        device.synchronize()  # enqueueV3 is asynchronous: the outputs are valid once the stream has run
        return [device.to_host(y) for y in ys]


def _io_tensors(trt, cuda_engine, names) -> tuple:
    """((input name, torch dtype), [(output name, torch dtype), ...]) of an rsz-export engine: one input, and the
    outputs the manifest names (``logits``, or a backbone's feature maps), in that order."""
    io = {"in": [], "out": []}
    for i in range(cuda_engine.num_io_tensors):
        name = cuda_engine.get_tensor_name(i)
        kind = "in" if cuda_engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "out"
        io[kind].append((name, ts.torch_dtype_name(str(cuda_engine.get_tensor_dtype(name)))))
    if len(io["in"]) != 1 or [name for name, _ in io["out"]] != list(names):
        raise IntegrityError(f"engine IO {io} is not one input and the outputs {list(names)} the manifest names, "
                             "as rsz-export builds them")
    return io["in"][0], io["out"]


def _check_profiles(cuda_engine, expected, path: Path) -> None:
    """IntegrityError (exit 4) at load when an engine profile's [min, opt, max] differ from the manifest's plan
    (an engine swapped in from another build), instead of a refused shape at the first call."""
    for k, (name, lo, opt, hi) in enumerate(expected):
        got = [tuple(d) for d in cuda_engine.get_tensor_profile_shape(name, k)]  # an input: valid Dims on 10 and 11
        if got != [tuple(lo), tuple(opt), tuple(hi)]:
            raise IntegrityError(
                f"{path} profile {k} covers {got[0]}..{got[2]} (opt {got[1]}) and the manifest's plan says "
                f"{tuple(lo)}..{tuple(hi)} (opt {tuple(opt)})", hint="rebuild it: rsz-export build --force",
            )
