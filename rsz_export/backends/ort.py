"""ONNX Runtime backend: the embedded default, on any CPU (and on GPUs with onnxruntime-gpu).

What an ORT "engine" is: the exported model with ORT's portable graph optimizations applied offline
(ORT_ENABLE_EXTENDED on the CPU: constant folding, Conv+BN+ReLU fusion, ...) and saved, plus the session
settings that reproduce its measured speed. The hardware-specific layout pass (NCHWc, part of ORT_ENABLE_ALL)
is applied when the session opens, so the saved file stays portable across CPUs and the speed matches an
online ORT_ENABLE_ALL session (measured: benchmarks/). Engines for the CUDA and TensorRT providers are
optimised offline at ORT_ENABLE_BASIC only: the EXTENDED fusions write CPU-only ``com.microsoft`` operators
(FusedConv) that TensorRT's parser cannot import and that would run on the CPU.

What is profile-specific: nothing on the CPU and CUDA providers, which run any shape with the same kernels,
so one session serves every planned profile; the runner still routes each input with the plan's rule, so an
input outside the built range is refused the same way as on TensorRT. The TensorRT provider keeps its
execution context on its first profile (onnxruntime PR #31624), so the runner opens one session per plan
profile, each given that profile alone (``ort_providers``). GPU sessions refuse to fall back to the CPU and
are checked to have the provider they asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rsz_export.artifacts.files import atomic_path
from rsz_export.artifacts.host import usable_cpus
from rsz_export.artifacts.manifest import EngineRecord, Manifest, file_record, verified_bytes
from rsz_export.backends.base import Backend, BuildOptions, Runner, RunnerOptions, TritonModel
from rsz_export.errors import IntegrityError, UsageError
from rsz_export.interface import INPUT_NAME, Log
from rsz_export.plan.profiles import Plan
from rsz_export.shapes import InputShape

NAME = "onnxruntime"
SUPPORTED_PRECISIONS = ("fp32", "fp16", "int8")
"""What some provider of it builds; ``check_precision`` says which device takes which."""
ENGINE_FILE = "resnet50.ort.onnx"
QDQ_FILE = "model.int8-cpu.onnx"
OFFLINE_LEVEL = "ORT_ENABLE_EXTENDED"
GPU_OFFLINE_LEVEL = "ORT_ENABLE_BASIC"
SESSION_LEVEL = "ORT_ENABLE_ALL"
EXECUTION_MODES = {"ORT_SEQUENTIAL": "0", "ORT_PARALLEL": "1"}
"""Session execution modes under the numbers Triton's onnxruntime backend reads."""


def unavailable_reason() -> str | None:
    """None when onnxruntime imports, else what to install."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu for CUDA)"
    return None


def offline_level(device: str) -> str:
    """The offline optimisation of an engine for ``device``: un-fused standard operators for the GPU providers."""
    return OFFLINE_LEVEL if device == "cpu" else GPU_OFFLINE_LEVEL


DEVICE_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32",), "tensorrt": ("fp32", "fp16")}
"""What each provider builds: fp16 only on the TensorRT provider (``trt_fp16_enable``), int8 on the CPU (a Q/DQ
model). The CUDA provider computes in the model's own types and the engine is the fp32 model, so "fp16" there
would run fp32."""


def check_precision(options: BuildOptions) -> None:
    """UsageError when ``options.device``'s provider does not build ``options.precision`` (DEVICE_PRECISIONS),
    naming the device or backend that does."""
    allowed = DEVICE_PRECISIONS.get(options.device, ("fp32",))
    if options.precision not in allowed:
        from rsz_export.backends import precision_fix

        elsewhere = [device for device, built in DEVICE_PRECISIONS.items()
                     if device != options.device and options.precision in built]
        hint = precision_fix(options.precision, NAME)
        if elsewhere:
            hint += f"; on ONNX Runtime, {options.precision} builds with --device {elsewhere[0]}"
        raise UsageError(
            f"precision {options.precision} is not available on backend {NAME} with --device {options.device}; "
            f"allowed: {', '.join(allowed)}",
            hint=hint,
        )


def session_settings(options: BuildOptions) -> dict:
    """The session settings recorded in the manifest and used by every runner of this engine."""
    return {
        "device": options.device,
        "graph_optimization_level": SESSION_LEVEL,
        "offline_optimization_level": offline_level(options.device),
        "intra_op_num_threads": options.threads or usable_cpus(),
        "inter_op_num_threads": 1,
        "execution_mode": "ORT_SEQUENTIAL",
        "profile_specific": False,
        # The TensorRT provider's fp32 is TensorRT's default, TF32 on: it has no option to turn it off
        # (tensorrt_execution_provider_info.cc lists none), so the engine is recorded as using TF32.
        **({"tf32": options.precision == "fp32", "workspace_mib": options.workspace_mib}
           if options.device == "tensorrt" else {}),
    }


def _session_options(settings: dict, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings["graph_optimization_level"])
    so.intra_op_num_threads = int(threads or settings["intra_op_num_threads"])
    so.inter_op_num_threads = int(settings.get("inter_op_num_threads", 1))
    so.execution_mode = getattr(ort.ExecutionMode, settings.get("execution_mode", "ORT_SEQUENTIAL"))
    so.log_severity_level = 3
    return so


def _providers(engine: EngineRecord, plan: Plan, out_dir: Path, profile: int | None, pinned=None) -> list:
    settings = engine.settings
    if settings.get("device", "cpu") == "cpu":
        return ["CPUExecutionProvider"]
    from rsz_export.backends import ort_providers as op

    cache = None
    if settings["device"] == "tensorrt":
        tag = f"p{profile}" if pinned is None else f"static-{pinned.batch}x{pinned.h}x{pinned.w}"
        cache = op.make_cache_dir(op.trt_cache_dir(out_dir, engine.file.sha256, tag))
    return op.providers_for(settings["device"], plan, cache, engine.precision, profile=profile,
                            workspace_mib=settings.get("workspace_mib"))


def build_engines(onnx_path: Path, plan: Plan, options: BuildOptions, out_dir: Path, log: Log) -> list[EngineRecord]:
    """Optimise the ONNX offline and save it as the single engine that carries every profile."""
    import onnxruntime as ort

    check_precision(options)
    started = time.perf_counter()
    target = Path(out_dir) / ENGINE_FILE
    level = offline_level(options.device)
    extra, facts = (), {}
    if options.precision == "int8":
        from rsz_export.model.quantization import checked_qdq, cpu_qdq

        onnx_path, facts = checked_qdq(onnx_path, options.calibration, cpu_qdq(), plan, Path(out_dir) / QDQ_FILE,
                                       options.threads, log)
        extra = (file_record(out_dir, onnx_path),)
    with atomic_path(target) as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        so.optimized_model_filepath = str(tmp)
        so.log_severity_level = 3
        log(f"optimising the graph offline with ONNX Runtime {ort.__version__} ({level})")
        _load_session(ort, str(onnx_path), so, ["CPUExecutionProvider"], onnx_path)
    record = EngineRecord(
        name="ort" if options.precision == "fp32" else f"ort-{options.precision}",
        backend=NAME,
        precision=options.precision,
        file=file_record(out_dir, target),
        profiles=tuple(range(len(plan.profiles))),
        build_seconds=round(time.perf_counter() - started, 3),
        settings={**session_settings(options), "onnxruntime_version": ort.__version__, **facts},
        extra_files=extra,
    )
    return [record]


def check_compatible(manifest: Manifest, engine: EngineRecord) -> str | None:
    """ORT engines are portable but for a missing provider and 8-bit int8 weights without VNNI (see quantization)."""
    device = engine.settings.get("device", "cpu")
    if device == "cpu":
        from rsz_export.model.quantization import cpu_int8_problem

        return cpu_int8_problem(engine)
    from rsz_export.backends.ort_providers import missing_provider

    return missing_provider(device)


def _load_session(ort, model, so, providers, path):
    """An InferenceSession; ONNX Runtime's own load errors (a model it cannot run) become an IntegrityError."""
    try:
        return ort.InferenceSession(model, so, providers=providers)
    except Exception as exc:  # onnxruntime's Fail, InvalidGraph, InvalidProtobuf... derive from Exception itself
        if not (type(exc).__module__.startswith("onnxruntime") or isinstance(exc, RuntimeError | ValueError)):
            raise
        first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
        raise IntegrityError(
            f"ONNX Runtime cannot load {path}: {first}",
            hint="rebuild from an ONNX exported by rsz-export: rsz-export build --force",
        ) from None


class OrtRunner(Runner):
    """A Runner over an ORT engine; ``pinned`` fixes batch/height/width (the static-shape comparison)."""

    def __init__(
        self, manifest: Manifest, engine: EngineRecord, out_dir: Path, threads: int | None = None,
        pinned: InputShape | None = None,
    ):
        super().__init__(manifest.plan, engine.profiles)
        self.manifest, self.engine, self.out_dir = manifest, engine, Path(out_dir)
        self.threads, self.pinned = threads, pinned
        self.name = f"{NAME}:{engine.name}"
        self.device = engine.settings.get("device", "cpu")
        self.session = None
        self._sessions: dict = {}

    @property
    def thread_safe(self) -> bool:
        """ONNX Runtime's ``InferenceSession.run`` may be called concurrently; on the CPU each runner holds one
        session (the TensorRT provider opens one per profile lazily, which is not guarded)."""
        return self.device == "cpu"

    def __enter__(self) -> OrtRunner:
        self._model = verified_bytes(self.out_dir, self.engine.file)  # the checked bytes are the ones loaded
        self.session = None if self.device == "tensorrt" else self._open(None)  # TensorRT: per profile, lazily
        return self

    def _open(self, profile: int | None):
        import onnxruntime as ort

        so = _session_options(self.engine.settings, self.threads)
        if self.pinned is not None:
            for dim, value in zip(("batch", "height", "width"), (self.pinned.batch, self.pinned.h, self.pinned.w)):
                so.add_free_dimension_override_by_name(dim, value)
        providers = _providers(self.engine, self.manifest.plan, self.out_dir, profile, self.pinned)
        path = self.out_dir / self.engine.file.file
        if self.device == "cpu":
            return _load_session(ort, self._model, so, providers, path)
        from rsz_export.backends.ort_providers import gpu_session

        return gpu_session(lambda: _load_session(ort, self._model, so, providers, path), so, self.device, path)

    def __exit__(self, *exc) -> None:
        self.session = None
        self._sessions.clear()

    def _run(self, images, profile: int | None):
        return self._run_all(images, profile)[0]

    def _run_all(self, images, profile: int | None) -> list:
        if self.session is not None:
            return self.session.run(None, {INPUT_NAME: images})
        if profile not in self._sessions:
            self._sessions[profile] = self._open(profile)
        return self._sessions[profile].run(None, {INPUT_NAME: images})


def open_runner(
    manifest: Manifest, engine: EngineRecord, out_dir: Path, threads: int | None = None,
    pinned: InputShape | None = None,
) -> OrtRunner:
    return OrtRunner(manifest, engine, out_dir, threads=threads, pinned=pinned)


def cpu_matmul(n: int, threads: int) -> Callable:
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


class OnnxRuntime(Backend):
    """ONNX Runtime: engines for its CPU provider (fp32, int8) and its CUDA and TensorRT providers (fp32; fp16 on
    TensorRT's), installed with the package (``onnxruntime-gpu`` for the GPU providers)."""

    name = NAME
    precisions = SUPPORTED_PRECISIONS
    shares_graph = True

    def unavailable_reason(self) -> str | None:
        return unavailable_reason()

    def check_compatible(self, manifest: Manifest, engine: EngineRecord | None) -> str | None:
        return check_compatible(manifest, engine)

    def open_runner(self, manifest, engine, out_dir, options: RunnerOptions | None = None) -> OrtRunner:
        """Uses ``threads`` (intra-op threads, else the engine's) and ``pinned`` (free dimensions fixed)."""
        from rsz_export.model.quantization import refuse_int8_without_vnni

        options = options or RunnerOptions()
        refuse_int8_without_vnni(engine)
        return open_runner(manifest, engine, out_dir, threads=options.threads, pinned=options.pinned)

    def open_onnx_file(self, manifest: Manifest, directory: Path) -> OrtRunner:
        """The CPU provider on the build's exported ONNX itself, default session settings, every size served."""
        settings = session_settings(BuildOptions())
        record = EngineRecord("onnx", NAME, "fp32", manifest.onnx, profiles=(), build_seconds=0.0, settings=settings)
        return open_runner(manifest, record, directory)

    def engine_device(self, engine: EngineRecord) -> str:
        return "cpu" if engine.settings.get("device", "cpu") == "cpu" else "cuda"

    def check_options(self, options: BuildOptions) -> None:
        super().check_options(options)
        check_precision(options)

    def build_engines(self, onnx_path, plan, options, out_dir, log) -> list[EngineRecord]:
        return build_engines(onnx_path, plan, options, out_dir, log)

    def recorded_options(self, engine: EngineRecord) -> BuildOptions:
        settings = engine.settings
        device, threads = settings.get("device", "cpu"), settings.get("intra_op_num_threads")
        return BuildOptions(precision=engine.precision, device=device, threads=threads)

    def keeps_state_per_profile(self, engine: EngineRecord | None) -> bool:
        """The TensorRT provider's runner opens one session per profile (module docstring)."""
        return engine is not None and engine.settings.get("device") == "tensorrt"

    def matmul_peak(self, n: int, threads: int, device: str):
        return cpu_matmul(n, threads) if device == "cpu" else None

    def triton_model(self, manifest: Manifest, engine: EngineRecord) -> TritonModel:
        """Triton's onnxruntime backend loads the ONNX the engine was optimised from (the export, or for int8 the
        engine's Q/DQ model) with the manifest's session threads."""
        settings = engine.settings
        parameters = (
            ("intra_op_thread_count", str(int(settings.get("intra_op_num_threads", 0)))),
            ("inter_op_thread_count", str(int(settings.get("inter_op_num_threads", 1)))),
            ("execution_mode", EXECUTION_MODES.get(settings.get("execution_mode", "ORT_SEQUENTIAL"), "0")),
        )
        kind = "KIND_CPU" if self.engine_device(engine) == "cpu" else "KIND_GPU"
        served = _served_onnx(manifest, engine)
        return TritonModel("onnxruntime_onnx", NAME, kind, served, "model.onnx", False, parameters=parameters)


def _served_onnx(manifest: Manifest, engine: EngineRecord):
    """The ONNX an engine was optimised from: the export, or for int8 the engine's Q/DQ model."""
    if engine.precision != "int8":
        return manifest.onnx
    for record in engine.extra_files:
        if record.file.endswith(QDQ_FILE):
            return record
    raise IntegrityError(
        f"the int8 engine {engine.name} lists no {QDQ_FILE}: the build is incomplete",
        hint="rebuild it: rsz-export build DIR --precision int8 ... --force",
    )
