"""The OpenVINO backend, on the CPU: one IR with bounded dynamic dims serves every planned profile, in fp32, in
bf16 where the CPU has bf16 units (AMX, AVX512-BF16), in fp16 where it has AMX-FP16, and in int8 from the same
checked CPU Q/DQ model ONNX Runtime's int8 engine runs.

Building is in ``ov_build``, running in ``ov_runner``, the pure facts (precision hints, capabilities, bounds)
in ``ov_support``. A precision the CPU does not execute is refused when building and when running: OpenVINO
itself would compile it silently in f32 (see ``ov_support``). Only ``ov_*`` modules import ``openvino``, and only
inside functions.
"""

from __future__ import annotations

from pathlib import Path

from rsz_export.artifacts.manifest import EngineRecord, Manifest
from rsz_export.backends import ov_support as ovs
from rsz_export.backends.base import BuildOptions, Log
from rsz_export.backends.ov_runner import OvRunner
from rsz_export.errors import UsageError
from rsz_export.plan.profiles import Plan

NAME = ovs.NAME
SUPPORTED_PRECISIONS = ovs.SUPPORTED_PRECISIONS


def unavailable_reason() -> str | None:
    """None when openvino imports, else the install line."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return f"OpenVINO is not installed: {ovs.INSTALL}"
    return None


def check_precision(options: BuildOptions) -> None:
    """CPU only; the precision must be one this CPU executes (EnvironmentProblem, exit 3, otherwise)."""
    if options.device != "cpu":
        raise UsageError(f"backend openvino runs on the CPU here, not on {options.device}",
                         hint="use --device cpu, or --backend tensorrt/onnxruntime for a GPU")  # fmt: skip
    if unavailable_reason() is None:
        ovs.refuse_precision(options.precision, *ovs.cpu_facts())


def build_engines(onnx_path: Path, plan: Plan, options: BuildOptions, out_dir: Path, log: Log) -> list[EngineRecord]:
    """One IR engine for every profile of ``plan`` (see ``ov_build``)."""
    from rsz_export.backends.ov_build import build_engines as build

    check_precision(options)
    capabilities, cpu = ovs.cpu_facts()
    return build(onnx_path, plan, options, out_dir, log, capabilities, cpu)


def check_compatible(manifest: Manifest, engine: EngineRecord) -> str | None:
    """None when this CPU executes the engine's precision; else why not (the IR itself is portable)."""
    if unavailable_reason() is not None:
        return unavailable_reason()
    return ovs.precision_problem(engine.precision, *ovs.cpu_facts())


def recorded_options(engine: EngineRecord, **overrides) -> BuildOptions:
    """The build options an engine was built with (for a twin built the same way)."""
    return BuildOptions(precision=engine.precision, threads=engine.settings.get("INFERENCE_NUM_THREADS"), **overrides)


def open_runner(manifest: Manifest, engine: EngineRecord, out_dir: Path, threads: int | None = None,
                pinned=None) -> OvRunner:  # fmt: skip
    """An OvRunner for ``engine``; enter it to verify, read and compile."""
    return OvRunner(manifest, engine, out_dir, threads=threads, pinned=pinned)


def matmul_call(n: int, threads: int):
    """A call running one f32 [n,n]x[n,n] MatMul compiled by OpenVINO on the CPU with ``threads`` threads: the
    peak bench judges OpenVINO engines' GFLOP/s against."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], np.float32, name="a")
    product = ops.matmul(a, ops.constant(rng.standard_normal((n, n), dtype=np.float32)), False, False)
    model = ov.Model([product], [a], "matmul_peak")
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    feed = {"a": rng.standard_normal((n, n), dtype=np.float32)}
    return lambda: request.infer(feed)
