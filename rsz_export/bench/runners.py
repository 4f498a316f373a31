"""Which runners a bench run opens: the engines of each backend (one per engine of an engine-per-profile
build) and the PyTorch baselines, and on which device each runs."""

from __future__ import annotations

from rsz_export.artifacts.manifest import EngineRecord, Manifest, load_manifest
from rsz_export.backends import load_backend, require_backend
from rsz_export.errors import UsageError
from rsz_export.plan.profiles import Plan, route
from rsz_export.shapes import Resolution


def device_for(backend: str, manifest: Manifest) -> str:
    """Where a backend's runners for ``manifest`` run (``Backend.device``): ``cpu`` or ``cuda``."""
    return load_backend(backend).device(manifest)


def engine_for(manifest: Manifest, backend: str, profile: int | None) -> EngineRecord:
    """The backend's engine that carries plan profile ``profile`` (the first of the backend's if None)."""
    engines = load_backend(backend).engines_of(manifest)
    for engine in engines:
        if profile is None or profile in engine.profiles:
            return engine
    raise UsageError(f"no {backend} engine carries plan profile {profile}; engines: {[e.name for e in engines]}")


def keeps_state_per_profile(engine: EngineRecord | None) -> bool:
    """Whether a runner keeps separate per-profile state (TensorRT: one execution context per profile; ONNX
    Runtime's TensorRT provider: one session per profile), so a change of shape happens per profile."""
    return engine is not None and load_backend(engine.backend).keeps_state_per_profile(engine)


def shape_change_feed(plan: Plan, engine: EngineRecord | None, batch: int, size: Resolution, previous):
    """The size to run just before timing ``size``, so the first timed call is the first after a change of shape
    in the state that serves it: ``previous`` when the same runner state serves both, else a corner (min, max,
    opt) of the profile serving ``size`` that differs from it. None when there is nothing to change from.

    An engine that carries only some profiles (engine per profile, or a profile built in another precision)
    refuses a size outside them, and a TensorRT context serves only its profile, so ``previous`` (another
    profile's size) would be refused or would change another context's shape."""
    if previous is None:
        return None
    profiles = plan.profiles if engine is None else [plan.profiles[i] for i in engine.profiles]
    here, there = route(profiles, batch, size.h, size.w), route(profiles, batch, previous.h, previous.w)
    if there is not None and (not keeps_state_per_profile(engine) or there == here):
        return previous
    profile = profiles[here]
    corners = (Resolution(c.h, c.w) for c in (profile.min, profile.max, profile.opt))
    return next((c for c in corners if c != size and profile.covers(batch, c.h, c.w)), None)


def variants(backend: str, manifest: Manifest, engines_dir: str, threads: int, device: str) -> list:
    """(variant name, opener(engine) -> runner context) pairs for a backend: one per engine kind or torch mode."""
    return require_backend(backend).bench_variants(manifest, engines_dir, threads, device)


def baseline_manifest(folder: str | None, batches, sizes, backends) -> Manifest | None:
    """The ``bench --baseline`` build, checked to hold an engine of every backend timed and to cover every point
    (UsageError otherwise, before anything is timed)."""
    if folder is None:
        return None
    baseline = load_manifest(folder)
    built = {e.backend for e in baseline.engines}
    missing = [b for b in backends if load_backend(b).builds and b not in built]
    if missing:
        raise UsageError(f"--baseline {folder} holds no {', '.join(missing)} engine")
    plan = baseline.plan
    outside = [f"{s}" for b in batches for s in sizes if route(plan.profiles, b, s.h, s.w) is None]
    if outside:
        raise UsageError(f"--baseline {folder} does not cover {', '.join(outside[:4])}",
                         hint=f"covered: {plan.covered_ranges()}")
    return baseline
