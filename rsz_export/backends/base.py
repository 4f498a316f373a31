"""The backend contract: ``Backend``, one object per runtime that holds every fact about it the stages need, the
options it builds and opens runners with, and ``Runner``, what ``Backend.open_runner`` returns.

A backend (ONNX Runtime in ``ort``, TensorRT in ``trt``, the PyTorch reference in ``pyt``) is a subclass of
``Backend``. The registry (``backends.load_backend``) imports its module and makes its one instance on first use;
the module imports its runtime only inside functions, so ``rsz-export --help`` and ``plan`` need none of them.
Code outside ``backends/`` never asks which backend it holds: it asks the object (``device``, ``builds``,
``static_twin``, ``triton_model``, ...). A new backend is a module here, an entry in ``backends.BACKENDS`` and
its extra in pyproject.toml (docs/architecture.md, "Where to add things").

Runners are context managers: enter allocates (and verifies the engine's sha256 first), ``infer`` checks the
feed then runs, exit frees. They are interchangeable in parity, bench and serving code.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rsz_export.artifacts.host import MAX_THREADS
from rsz_export.artifacts.manifest import EngineRecord, FileRecord, Manifest
from rsz_export.errors import RszError, UsageError, check_int
from rsz_export.interface import CHANNELS, DEFAULT_PRECISION, Log
from rsz_export.plan.profiles import Plan, route
from rsz_export.shapes import MAX_SIZE, MIN_SIZE, InputShape

TIMING_CACHE_NAME = "timing.cache"
"""The build folder's timing cache (for backends that keep one): shared by every build there, so it outlives the
engine folders; named by no key because what it holds is checked on use (``pipeline.cleanup``)."""


@dataclass(frozen=True)
class BuildOptions:
    """Backend build settings. Fields a backend does not use are ignored by it (and not in its cache key)."""

    precision: str = DEFAULT_PRECISION
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


@dataclass(frozen=True)
class RunnerOptions:
    """How a runner is opened. Each backend's ``open_runner`` says which fields it uses; the others do not apply
    to it (TensorRT runs on the GPU and has no CPU thread setting, the PyTorch reference uses neither)."""

    threads: int | None = None
    """CPU threads of the runtime's operators (ONNX Runtime's intra-op threads); None: the engine's own setting."""
    pinned: InputShape | None = None
    """Fix batch, height and width to this shape when the runner is made (the shape-fixed twin bench times);
    None: the engine's dynamic shapes."""

    def __post_init__(self) -> None:
        if self.threads is not None:
            check_int(self.threads, "threads", 1, MAX_THREADS)
        if self.pinned is not None and not isinstance(self.pinned, InputShape):
            raise UsageError(f"pinned must be an InputShape, got {type(self.pinned).__name__}")


@dataclass(frozen=True)
class TritonModel:
    """How Triton serves one engine: the facts of its ``config.pbtxt`` and the file its model folder holds."""

    platform: str
    """``platform`` in config.pbtxt: ``tensorrt_plan``, ``onnxruntime_onnx``."""
    backend: str
    """``backend`` in config.pbtxt: the Triton backend that loads the file."""
    kind: str
    """The instance group's kind: ``KIND_GPU`` or ``KIND_CPU``."""
    served: FileRecord
    """The build folder's file Triton loads (its sha256 is checked when it is copied)."""
    file_name: str
    """Its name in the model's version folder: ``model.plan``, ``model.onnx``."""
    engine_bound: bool
    """The engine runs only the plan's batch range (TensorRT), not any batch (ONNX Runtime)."""
    profiles: tuple[str, ...] = ()
    """Optimization profiles the instance group names (TensorRT's, by index)."""
    parameters: tuple[tuple[str, str], ...] = ()
    """``parameters`` of config.pbtxt (ONNX Runtime's thread counts)."""
    runtime_version: str | None = None
    """The runtime version the file needs exactly (a TensorRT plan runs only on the TensorRT that built it), for
    the repository's notes; None when any version loads it."""
    extra_files: tuple[tuple[FileRecord, str], ...] = ()
    """Further build files the model folder holds, each with its name there (OpenVINO's ``model.bin``)."""


StaticTwin = contextlib.AbstractContextManager[Callable[[Any], Any]]
"""What ``Backend.static_twin`` returns: entered, a call ``infer(feed) -> logits`` on the shape-fixed engine."""
BenchVariant = tuple[str, Callable[[EngineRecord | None], contextlib.AbstractContextManager]]
"""(variant name, opener): ``opener(engine)`` is a runner context of that variant (``Backend.bench_variants``)."""


class Backend(abc.ABC):
    """One runtime: what it is, what it can build and run, where, and how bench and Triton use it.

    Subclasses set the class attributes and implement the abstract methods; the other methods have the default
    that suits a backend without the feature, and are overridden where it has it.
    """

    name: ClassVar[str]
    """What users give (``--backend``) and manifests record (``EngineRecord.backend``)."""
    precisions: ClassVar[tuple[str, ...]]
    """The precisions it builds (or, for the reference, runs), a subset of ``interface.PRECISIONS``."""
    extra: ClassVar[str | None] = None
    """The pip extra of rsz-export that installs its runtime (``pip install "rsz-export[EXTRA]"``); None when the
    package's own dependencies do."""
    builds: ClassVar[bool] = True
    """Whether it builds engines from the ONNX export; False for the PyTorch reference, which has no engine file
    and runs the build's weights."""
    gpu_only: ClassVar[bool] = False
    """Its engines run only on a CUDA GPU (TensorRT): bench then runs the PyTorch baseline on the GPU too."""
    gives_every_output: ClassVar[bool] = True
    """Its runners give every output of the model (``infer_all``), as a backbone's feature maps need."""
    shares_graph: ClassVar[bool] = False
    """One graph serves every profile alike (no per-profile kernels): validate runs a size once for all profiles."""
    times_on_current_stream: ClassVar[bool] = False
    """Its work is queued on the caller's current CUDA stream (PyTorch), so bench times it with CUDA events; the
    others sync their own streams before returning host arrays and are timed by the wall clock."""
    measures_gpu_time: ClassVar[bool] = False
    """Its runners record ``last_latency_ms``, the GPU time of their last call, which bench reports beside the
    end-to-end latency."""
    uses_timing_cache: ClassVar[bool] = False
    """Its build reads and writes a timing cache (``BuildOptions.timing_cache``): the build folder's one is kept
    only when ``timing_cache_problem`` finds nothing wrong with it."""

    @abc.abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when it can run on this machine, else why not and what to install (``require_backend``: exit 3)."""

    @abc.abstractmethod
    def check_compatible(self, manifest: Manifest, engine: EngineRecord | None) -> str | None:
        """None when a built engine may run here, else what differs (another GPU, another runtime version)."""

    @abc.abstractmethod
    def open_runner(
        self, manifest: Manifest, engine: EngineRecord | None, out_dir: str | Path, options: RunnerOptions | None = None
    ) -> Runner:
        """A runner for ``engine`` of ``manifest`` (files relative to ``out_dir``; None: every engine of this backend
        where the backend serves them as one, the reference's model for the reference) with ``options`` (None:
        the defaults); enter it to load."""

    def engine_device(self, engine: EngineRecord) -> str:
        """Where ``engine`` runs: ``cpu`` or ``cuda``."""
        return "cpu"

    def device(self, manifest: Manifest) -> str:
        """Where its runners for ``manifest`` run: ``cuda`` when one of its engines does, else ``cpu``."""
        return "cuda" if any(self.engine_device(e) == "cuda" for e in self.engines_of(manifest)) else "cpu"

    def engines_of(self, manifest: Manifest) -> tuple[EngineRecord, ...]:
        """The manifest's engines built by this backend."""
        return tuple(e for e in manifest.engines if e.backend == self.name)

    def check_options(self, options: BuildOptions) -> None:
        """Refuse build options it cannot use before anything is written: UsageError (exit 2) for what it never
        supports, EnvironmentProblem (exit 3) for what this machine lacks. Here: the precision."""
        if options.precision not in self.precisions:
            from rsz_export.backends import precision_fix

            raise UsageError(
                f"precision {options.precision} is not available on backend {self.name}; "
                f"allowed: {', '.join(self.precisions)}",
                hint=precision_fix(options.precision, self.name),
            )

    def builds_on_this_cpu(self, precision: str) -> bool:
        """Whether it builds ``precision`` engines that run on this machine's CPU (what ``auto`` weighs without a
        GPU): its option checks pass for the CPU."""
        if not self.builds or self.gpu_only:
            return False
        try:
            self.check_options(BuildOptions(precision=precision))
        except RszError:
            return False
        return True

    def build_engines(
        self, onnx_path: Path, plan: Plan, options: BuildOptions, out_dir: Path, log: Log
    ) -> list[EngineRecord]:
        """Build engines for every profile of ``plan`` from ``onnx_path`` into ``out_dir`` (files named relative
        to it) and return their records (file hashes, profiles, settings)."""
        raise UsageError(f"backend {self.name} does not build engines")

    def recorded_options(self, engine: EngineRecord) -> BuildOptions:
        """The options ``engine`` was built with, read back from its record (to build it again, e.g. fixed to one
        shape)."""
        return BuildOptions(precision=engine.precision)

    def timing_cache_problem(self, settings: dict) -> str | None:
        """None when the timing cache written beside engines of these build ``settings`` suits this machine, else
        why not (the build then starts a new one). Only asked when ``uses_timing_cache``."""
        return None

    def keeps_state_per_profile(self, engine: EngineRecord | None) -> bool:
        """Whether its runner keeps separate state per profile (a change of shape then happens per profile)."""
        return False

    def static_twin(
        self, manifest: Manifest, engine: EngineRecord, out_dir: str | Path, shape: InputShape,
        options: RunnerOptions, log: Log,
    ) -> StaticTwin:
        """The same engine fixed to ``shape``, what bench times beside the dynamic one. Here: the runner opened
        with ``pinned=shape`` (a backend whose runner cannot pin a shape overrides this)."""
        return _pinned(self, manifest, engine, out_dir, RunnerOptions(options.threads, shape))

    def bench_variants(self, manifest: Manifest, out_dir: str | Path, threads: int, device: str) -> list[BenchVariant]:
        """What bench times for this backend: one dynamic runner per engine, with ``threads``."""
        options = RunnerOptions(threads=threads)
        return [("dynamic", lambda engine: self.open_runner(manifest, engine, out_dir, options))]

    def int8_model(self):
        """The Q/DQ model settings (``model.quantization``) its int8 engines are made from, on which the layers
        kept in float are judged: here the CPU model for this CPU."""
        from rsz_export.model.quantization import cpu_qdq

        return cpu_qdq()

    def peak_math(self, manifest: Manifest) -> str:
        """The arithmetic its engines may use, which bench judges their efficiency against."""
        return "fp32"

    def matmul_peak(self, n: int, threads: int, device: str) -> Callable[[], Any] | None:
        """A call running one FP32 [n,n]x[n,n] product on its own runtime, for bench's peak; None: PyTorch's."""
        return None

    def engine_memory(self, engine: EngineRecord, profile: int | None) -> dict:
        """Device memory figures the engine records for ``profile`` (MiB), which torch's allocator does not see."""
        return {}

    def triton_model(self, manifest: Manifest, engine: EngineRecord) -> TritonModel | None:
        """How Triton serves ``engine``; None when Triton has no backend for it."""
        return None


@contextlib.contextmanager
def _pinned(backend: Backend, manifest, engine, out_dir, options: RunnerOptions) -> Iterator[Callable]:
    with backend.open_runner(manifest, engine, out_dir, options) as runner:
        yield lambda feed: runner.infer(feed)


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

    @property
    def thread_safe(self) -> bool:
        """Whether ``infer`` may be called from several threads at once (one runner then serves them all, and
        ``last_profile`` is only the latest of them)."""
        return False

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

    def infer_all(self, images, profile: int | None = None) -> list:
        """Every output of the model for ``images``, in the model's order (``Manifest.output_names``): the one
        ``logits`` of a classifier, or a backbone's feature maps. Checked and routed as ``infer`` is."""
        chosen = self.serving_profile(images, profile)
        outputs = self._run_all(images, chosen)
        self.last_profile = chosen
        return outputs

    @abc.abstractmethod
    def _run(self, images, profile: int | None):
        """Run a checked feed on ``profile`` (a plan index, None without profiles); returns numpy logits (the
        first output)."""

    def _run_all(self, images, profile: int | None) -> list:
        """Every output of a checked feed; backends that run models with several outputs override it."""
        return [self._run(images, profile)]
