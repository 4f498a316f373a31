"""The contract every backend module (``ort``, ``trt``, ``pyt``) follows, and the runner base class.

A backend module provides (``backends.REQUIRED`` lists the names; a test checks every module has them):

    NAME: str
    SUPPORTED_PRECISIONS: tuple[str, ...]     the precisions it builds or runs
    unavailable_reason() -> str | None        None when usable here, else why not and what to install
    check_compatible(manifest, engine) -> str | None
                                              None when a built engine may run here, else what differs
    build_engines(onnx_path, plan, options, out_dir, log) -> list[EngineRecord]
    open_runner(manifest, engine, out_dir, **kwargs) -> Runner

Runners are context managers: enter allocates (and verifies the engine's sha256 first), ``infer`` checks the
feed then runs, exit frees. They are interchangeable in parity, bench and serving code.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rsz_export.errors import UsageError
from rsz_export.interface import CHANNELS
from rsz_export.plan.profiles import Plan, route
from rsz_export.shapes import MAX_SIZE, MIN_SIZE


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
    calibration: str | None = None
    """int8: the calibrated ranges' JSON file (``pipeline.calibration_stage``), set by the build."""


def check_feed(images) -> tuple[int, int, int]:
    """(batch, height, width) of a float32 NCHW array with 3 channels; UsageError otherwise. Nothing is cast:
    a float64 or uint8 array is refused, not silently converted."""
    import numpy as np

    if not isinstance(images, np.ndarray) or images.dtype != np.float32 or images.ndim != 4:
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise UsageError(f"input must be a float32 NCHW array, got {dtype} {shape}")
    n, c, h, w = images.shape
    if c != CHANNELS:
        raise UsageError(f"input must have {CHANNELS} channels (RGB), got {c} in shape {images.shape}")
    if n < 1:
        raise UsageError(f"input holds no image: shape {images.shape}")
    return n, h, w


class Runner(abc.ABC):
    """Runs float32 NCHW images through one engine (or one model) and returns float32 logits [N, classes].

    ``infer`` checks the feed (dtype, rank, channels) and that a profile this runner serves covers it, then
    hands the checked array and the chosen plan profile to the backend's ``_run``. Without a plan or profiles
    (the exported ONNX itself, the PyTorch reference) every size ResNet-50 accepts is served.
    """

    name: str = "runner"

    def __init__(self, plan: Plan | None, profiles: Sequence[int] = ()):
        self.profiles = tuple(profiles) if plan is not None else ()
        self.plan = plan if self.profiles else None
        self.last_profile: int | None = None
        """The plan profile that served the last call (None for the PyTorch reference)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def serving_profile(self, images, profile: int | None = None) -> int | None:
        """The plan profile that serves ``images`` (checked as ``check_feed`` does); ``profile`` forces one,
        which must be served by this runner and cover the input. UsageError naming the covered ranges."""
        n, h, w = check_feed(images)
        if self.plan is None:
            if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= w <= MAX_SIZE):
                raise UsageError(f"input {h}x{w} is outside the sides ResNet-50 accepts ({MIN_SIZE}..{MAX_SIZE})")
            return None
        shape = f"{n}x{CHANNELS}x{h}x{w}"
        if profile is not None:
            if profile not in self.profiles or not self.plan.profiles[profile].covers(n, h, w):
                raise UsageError(
                    f"plan profile {profile} cannot serve {shape} here; this engine covers "
                    + self.plan.covered_ranges(self.profiles)
                )
            return profile
        local = route([self.plan.profiles[i] for i in self.profiles], n, h, w)
        if local is None:
            raise UsageError(
                f"input {shape} is outside every profile of this engine: {self.plan.covered_ranges(self.profiles)}",
                hint="rebuild with a wider --min/--max or --batch",
            )
        return self.profiles[local]

    def infer(self, images, profile: int | None = None):
        """Run ``images`` (numpy float32, NCHW). ``profile`` forces a plan profile; None routes by shape."""
        chosen = self.serving_profile(images, profile)
        logits = self._run(images, chosen)
        self.last_profile = chosen
        return logits

    @abc.abstractmethod
    def _run(self, images, profile: int | None):
        """Run a checked feed on ``profile`` (a plan index, None without profiles); returns numpy logits."""
