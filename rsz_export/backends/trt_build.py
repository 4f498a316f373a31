"""TensorRT backend (10.1+ and 11.x): engines with one optimization profile per planned profile, and a runner.

The only module that imports ``tensorrt``, and only inside functions. Code that differs between the API
generations lives in functions suffixed ``_v10`` / ``_v11`` and is reached only through the ``{10: ..., 11: ...}``
dispatch dicts; tests/test_trt_api_surface.py checks every ``trt.`` name on each path against the published
10.x and 11.x API surfaces. TensorRT objects always go by the same local names (``builder``, ``network``,
``builder_config``, ``onnx_parser``, ``trt_profile``, ``trt_runtime``, ``cuda_engine``, ``exec_context``,
``inspector``, ``timing_cache``, ``parser_error``) so that test can check their members too.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from rsz_export.backends import trt_plan as tp
from rsz_export.backends.base import BuildOptions, Log
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.fileio import atomic_write_bytes, atomic_write_text
from rsz_export.manifest import EngineRecord, Manifest, file_record, verified_bytes
from rsz_export.planning import Plan

NAME = "tensorrt"
PRECISIONS = tp.PRECISIONS


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EnvironmentProblem(f"TensorRT is not installed ({exc})", hint=tp.INSTALL_HINT) from None
    return trt


def _cuda_error() -> str | None:
    try:
        import torch
    except ImportError as exc:
        return f"torch cannot be imported: {exc}"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device; check the NVIDIA driver and that torch is a CUDA build"
    return None


def unavailable_reason() -> str | None:
    """None when TensorRT imports, is a supported version and torch sees a CUDA GPU; else why and what to do."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return tp.unavailable_message(str(exc) or type(exc).__name__, None, None)
    return tp.unavailable_message(None, str(trt.__version__), _cuda_error())


def _driver_version() -> str:
    import subprocess

    try:
        return tp.parse_driver_version(Path("/proc/driver/nvidia/version").read_text()) or "unknown"
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return tp.parse_driver_version(out) or "unknown"


def installed() -> dict:
    """TensorRT version and GPU facts of this machine (what ``check_compatible`` compares against)."""
    import torch

    trt = _import_trt()
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "tensorrt_version": str(trt.__version__),
        "gpu_name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "driver": _driver_version(),
        "cuda_runtime": torch.version.cuda,
        "gpu_memory_mib": props.total_memory >> 20,
    }


def _make_logger(trt, log: Log):
    class _Logger(trt.ILogger):
        """Forwards warnings and errors to ``log``; keeps errors for the failure message."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if int(severity) <= int(trt.ILogger.ERROR):
                self.errors.append(str(msg))
            if int(severity) <= int(trt.ILogger.WARNING):
                log(f"tensorrt: {msg}")

    return _Logger()


def _set_precision_v10(trt, builder_config, precision: str) -> None:
    # 10.x networks are weakly typed (created with flags 0): the builder may pick these types per layer.
    if precision == "fp16":
        builder_config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        builder_config.set_flag(trt.BuilderFlag.BF16)


def _set_precision_v11(trt, builder_config, precision: str) -> None:
    # 11.x networks are always strongly typed: the types come from the (reduced-precision) ONNX itself.
    return None


_SET_PRECISION = {10: _set_precision_v10, 11: _set_precision_v11}


def _network_source(onnx_path: Path, precision: str, major: int, out_dir: Path, log: Log) -> tuple[Path, dict]:
    """The ONNX file TensorRT parses, and what the manifest records about it."""
    if tp.precision_path(major, precision) != "reduced-precision-onnx":
        return onnx_path, {}
    from rsz_export.precision import check_reduced_precision, reduced_precision_onnx

    reduced = reduced_precision_onnx(onnx_path, out_dir / f"model.{precision}.onnx", precision)
    stats = check_reduced_precision(reduced, onnx_path, sizes=None)
    log(f"{reduced.name}: checked on the CPU against the fp32 ONNX: {stats.summary()}")
    stats.raise_if_failed()
    return reduced, {"reduced_onnx": file_record(out_dir, reduced), "reduced_check": stats.to_dict()}


def _parse_onnx(trt, builder, logger, source: Path):
    network = builder.create_network(0)
    onnx_parser = trt.OnnxParser(network, logger)
    if not onnx_parser.parse_from_file(str(source)):
        errors = []
        for i in range(onnx_parser.num_errors):
            parser_error = onnx_parser.get_error(i)
            errors.append(
                tp.ParserErrorInfo(
                    str(parser_error.code()),
                    str(parser_error.desc()),
                    int(parser_error.node()),
                    str(parser_error.node_name()),
                    str(parser_error.node_operator()),
                )
            )
        raise IntegrityError(
            tp.format_parser_errors(str(source), errors), hint="re-export the ONNX: rsz-export build --force"
        )
    return network, onnx_parser


def _hardware_level(trt, name: str):
    if name == "ampere+":
        return trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if name == "same-compute-capability":
        return trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    return trt.HardwareCompatibilityLevel.NONE


def _builder_config(trt, builder, options: BuildOptions, timing_cache):
    builder_config = builder.create_builder_config()
    if options.workspace_mib:
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    builder_config.builder_optimization_level = options.opt_level
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if not builder_config.set_timing_cache(timing_cache, False):
        raise EnvironmentProblem(
            "the timing cache was made on another GPU or TensorRT version",
            hint="delete it, or pass --timing-cache with a new path",
        )
    if not options.tf32:
        builder_config.clear_flag(trt.BuilderFlag.TF32)
    if options.hardware_compat and options.hardware_compat != "none":
        builder_config.hardware_compatibility_level = _hardware_level(trt, options.hardware_compat)
    if options.version_compat:
        builder_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    return builder_config


def _add_profiles(builder, builder_config, shapes) -> None:
    for name, lo, opt, hi in shapes:
        trt_profile = builder.create_optimization_profile()
        try:
            trt_profile.set_shape(name, lo, opt, hi)
        except ValueError as exc:
            raise UsageError(f"TensorRT rejected profile {lo}..{hi} (opt {opt}) for {name}: {exc}") from None
        if builder_config.add_optimization_profile(trt_profile) < 0:
            raise UsageError(f"TensorRT rejected profile {lo}..{hi} (opt {opt}) for {name} as invalid")


def _cache_entries(timing_cache) -> int | None:
    # queryKeys exists from 10.8; on older 10.x the manifest records bytes and sha256 only.
    return len(timing_cache.queryKeys()) if hasattr(timing_cache, "queryKeys") else None


def _engine_facts(trt, cuda_engine, count: int) -> tuple[dict, str]:
    """Device memory per engine and per profile, and the inspector's layer JSON."""
    memory = {
        "device_memory_bytes": int(cuda_engine.device_memory_size_v2),
        "device_memory_bytes_per_profile": [
            int(cuda_engine.get_device_memory_size_for_profile_v2(k)) for k in range(count)
        ],
    }
    inspector = cuda_engine.create_engine_inspector()
    return memory, str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def _build_one(trt, ctx: dict, group: tuple[int, ...], name: str) -> EngineRecord:
    started = time.perf_counter()
    builder, logger, options, out_dir = ctx["builder"], ctx["logger"], ctx["options"], ctx["out_dir"]
    network, _onnx_parser = _parse_onnx(trt, builder, logger, ctx["source"])
    builder_config = _builder_config(trt, builder, options, ctx["timing_cache"])
    _SET_PRECISION[ctx["major"]](trt, builder_config, options.precision)
    _add_profiles(builder, builder_config, tp.trt_profile_shapes(ctx["plan"], group, network.get_input(0).name))
    keys_before = _cache_entries(ctx["timing_cache"])
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        detail = "; ".join(logger.errors[-5:]) or "no error was logged"
        raise EnvironmentProblem(
            f"TensorRT could not build engine {name}: {detail}",
            hint="try a larger --workspace-mib, fewer profiles, or --engine-per-profile",
        )
    data = bytes(memoryview(serialized))
    path = out_dir / f"{name}.engine"
    atomic_write_bytes(path, data)
    seconds = time.perf_counter() - started
    trt_runtime = trt.Runtime(logger)
    cuda_engine = trt_runtime.deserialize_cuda_engine(data)
    memory, layer_json = _engine_facts(trt, cuda_engine, len(group))
    layers_path = out_dir / f"{name}.layers.json"
    atomic_write_text(layers_path, layer_json)
    settings = {
        **ctx["facts"],
        **memory,
        "layers": tp.parse_inspector_json(layer_json).to_dict(),
        "timing_cache_new_entries": None if keys_before is None else _cache_entries(ctx["timing_cache"]) - keys_before,
    }
    extra = (file_record(out_dir, layers_path),) + ((ctx["reduced"]["reduced_onnx"],) if ctx["reduced"] else ())
    return EngineRecord(
        name, NAME, options.precision, file_record(out_dir, path), group, round(seconds, 3), settings, extra
    )


def _build_facts(options: BuildOptions, major: int, here: dict, reduced: dict) -> dict:
    return {
        **here,
        "api_major": major,
        "precision_path": tp.precision_path(major, options.precision),
        "tf32": options.tf32,
        "hardware_compat": options.hardware_compat or "none",
        "version_compat": options.version_compat,
        "build_options": {
            "workspace_mib": options.workspace_mib,
            "opt_level": options.opt_level,
            "engine_per_profile": options.engine_per_profile,
            "profiling_verbosity": "detailed",
        },
        **({"reduced_check": reduced["reduced_check"]} if reduced else {}),
    }


def build_engines(onnx_path, plan: Plan, options: BuildOptions, out_dir, log: Log) -> list[EngineRecord]:
    """Build one engine with every plan profile (or one per profile) from ``onnx_path`` into ``out_dir``."""
    trt = _import_trt()
    version = str(trt.__version__)
    tp.check_build_options(options, version)
    major = tp.api_major(version)
    out_dir = Path(out_dir)
    here = installed()
    source, reduced = _network_source(Path(onnx_path), options.precision, major, out_dir, log)
    cache_path = Path(options.timing_cache) if options.timing_cache else out_dir / "timing.cache"
    before = cache_path.read_bytes() if cache_path.is_file() else b""
    logger = _make_logger(trt, log)
    builder = trt.Builder(logger)
    builder_config = builder.create_builder_config()
    timing_cache = builder_config.create_timing_cache(before)  # shared by every engine of this build
    ctx = {
        "builder": builder,
        "logger": logger,
        "options": options,
        "out_dir": out_dir,
        "source": source,
        "timing_cache": timing_cache,
        "major": major,
        "plan": plan,
        "reduced": reduced,
        "facts": _build_facts(options, major, here, reduced),
    }
    keys_before = _cache_entries(timing_cache)
    records = []
    for group in tp.engine_groups(plan, options.engine_per_profile):
        suffix = f"-p{group[0]}" if options.engine_per_profile else ""
        log(f"building TensorRT engine for plan profile(s) {list(group)} ({options.precision}, TensorRT {version})")
        records.append(_build_one(trt, ctx, group, f"tensorrt-{options.precision}{suffix}"))
    after = bytes(memoryview(timing_cache.serialize()))
    atomic_write_bytes(cache_path, after)
    stats = tp.timing_cache_stats(str(cache_path), before, after, keys_before, _cache_entries(timing_cache))
    return [replace(r, settings={**r.settings, "timing_cache": stats}) for r in records]


def check_compatible(manifest: Manifest, engine: EngineRecord) -> str | None:
    """None if ``engine`` may run on this machine's TensorRT and GPU, else a sentence saying what differs."""
    reason = unavailable_reason()
    if reason:
        return reason
    return tp.compatibility_problem(engine.settings, installed())


class TrtRunner:
    """Runs TensorRT engines: one execution context per plan profile, torch CUDA buffers, CUDA-event timing.

    Several engines (``--engine-per-profile``) are routed exactly like one engine with every profile.
    """

    name = NAME

    def __init__(self, manifest: Manifest, engines: tuple[EngineRecord, ...], out_dir):
        self.manifest, self.records, self.out_dir = manifest, tuple(engines), Path(out_dir)
        self.served = tuple(sorted({i for r in self.records for i in r.profiles}))
        self.last_profile: int | None = None
        self.last_latency_ms: float | None = None
        self._slots: dict = {}
        self._keep: list = []

    def __enter__(self) -> TrtRunner:
        import torch

        blobs = [verified_bytes(self.out_dir, r.file) for r in self.records]  # the checked bytes are the ones loaded
        for record in self.records:
            if problem := check_compatible(self.manifest, record):
                raise EnvironmentProblem(f"engine {record.name}: {problem}")
        trt = _import_trt()
        self._torch, self._logger = torch, _make_logger(trt, lambda _msg: None)
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

    def infer(self, images, profile: int | None = None):
        """Run float32 NCHW ``images``; returns float32 numpy logits. ``profile`` forces a plan profile."""
        import numpy as np

        torch = self._torch
        images = np.ascontiguousarray(images, dtype=np.float32)
        _, plan_index = tp.route_in_engine(self.manifest.plan, self.served, images.shape, profile)
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
        self.last_latency_ms, self.last_profile = start.elapsed_time(end), plan_index
        return y.float().cpu().numpy()


def _io_tensors(trt, cuda_engine) -> tuple:
    """((input name, torch dtype), (output name, torch dtype)) of an rsz-export engine."""
    io = {"in": [], "out": []}
    for i in range(cuda_engine.num_io_tensors):
        name = cuda_engine.get_tensor_name(i)
        kind = "in" if cuda_engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "out"
        io[kind].append((name, tp.torch_dtype_name(str(cuda_engine.get_tensor_dtype(name)))))
    if len(io["in"]) != 1 or len(io["out"]) != 1:
        raise IntegrityError(f"engine IO {io} is not one input and one output as rsz-export builds them")
    return io["in"][0], io["out"][0]


def open_runner(manifest: Manifest, engine: EngineRecord | None, out_dir, **_ignored) -> TrtRunner:
    """A TrtRunner for ``engine``, or for every TensorRT engine in the manifest when None; enter it to load."""
    engines = (engine,) if engine is not None else tuple(e for e in manifest.engines if e.backend == NAME)
    if not engines:
        raise IntegrityError(
            "the manifest lists no TensorRT engine", hint="rebuild: rsz-export build --backend tensorrt"
        )
    return TrtRunner(manifest, engines, out_dir)
