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
