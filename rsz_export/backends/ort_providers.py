"""ONNX Runtime execution providers for ``onnxruntime-gpu``: CPU, CUDA, and TensorRT with the plan's profiles,
and the checks a GPU session must pass.

Pure except ``available_providers`` and ``gpu_session``, which use onnxruntime. The TensorRT execution provider
takes explicit profiles as ``trt_profile_min_shapes`` / ``_opt_shapes`` / ``_max_shapes`` strings of the form
``name:d0xd1x...,name:...`` (all three together, for every dynamic input). It keeps its execution context on
its first profile (onnxruntime PR #31624: "its execution context remained on profile 0, so inputs belonging to
other profiles failed"), so each session gets one plan profile, with its engine and timing caches in
``DIR/ort-trt-cache/<engine sha256>/p<k>`` (``trt_cache_dir``), created before the session opens. A GPU
session never falls back to the CPU in silence: ``session.disable_cpu_ep_fallback`` makes a graph with nodes
for the CPU fail to open, and ``get_providers()`` must list the provider asked for (ONNX Runtime drops a
provider it cannot create and runs on the next one).
"""

from __future__ import annotations

from pathlib import Path

from rsz_export.errors import EnvironmentProblem, OutputError, RszError, UsageError
from rsz_export.interface import INPUT_NAME, PRECISIONS
from rsz_export.plan.profiles import Plan

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
DEVICES = ("cpu", "cuda", "tensorrt")
PROVIDER_OF = {"cpu": CPU_EP, "cuda": CUDA_EP, "tensorrt": TRT_EP}
CACHE_DIR = "ort-trt-cache"
GPU_INSTALL_HINT = (
    "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (a CUDA 12 build; the TensorRT provider also "
    'needs TensorRT\'s libraries: pip install "rsz-export[tensorrt]")'
)


def shape_string(name: str, shape: tuple[int, ...]) -> str:
    """``images:1x3x224x224``."""
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise UsageError(f"shape {shape!r} for {name} must be positive whole numbers")
    return f"{name}:" + "x".join(str(d) for d in shape)


def trt_profile_options(plan: Plan, input_name: str = INPUT_NAME, profile: int | None = None) -> dict[str, str]:
    """``trt_profile_{min,opt,max}_shapes`` strings for plan profile ``profile``, or one entry per plan profile
    in plan order (each occurrence of a name is the next profile: ONNX Runtime's ``ParseProfileShapes``)."""
    chosen = plan.profiles if profile is None else (plan.profiles[profile],)
    out = {}
    for key in ("min", "opt", "max"):
        out[f"trt_profile_{key}_shapes"] = ",".join(shape_string(input_name, getattr(p, key).nchw) for p in chosen)
    return out


def cuda_options(precision: str, device_id: int = 0) -> dict[str, str]:
    """CUDA provider options. TF32 matmul/conv is on only for ``tf32``: ``fp32`` means strict fp32.

    fp16/bf16 on this provider come from the model file itself (precision.reduced_precision_onnx).
    """
    return {"device_id": str(device_id), "use_tf32": "1" if precision == "tf32" else "0"}


def trt_cache_dir(out_dir, engine_sha256: str, tag: str) -> Path:
    """``DIR/ort-trt-cache/<engine sha256[:16]>/<tag>``: where one TensorRT-provider session keeps its engine and
    timing caches. ONNX Runtime names a cached engine after the model's file name, input names, node outputs and
    versions, not its weights or shapes (tensorrt_execution_provider_utils.h ``TRTGenerateId``; a model loaded
    from bytes has no file name), so the folder carries the engine file's hash: a rebuild with other weights never
    reuses a stale engine. ``tag`` separates sessions whose engines differ: ``p<k>`` per plan profile, and
    ``static-BxHxW`` for bench's shape-pinned twin, which must not load the dynamic session's engine."""
    return Path(out_dir) / CACHE_DIR / engine_sha256[:16] / tag


def make_cache_dir(path: Path) -> Path:
    """Create ``path`` and its parents before a session opens: the provider creates its cache folder one level
    deep only (tensorrt_execution_provider.cc, ``fs::create_directory``). OutputError (exit 5) when it cannot."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create ONNX Runtime's TensorRT cache folder {path}: {exc.strerror or exc}",
            hint="make the engines folder writable (the provider keeps its engines there)",
        ) from None
    return Path(path)


def tensorrt_options(plan: Plan, cache: Path, precision: str, device_id: int = 0, workspace_mib: int | None = None,
                     profile: int | None = None) -> dict:
    """TensorRT provider options: plan profile ``profile`` (every profile when None), engine and timing caches in
    the folder ``cache``, the fp16 flag (its fp32 leaves TensorRT's TF32 on: the provider has no option to turn it
    off), the workspace limit. Every name is one of the provider's options (tensorrt_execution_provider_info.cc)."""
    options = {
        "device_id": str(device_id),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_fp16_enable": "True" if precision == "fp16" else "False",
        **trt_profile_options(plan, profile=profile),
    }
    if workspace_mib:
        options["trt_max_workspace_size"] = str(int(workspace_mib) << 20)
    return options


def providers_for(device: str, plan: Plan, cache: Path | None, precision: str, profile: int | None = None,
                  workspace_mib: int | None = None) -> list:
    """The ``providers=`` list for an InferenceSession on ``device`` (cpu, cuda or tensorrt), for plan profile
    ``profile`` on TensorRT with its caches in ``cache`` (``trt_cache_dir``). The CPU provider comes last, as ONNX
    Runtime requires; GPU sessions refuse to use it for graph nodes (``gpu_session``). TensorRT gets no CUDA
    provider beside it, so a node TensorRT cannot take fails the session instead of running elsewhere."""
    if device not in DEVICES:
        raise UsageError(f"device {device!r} is unknown: choose {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r} is unknown: choose {', '.join(PRECISIONS)}")
    if device == "cpu":
        return [CPU_EP]
    if device == "tensorrt":
        options = tensorrt_options(plan, cache, precision, profile=profile, workspace_mib=workspace_mib)
        return [(TRT_EP, options), CPU_EP]
    return [(CUDA_EP, cuda_options(precision)), CPU_EP]


def available_providers() -> list[str]:
    """The execution providers the installed onnxruntime offers (asks onnxruntime, imported here lazily)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def missing_provider(device: str) -> str | None:
    """None when the installed onnxruntime has the provider ``device`` needs, else a sentence saying what to do."""
    if device not in DEVICES:
        raise UsageError(f"device {device!r} is unknown: choose {', '.join(DEVICES)}")
    have = available_providers()
    if PROVIDER_OF[device] in have:
        return None
    return f"onnxruntime here has no {PROVIDER_OF[device]} (it offers {', '.join(have) or 'none'}); {GPU_INSTALL_HINT}"


def gpu_session(load, so, device: str, path):
    """``load()``'s session for ``device``, opened with CPU fallback disabled and checked to run on the asked
    provider; EnvironmentProblem otherwise (the same bytes opened on the CPU at build time)."""
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        session = load()
    except RszError as exc:
        raise EnvironmentProblem(
            f"ONNX Runtime's {PROVIDER_OF[device]} cannot run all of {path}: {exc.message}", hint=GPU_INSTALL_HINT
        ) from None
    active = list(session.get_providers())
    if PROVIDER_OF[device] not in active:
        raise EnvironmentProblem(
            f"ONNX Runtime did not enable {PROVIDER_OF[device]} for {path}; it offers {', '.join(active)}",
            hint=GPU_INSTALL_HINT,
        )
    return session
