"""Which runners a bench run opens: the engines of each backend (one per engine of an engine-per-profile
build) and the PyTorch baselines, and on which device each runs."""

from __future__ import annotations

import copy

from rsz_export.artifacts.manifest import EngineRecord, Manifest, load_manifest
from rsz_export.backends import require_backend
from rsz_export.errors import UsageError
from rsz_export.plan.profiles import Plan, route
from rsz_export.shapes import Resolution

TORCH = "torch"


def device_for(backend: str, manifest: Manifest) -> str:
    """Where a backend runs: TensorRT on CUDA; torch on CUDA beside TensorRT engines when a GPU is visible."""
    if backend == "tensorrt":
        return "cuda"
    if backend == "openvino":
        return "cpu"
    if backend == "onnxruntime":
        on_gpu = any(e.settings.get("device", "cpu") != "cpu" for e in manifest.engines if e.backend == backend)
        return "cuda" if on_gpu else "cpu"
    import torch

    gpu_engines = any(e.backend == "tensorrt" for e in manifest.engines)
    return "cuda" if gpu_engines and torch.cuda.is_available() else "cpu"


def engine_for(manifest: Manifest, backend: str, profile: int | None) -> EngineRecord:
    """The backend's engine that carries plan profile ``profile`` (the first of the backend's if None)."""
    engines = [e for e in manifest.engines if e.backend == backend]
    for engine in engines:
        if profile is None or profile in engine.profiles:
            return engine
    raise UsageError(f"no {backend} engine carries plan profile {profile}; engines: {[e.name for e in engines]}")


def keeps_state_per_profile(engine: EngineRecord | None) -> bool:
    """Whether a runner keeps separate per-profile state (TensorRT: one execution context per profile; ONNX
    Runtime's TensorRT provider: one session per profile), so a change of shape happens per profile."""
    return engine is not None and (engine.backend == "tensorrt" or engine.settings.get("device") == "tensorrt")


def shape_change_feed(plan: Plan, engine: EngineRecord | None, batch: int, size: Resolution, previous):
    """The size to run just before timing ``size``, so the first timed call is the first after a change of shape
    in the state that serves it: ``previous`` when the same runner state serves both, else a corner (min, max,
    opt) of the profile serving ``size`` that differs from it. None when there is nothing to change from.

    An engine-per-profile runner serves only its own profile, and a TensorRT context only its profile, so
    ``previous`` (another profile's size) would be refused or would change another context's shape."""
    if previous is None:
        return None
    profiles = plan.profiles if engine is None else [plan.profiles[i] for i in engine.profiles]
    here = route(profiles, batch, size.h, size.w)
    if not keeps_state_per_profile(engine) or route(profiles, batch, previous.h, previous.w) == here:
        return previous
    profile = profiles[here]
    corners = (Resolution(c.h, c.w) for c in (profile.min, profile.max, profile.opt))
    return next((c for c in corners if c != size and profile.covers(batch, c.h, c.w)), None)


def variants(backend: str, manifest: Manifest, engines_dir: str, threads: int, device: str) -> list:
    """(variant name, opener(engine) -> runner context) pairs for a backend: one per engine kind or torch mode."""
    if backend != TORCH:
        module = require_backend(backend)
        kwargs = {"threads": threads} if backend in ("onnxruntime", "openvino") else {}
        return [("dynamic", lambda engine: module.open_runner(manifest, engine, engines_dir, **kwargs))]
    import torch

    from rsz_export.backends.pyt import TorchRunner
    from rsz_export.model.weights import reference_from_record

    torch.set_num_threads(threads)
    model = reference_from_record(manifest.weights, engines_dir)
    modes = [("eager-fp32", {})]
    if device == "cuda":
        modes += [("fp16-channels-last", {"half": True, "channels_last": True}), ("cuda-graphs", {"cuda_graphs": True})]
    # each mode gets its own copy: TorchRunner converts its module in place (half, channels-last)
    return [(name, lambda _e, kw=kw: TorchRunner(copy.deepcopy(model), device=device, **kw)) for name, kw in modes]


def baseline_manifest(folder: str | None, batches, sizes, backends) -> Manifest | None:
    """The ``bench --baseline`` build, checked to hold an engine of every backend timed and to cover every point
    (UsageError otherwise, before anything is timed)."""
    if folder is None:
        return None
    baseline = load_manifest(folder)
    built = {e.backend for e in baseline.engines}
    missing = [b for b in backends if b != TORCH and b not in built]
    if missing:
        raise UsageError(f"--baseline {folder} holds no {', '.join(missing)} engine")
    plan = baseline.plan
    outside = [f"{s}" for b in batches for s in sizes if route(plan.profiles, b, s.h, s.w) is None]
    if outside:
        raise UsageError(f"--baseline {folder} does not cover {', '.join(outside[:4])}",
                         hint=f"covered: {plan.covered_ranges()}")  # fmt: skip
    return baseline
