"""ONNX Runtime execution providers for ``onnxruntime-gpu``: CPU, CUDA, and TensorRT with the plan's profiles,
and the checks a GPU session must pass.

Pure except ``available_providers`` and ``gpu_session``, which use onnxruntime. The TensorRT execution provider
takes explicit profiles as ``trt_profile_min_shapes`` / ``_opt_shapes`` / ``_max_shapes`` strings of the form
``name:d0xd1x...,name:...`` (all three together, for every dynamic input). It keeps its execution context on
its first profile (onnxruntime PR #31624: "its execution context remained on profile 0, so inputs belonging to
other profiles failed"), so each session gets one plan profile, with its engine and timing caches in
``DIR/ort-trt-cache/p<k>``. A GPU session never falls back to the CPU in silence: ``session.disable_cpu_ep_fallback``
makes a graph with nodes for the CPU fail to open, and ``get_providers()`` must list the provider asked for
(ONNX Runtime drops a provider it cannot create and runs on the next one).
"""

from __future__ import annotations

from pathlib import Path

from rsz_export.errors import EnvironmentProblem, RszError, UsageError
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


def tensorrt_options(
    plan: Plan,
    out_dir,
    precision: str,
    device_id: int = 0,
    workspace_mib: int | None = None,
    profile: int | None = None,
) -> dict:
    """TensorRT provider options: plan profile ``profile`` (every profile when None), engine + timing caches in
    ``out_dir`` (a sub-folder per profile), precision flag."""
    cache = str(Path(out_dir) / CACHE_DIR / (f"p{profile}" if profile is not None else ""))
    options = {
        "device_id": str(device_id),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": "True" if precision == "fp16" else "False",
        **trt_profile_options(plan, profile=profile),
    }
    if precision == "bf16":
        options["trt_bf16_enable"] = "True"
    if workspace_mib:
        options["trt_max_workspace_size"] = str(int(workspace_mib) << 20)
    return options


def providers_for(device: str, plan: Plan, out_dir, precision: str, profile: int | None = None) -> list:
    """The ``providers=`` list for an InferenceSession on ``device`` (cpu, cuda or tensorrt), for plan profile
    ``profile`` on TensorRT. The CPU provider comes last, as ONNX Runtime requires; GPU sessions refuse to use it
    for graph nodes (``gpu_session``). TensorRT gets no CUDA provider beside it, so a node TensorRT cannot take
    fails the session instead of running elsewhere."""
    if device not in DEVICES:
        raise UsageError(f"device {device!r} is unknown: choose {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r} is unknown: choose {', '.join(PRECISIONS)}")
    if device == "cpu":
        return [CPU_EP]
    if device == "tensorrt":
        return [(TRT_EP, tensorrt_options(plan, out_dir, precision, profile=profile)), CPU_EP]
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
