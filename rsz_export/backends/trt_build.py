"""Building TensorRT engines from the ONNX export: one optimization profile per planned profile (or one engine
per profile), precision by builder flags (10.x) or a reduced-precision ONNX (11.x), a shared timing cache
(``trt_timing``), cancellation by Ctrl-C (``trt_cancel``), and the facts the manifest records (device memory,
layer information)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from rsz_export.artifacts.files import atomic_write_bytes, atomic_write_text
from rsz_export.artifacts.manifest import EngineRecord, file_record
from rsz_export.backends import trt_env
from rsz_export.backends import trt_support as ts
from rsz_export.backends.base import TIMING_CACHE_NAME, BuildOptions
from rsz_export.backends.trt_cancel import cancel_monitor, signals_cancel
from rsz_export.backends.trt_env import NAME, deserialize, import_trt, logged, make_logger
from rsz_export.backends.trt_timing import (
    cache_entries,
    cache_stats,
    open_timing_cache,
    save_timing_cache,
    use_timing_cache,
)
from rsz_export.errors import EnvironmentProblem, IntegrityError, UsageError
from rsz_export.interface import Log
from rsz_export.plan.profiles import Plan


def _set_precision_v10(trt, builder_config, precision: str) -> None:
    # 10.x networks are weakly typed (created with flags 0): the builder may pick these types per layer. A Q/DQ
    # network (int8) is explicitly quantized, which a weakly typed 10.x network builds only with the INT8 flag
    # (Developer Guide 10.x, "Explicit Quantization": "the INT8 precision flag must be set").
    if precision == "fp16":
        builder_config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        builder_config.set_flag(trt.BuilderFlag.BF16)
    elif precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.INT8)


def _set_precision_v11(trt, builder_config, precision: str) -> None:
    # 11.x networks are always strongly typed: the types come from the (reduced-precision) ONNX itself.
    # int8: from the Q/DQ ONNX's QuantizeLinear/DequantizeLinear types, with no flag either.
    return None


_SET_PRECISION = {10: _set_precision_v10, 11: _set_precision_v11}


def _network_source(onnx_path: Path, options: BuildOptions, plan: Plan, major: int, out_dir: Path,
                    log: Log) -> tuple[Path, dict]:
    """The ONNX file TensorRT parses, and what the manifest records about it."""
    precision = options.precision
    if precision == "int8":  # the Q/DQ model for TensorRT, checked with ONNX Runtime on the CPU first
        from rsz_export.model.quantization import TENSORRT_QDQ, checked_qdq

        target = out_dir / "model.int8-tensorrt.onnx"
        qdq, facts = checked_qdq(onnx_path, options.calibration, TENSORRT_QDQ, plan, target, log=log)
        return qdq, {"reduced_onnx": file_record(out_dir, qdq), "reduced_check": facts}
    if ts.precision_path(major, precision) != "reduced-precision-onnx":
        return onnx_path, {}
    from rsz_export.model.reduced_precision import check_reduced_precision, reduced_precision_onnx

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
                ts.ParserErrorInfo(
                    str(parser_error.code()),
                    str(parser_error.desc()),
                    int(parser_error.node()),
                    str(parser_error.node_name()),
                    str(parser_error.node_operator()),
                )
            )
        raise IntegrityError(
            ts.format_parser_errors(str(source), errors), hint="re-export the ONNX: rsz-export build --force"
        )
    return network, onnx_parser


def _hardware_level(trt, name: str):
    """The level for ``--hardware-compat`` ampere+ or same-compute-capability (none leaves TensorRT's default)."""
    if name == "ampere+":
        return trt.HardwareCompatibilityLevel.AMPERE_PLUS
    return trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY


def _builder_config(trt, builder, ctx: _BuildContext, monitor):
    options = ctx.options
    builder_config = builder.create_builder_config()
    builder_config.progress_monitor = monitor
    if options.workspace_mib:
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    builder_config.builder_optimization_level = options.opt_level
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    use_timing_cache(builder_config, ctx.timing_cache, ctx.cache_path)
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
        # The binding documents ValueError (pyCoreDoc.h) but raises RuntimeError (pyCore.cpp opt_profile_set_shape,
        # PY_ASSERT_RUNTIME_ERROR): both mean TensorRT refused the shapes.
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"TensorRT rejected profile {lo}..{hi} (opt {opt}) for {name}: {exc}") from None
        if builder_config.add_optimization_profile(trt_profile) < 0:
            raise UsageError(f"TensorRT rejected profile {lo}..{hi} (opt {opt}) for {name} as invalid")


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


@dataclass(frozen=True)
class _BuildContext:
    """What every engine of one build shares."""

    builder: object
    logger: object
    options: BuildOptions
    out_dir: Path
    source: Path
    """The ONNX file TensorRT parses (the export, or its reduced-precision version on 11.x)."""
    timing_cache: object
    cache_path: Path
    major: int
    plan: Plan
    reduced: dict
    """The reduced-precision ONNX's file record and CPU check; empty on the fp32 path."""
    facts: dict
    """Settings recorded for every engine of the build."""


def _serialize(trt, ctx: _BuildContext, group: tuple[int, ...], name: str) -> bytes:
    """The serialized plan of one engine; KeyboardInterrupt when a signal cancelled the build."""
    builder, logger = ctx.builder, ctx.logger
    network, _onnx_parser = _parse_onnx(trt, builder, logger, ctx.source)
    monitor = cancel_monitor(trt)
    builder_config = _builder_config(trt, builder, ctx, monitor)
    _SET_PRECISION[ctx.major](trt, builder_config, ctx.options.precision)
    _add_profiles(builder, builder_config, ts.trt_profile_shapes(ctx.plan, group, network.get_input(0).name))
    with signals_cancel(monitor):
        serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise EnvironmentProblem(
            f"TensorRT could not build engine {name}: {logged(logger, 5)}",
            hint="try a larger --workspace-mib, fewer profiles, or --engine-per-profile",
        )
    return bytes(memoryview(serialized))


def _build_one(trt, ctx: _BuildContext, group: tuple[int, ...], name: str) -> EngineRecord:
    started = time.perf_counter()
    keys_before = cache_entries(ctx.timing_cache)
    data = _serialize(trt, ctx, group, name)
    path = ctx.out_dir / f"{name}.engine"
    atomic_write_bytes(path, data)
    seconds = time.perf_counter() - started
    _runtime, cuda_engine = deserialize(trt, ctx.logger, data, ctx.options.version_compat, path)
    memory, layer_json = _engine_facts(trt, cuda_engine, len(group))
    layers_path = ctx.out_dir / f"{name}.layers.json"
    atomic_write_text(layers_path, layer_json)
    keys_after = cache_entries(ctx.timing_cache)
    settings = {
        **ctx.facts,
        **memory,
        "layers": ts.parse_inspector_json(layer_json).to_dict(),
        "timing_cache_new_entries": None if keys_before is None else keys_after - keys_before,
    }
    extra = (file_record(ctx.out_dir, layers_path),) + ((ctx.reduced["reduced_onnx"],) if ctx.reduced else ())
    record = file_record(ctx.out_dir, path)
    return EngineRecord(name, NAME, ctx.options.precision, record, group, round(seconds, 3), settings, extra)


def _build_facts(options: BuildOptions, major: int, here: dict, reduced: dict) -> dict:
    return {
        **here,
        "api_major": major,
        "precision_path": ts.precision_path(major, options.precision),
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


def recorded_options(engine: EngineRecord, timing_cache: str | None = None) -> BuildOptions:
    """The BuildOptions ``engine`` was built with (what ``_build_facts`` recorded), with ``timing_cache``: how
    bench builds an engine's shape-fixed twin with the same TF32, optimization level, workspace and
    compatibility settings."""
    settings, built = engine.settings, engine.settings.get("build_options", {})
    hardware = settings.get("hardware_compat") or "none"
    return BuildOptions(
        precision=engine.precision,
        workspace_mib=built.get("workspace_mib"),
        opt_level=built.get("opt_level", 3),
        timing_cache=timing_cache,
        tf32=bool(settings.get("tf32", True)),
        hardware_compat=None if hardware == "none" else hardware,
        version_compat=bool(settings.get("version_compat", False)),
    )


def build_engines(onnx_path, plan: Plan, options: BuildOptions, out_dir, log: Log) -> list[EngineRecord]:
    """Build one engine with every plan profile (or one per profile) from ``onnx_path`` into ``out_dir``."""
    trt = import_trt()
    version = str(trt.__version__)
    ts.check_build_options(options, version)
    major = ts.api_major(version)
    out_dir = Path(out_dir)
    here = trt_env.installed()
    source, reduced = _network_source(Path(onnx_path), options, plan, major, out_dir, log)
    cache_path = Path(options.timing_cache) if options.timing_cache else out_dir / TIMING_CACHE_NAME
    logger = make_logger(trt, log)
    builder = trt.Builder(logger)
    timing_cache, before = open_timing_cache(trt, builder.create_builder_config(), logger, cache_path)
    ctx = _BuildContext(
        builder, logger, options, out_dir, source, timing_cache, cache_path, major, plan, reduced,
        _build_facts(options, major, here, reduced),
    )
    keys_before = cache_entries(timing_cache)
    records = []
    for group in ts.engine_groups(plan, options.engine_per_profile):
        suffix = f"-p{group[0]}" if options.engine_per_profile else ""
        log(f"building TensorRT engine for plan profile(s) {list(group)} ({options.precision}, TensorRT {version})")
        records.append(_build_one(trt, ctx, group, f"tensorrt-{options.precision}{suffix}"))
    after = save_timing_cache(builder, timing_cache, cache_path, log)
    stats = cache_stats(cache_path, before, after, keys_before, timing_cache)
    return [replace(r, settings={**r.settings, "timing_cache": stats}) for r in records]
