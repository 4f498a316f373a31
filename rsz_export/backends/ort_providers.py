"""ONNX Runtime execution-provider lists for ``onnxruntime-gpu``: CPU, CUDA, and TensorRT with the plan's profiles.

Pure except ``available_providers``, which asks onnxruntime lazily. The TensorRT execution provider takes
explicit profiles as ``trt_profile_min_shapes`` / ``_opt_shapes`` / ``_max_shapes`` strings of the form
``name:d0xd1x...,name:...``; naming an input once per profile gives several profiles (ONNX Runtime's
``ParseProfileShapes`` appends every occurrence of a name as the next profile). All three strings must be
given together, for every dynamic input. Its engine and timing caches go into ``DIR/ort-trt-cache``.
"""

from __future__ import annotations

from pathlib import Path

from rsz_export.errors import UsageError
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


def trt_profile_options(plan: Plan, input_name: str = INPUT_NAME) -> dict[str, str]:
    """``trt_profile_{min,opt,max}_shapes`` strings with one entry per plan profile, in plan order."""
    out = {}
    for key in ("min", "opt", "max"):
        out[f"trt_profile_{key}_shapes"] = ",".join(
            shape_string(input_name, getattr(p, key).nchw) for p in plan.profiles
        )
    return out


def cuda_options(precision: str, device_id: int = 0) -> dict[str, str]:
    """CUDA provider options. TF32 matmul/conv is on only for ``tf32``: ``fp32`` means strict fp32.

    fp16/bf16 on this provider come from the model file itself (precision.reduced_precision_onnx).
    """
    return {"device_id": str(device_id), "use_tf32": "1" if precision == "tf32" else "0"}


def tensorrt_options(plan: Plan, out_dir, precision: str, device_id: int = 0, workspace_mib: int | None = None) -> dict:
    """TensorRT provider options: the plan's profiles, engine + timing caches inside ``out_dir``, precision flag."""
    cache = str(Path(out_dir) / CACHE_DIR)
    options = {
        "device_id": str(device_id),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache,
        "trt_fp16_enable": "True" if precision == "fp16" else "False",
        **trt_profile_options(plan),
    }
    if precision == "bf16":
        options["trt_bf16_enable"] = "True"
    if workspace_mib:
        options["trt_max_workspace_size"] = str(int(workspace_mib) << 20)
    return options


def providers_for(device: str, plan: Plan, out_dir, precision: str) -> list:
    """The ``providers=`` list for an InferenceSession on ``device`` (cpu, cuda or tensorrt), CPU last as fallback."""
    if device not in DEVICES:
        raise UsageError(f"device {device!r} is unknown: choose {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r} is unknown: choose {', '.join(PRECISIONS)}")
    if device == "cpu":
        return [CPU_EP]
    chain = [(CUDA_EP, cuda_options(precision)), CPU_EP]
    if device == "tensorrt":
        chain.insert(0, (TRT_EP, tensorrt_options(plan, out_dir, precision)))
    return chain


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
