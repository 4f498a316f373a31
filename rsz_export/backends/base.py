"""The contract every backend module (ort.py, trt.py, pyt.py) follows.

A backend module provides:

    NAME: str
    PRECISIONS: tuple[str, ...]
    unavailable_reason() -> str | None        None when usable here, else why not and what to install
    build_engines(onnx_path, plan, options, out_dir, log) -> list[EngineRecord]
    open_runner(manifest, engine, out_dir, **kwargs) -> Runner

Runners are context managers: enter allocates (and verifies the engine's sha256 first), ``infer`` checks
the feed then runs, exit frees. They are interchangeable in parity, bench and serving code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from rsz_export.errors import UsageError
from rsz_export.planning import Plan, route

Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildOptions:
    """Backend build settings. Fields a backend does not use are ignored by it (and not in its cache key)."""

    precision: str = "fp32"
    threads: int | None = None
    device: str = "cpu"
    workspace_mib: int | None = None
    opt_level: int = 3
    timing_cache: str | None = None
    engine_per_profile: bool = False
    tf32: bool = True
    hardware_compat: str | None = None
    version_compat: bool = False


@runtime_checkable
class Runner(Protocol):
    """Runs float32 NCHW images and returns float32 logits [N, 1000] as numpy arrays."""

    name: str
    last_profile: int | None
    """The plan profile index that served the last call (None for backends without profiles)."""

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: Any) -> None: ...

    def infer(self, images: Any, profile: int | None = None) -> Any:
        """Run ``images`` (numpy float32, NCHW). ``profile`` forces a plan profile; None routes by shape."""
        ...


def check_feed(images) -> None:
    """UsageError unless ``images`` is a float32 NCHW array with 3 channels."""
    import numpy as np

    if not isinstance(images, np.ndarray) or images.dtype != np.float32 or images.ndim != 4 or images.shape[1] != 3:
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise UsageError(f"input must be a float32 NCHW array with 3 channels, got {dtype} {shape}")


def route_or_raise(plan: Plan, engine_profiles, images) -> int:
    """Check the feed and route it among ``engine_profiles`` (plan indices); UsageError if none covers it."""
    check_feed(images)
    n, _, h, w = images.shape
    local = route([plan.profiles[i] for i in engine_profiles], n, h, w)
    if local is None:
        raise UsageError(
            f"input {n}x3x{h}x{w} is outside every profile of this engine: {plan.covered_ranges()}",
            hint="rebuild with a wider --min/--max or --batch",
        )
    return engine_profiles[local]
