"""OpenVINO facts without OpenVINO: which precision needs which CPU capability, the compile settings an engine
records, the plan's dynamic bounds, and what the CPU declares it executes.

OpenVINO's CPU plugin says what it executes in ``OPTIMIZATION_CAPABILITIES`` (``FP32``, ``BF16`` on AMX or
AVX512-BF16, ``FP16`` on AMX-FP16, ``INT8``...). Asked for a precision the CPU lacks (``INFERENCE_PRECISION_HINT``
bf16 on an AVX2 CPU), it compiles silently in f32: the compiled model's own ``INFERENCE_PRECISION_HINT`` is the
only truth about what ran, and the runner checks it after every compile.
"""

from __future__ import annotations

import os

from rsz_export.errors import EnvironmentProblem
from rsz_export.plan.profiles import Plan

NAME = "openvino"
SUPPORTED_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
INSTALL = 'pip install -e ".[openvino]"'
CAPABILITIES_ENV = "RSZ_EXPORT_OPENVINO_CAPABILITIES"


def load_openvino():
    """The ``openvino`` module, imported with its usage telemetry declined.

    ``import openvino`` imports its model converter, which sends an event to Google Analytics from a process
    forked off a thread (``openvino_telemetry``'s GA4 backend). rsz-export sends nothing on its users' behalf, and
    without network that forked child can block on a lock the thread held, so that the command hangs at exit
    while multiprocessing waits for it. The converter declines telemetry in a CI job (``CI=true``): that is set
    for the import only, and restored after."""
    import sys

    if sys.modules.get("openvino") is None:  # not imported yet (or marked missing: the import then raises)
        saved = os.environ.get("CI")
        os.environ["CI"] = "true"
        try:
            import openvino  # noqa: F401
        finally:
            if saved is None:
                os.environ.pop("CI", None)
            else:
                os.environ["CI"] = saved
    return sys.modules["openvino"]
"""Comma-separated OPTIMIZATION_CAPABILITIES to use instead of the CPU's own (``FP32,BF16,INT8``): to build for
another CPU than this one, and to test the capability checks. What actually runs is still checked after compiling."""

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
"""INFERENCE_PRECISION_HINT per precision. int8 runs the Q/DQ model's FakeQuantize ops on int8 kernels with f32
between them; f32 is set explicitly because the CPU plugin's default on AMX CPUs is bf16."""
NEEDS = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
"""The OPTIMIZATION_CAPABILITIES entry a precision needs."""
EXECUTED = {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "f16": "fp16", "float16": "fp16"}
"""The compiled model's INFERENCE_PRECISION_HINT (an ov.Type's name or str) as our precision names."""

XML_FILE = "resnet50.openvino.xml"
BIN_FILE = "resnet50.openvino.bin"
QDQ_FILE = "model.int8-cpu.onnx"
CACHE_DIR = "openvino-cache"
"""The compiled-model cache (OpenVINO's CACHE_DIR) inside the engine folder: removed with it."""


def declared_capabilities(read) -> tuple[str, ...]:
    """What the CPU executes: ``CAPABILITIES_ENV`` when set, else ``read()`` (OpenVINO's own list)."""
    injected = os.environ.get(CAPABILITIES_ENV, "").strip()
    if injected:
        return tuple(c.strip().upper() for c in injected.split(",") if c.strip())
    return tuple(str(c).upper() for c in read())


def cpu_facts() -> tuple[tuple[str, ...], str]:
    """(OPTIMIZATION_CAPABILITIES, CPU name) as OpenVINO reports them, the capabilities overridable
    (``CAPABILITIES_ENV``)."""
    ov = load_openvino()

    core = ov.Core()
    capabilities = declared_capabilities(lambda: core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return capabilities, str(core.get_property("CPU", "FULL_DEVICE_NAME"))


def precision_problem(precision: str, capabilities: tuple[str, ...], cpu: str) -> str | None:
    """None when a CPU with ``capabilities`` executes ``precision``, else a sentence saying why not."""
    need = NEEDS[precision]
    if need in capabilities:
        return None
    return (
        f"this CPU ({cpu}) does not execute {precision} in OpenVINO: its OPTIMIZATION_CAPABILITIES are "
        f"{', '.join(capabilities) or 'none'} (no {need}); OpenVINO would run it in f32 and call it {precision}"
    )


def refuse_precision(precision: str, capabilities: tuple[str, ...], cpu: str) -> None:
    """EnvironmentProblem (exit 3) when the CPU does not execute ``precision``."""
    if problem := precision_problem(precision, capabilities, cpu):
        hint = "use --precision fp32 or int8 here, or build and run on a CPU with AMX or AVX512-BF16"
        if precision == "fp16":
            hint = "fp16 needs AMX-FP16 (Intel Granite Rapids and later): use fp32, bf16 or int8"
        raise EnvironmentProblem(problem, hint=f"{hint} (or set {CAPABILITIES_ENV} to build for another CPU)")


def short_version(version: str) -> str:
    """``2026.4.1`` of OpenVINO's ``2026.4.1-22982-e213a147257-releases/2026/4``."""
    return str(version).split("-")[0]


def openvino_reason(exc: BaseException) -> str:
    """OpenVINO's message without its source locations ("Exception from src/...cpp:84:" lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    told = [line for line in lines if not line.startswith("Exception from ")]
    return " ".join(told)[:400] or type(exc).__name__


def executed_precision(hint) -> str:
    """Our name for a compiled model's INFERENCE_PRECISION_HINT (an ov.Type or its string)."""
    name = getattr(hint, "get_type_name", lambda: str(hint))()
    return EXECUTED.get(str(name).lower(), str(name))


def dynamic_bounds(plan: Plan) -> dict[str, tuple[int, int]]:
    """(lowest, highest) batch, height and width over the plan's profiles: the IR's bounded dynamic dims."""
    lows = {d: min(getattr(p.min, d) for p in plan.profiles) for d in ("batch", "h", "w")}
    highs = {d: max(getattr(p.max, d) for p in plan.profiles) for d in ("batch", "h", "w")}
    return {d: (lows[d], highs[d]) for d in lows}


def compile_settings(precision: str, threads: int) -> dict:
    """The settings recorded with an engine and applied at every compile (OpenVINO property names)."""
    return {
        "device": "cpu",
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "INFERENCE_NUM_THREADS": int(threads),
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "profile_specific": False,
    }


def compile_config(settings: dict, threads: int | None = None, cache_dir: str | None = None) -> dict:
    """The OpenVINO properties for ``compile_model`` from recorded settings; ``threads`` overrides theirs."""
    config = {
        "INFERENCE_PRECISION_HINT": settings["INFERENCE_PRECISION_HINT"],
        "INFERENCE_NUM_THREADS": int(threads or settings["INFERENCE_NUM_THREADS"]),
        "NUM_STREAMS": int(settings.get("NUM_STREAMS", 1)),
        "PERFORMANCE_HINT": settings.get("PERFORMANCE_HINT", "LATENCY"),
    }
    if cache_dir:
        config["CACHE_DIR"] = cache_dir
    return config


TRITON_FILES = ("model.xml", "model.bin")
"""The file names Triton's openvino backend reads in a model version folder (its default_model_filename)."""


def triton_parameters(settings: dict, precision: str) -> tuple[tuple[str, str], ...]:
    """The engine's compile settings under the parameter names Triton's openvino backend documents
    (triton-inference-server/openvino_backend README: INFERENCE_NUM_THREADS, NUM_STREAMS, PERFORMANCE_HINT,
    HINT_BF16). It has no parameter for f32 or f16: ``triton_problem`` says what that means."""
    parameters = [
        ("INFERENCE_NUM_THREADS", str(int(settings.get("INFERENCE_NUM_THREADS", 0)))),
        ("NUM_STREAMS", str(int(settings.get("NUM_STREAMS", 1)))),
        ("PERFORMANCE_HINT", str(settings.get("PERFORMANCE_HINT", "LATENCY"))),
    ]
    if precision == "bf16":
        parameters.append(("HINT_BF16", "YES"))
    return tuple(parameters)


def triton_problem(precision: str) -> str | None:
    """Why Triton's openvino backend cannot run an engine of ``precision`` as built, or None."""
    if precision == "fp16":
        return ("Triton's openvino backend has no parameter asking for f16 execution (only HINT_BF16), so an fp16 "
                "engine would run in the server CPU's default precision")
    return None
