"""Shared pieces: the per-module world (version, GPU, knobs, device), logging through the binding's callback
wrapper, Dims, IHostMemory and the "no constructor" rule for classes TensorRT creates itself."""

from __future__ import annotations

import signal
import sys
import traceback
from dataclasses import dataclass, field

import numpy as np

from ._device import FakeDevice
from ._surface import Surface


@dataclass
class FakeGpu:
    """The GPU the double pretends to run on. Engines and timing caches record it."""

    name: str = "NVIDIA H100 80GB HBM3"
    compute_capability: tuple = (9, 0)
    total_memory: int = 80 << 30
    uuid: str = "GPU-00000000-fake-0000-0000-000000000000"

    def to_dict(self) -> dict:
        return {"name": self.name, "cc": list(self.compute_capability)}


@dataclass
class Knobs:
    """Failure modes a test can switch on. Each models a documented failure, not invented behaviour."""

    min_workspace_bytes: int = 0
    """A build whose WORKSPACE pool limit is below this fails (NvInfer.h setMemoryPoolLimit: the plan is
    "constrained by these limits or report[s] which constraint caused the failure")."""
    sigint_at_build_step: int | None = None
    """Deliver ``build_signal`` (signal.raise_signal) during build step N. The Python-level handler then runs inside
    the next Python callback the library makes (a log() or progress-monitor call), as with the real native build,
    where the interpreter only runs Python code in callbacks."""
    build_signal: int = signal.SIGINT
    """The signal ``sigint_at_build_step`` delivers (SIGTERM reaches a native build the same way)."""
    profile_sharing: bool = False
    """False: two live contexts of one engine may not select the same profile (NvInferRuntime.h, class comment
    of IExecutionContext: "each execution context in concurrent use must use a separate optimization profile").
    True: the 10.0 PROFILE_SHARING_0806 documentation's "always on" (TENSORRT.md section 8 point 3)."""
    build_log: list = field(default_factory=list)
    """Every (severity, message) the double logged, for tests of the double."""


class World:
    """Everything one fake ``tensorrt`` module shares: its version, GPU, device memory and knobs."""

    def __init__(self, surface: Surface, gpu: FakeGpu, knobs: Knobs):
        self.surface = surface
        self.version = surface.version
        self.vtuple = tuple(int(x) for x in surface.version.split("."))
        self.major = self.vtuple[0]
        self.gpu = gpu
        self.knobs = knobs
        self.device = FakeDevice(gpu.total_memory)
        self.pending_sigint = False
        self.severity = None  # the ILogger.Severity enum, set by the module builder

    def at_least(self, *version: int) -> bool:
        return self.vtuple[: len(version)] >= version


def raise_no_constructor(self, *args, **kwargs):
    # pybind11 classes bound without py::init raise this TypeError when Python code instantiates them
    # (pybind11/detail/class.h pybind11_object_init: "No constructor defined!").
    raise TypeError(f"{type(self).__module__}.{type(self).__name__}: No constructor defined!")


def internal(cls, **state):
    """Create an object of a class whose public constructor is disabled (TensorRT makes these itself)."""
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def check_logger(world: World, logger, where: str) -> None:
    # The C++ signatures take an ILogger&; pybind11 rejects anything else with TypeError
    # ("incompatible function arguments").
    if not isinstance(logger, world.classes["ILogger"]):
        raise TypeError(f"{where}(): incompatible function arguments: expected tensorrt.ILogger, got {type(logger)}")


def call_python(world: World, what: str, fn, *args, on_error=None):
    """Call a Python override from "native" code the way TensorRT's trampolines do.

    python/src/infer/pyCore.cpp: PyLogger::log, PyProgressMonitor::phaseStart/stepComplete/phaseFinish wrap the
    call in ``try {...} catch (std::exception const& e) { std::cerr << "[ERROR] Exception caught in log(): " ... }``.
    A Python exception, KeyboardInterrupt included, reaches C++ as pybind11::error_already_set (a
    std::exception), so it is printed to stderr and dropped. ``on_error`` is what the trampoline returns then
    (stepComplete returns false: "Use the exception as an indicator that we should cancel the build").
    A pending simulated SIGINT is delivered here, inside the try, because this is where the interpreter would
    next run Python code.
    """
    try:
        if world.pending_sigint:
            world.pending_sigint = False
            signal.raise_signal(world.knobs.build_signal)
        return fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the trampoline catches everything
        detail = f": {exc}" if str(exc) else f": {type(exc).__name__}"
        print(f"[ERROR] Exception caught in {what}(){detail}", file=sys.stderr)
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            traceback.print_exc(limit=2, file=sys.stderr)
        return on_error


def log(world: World, logger, severity_name: str, message: str) -> None:
    """Send one message to the user's logger through the trampoline (and keep it for tests)."""
    severity = getattr(world.severity, severity_name)
    world.knobs.build_log.append((severity_name, message))
    call_python(world, "log", logger.log, severity, message)


# -- Dims -------------------------------------------------------------------------------------------------------
class DimsBase:
    """trt.Dims: python/src/infer/pyFoundationalTypes.cpp. ``len`` is nbDims (so an invalid Dims with
    nbDims == -1 makes len()/tuple() raise), indexing checks bounds (IndexError "Out of bounds"),
    equality with lists and tuples, str like "(1, 3, 224, 224)"."""

    MAX_DIMS = 8

    def __init__(self, shape=()):
        shape = list(shape)
        if len(shape) > self.MAX_DIMS:
            raise ValueError("The number of input dims exceeds the maximum allowed number of dimensions")
        self._nb, self._d = len(shape), [int(x) for x in shape]

    @classmethod
    def _invalid(cls):
        obj = cls()
        obj._nb, obj._d = -1, []
        return obj

    def __len__(self):
        return self._nb  # -1 -> ValueError: __len__() should return >= 0

    def __getitem__(self, index):
        i = index + self._nb if index < 0 else index
        if not 0 <= i < self._nb:
            raise IndexError("Out of bounds")
        return self._d[i]

    def __eq__(self, other):
        if isinstance(other, DimsBase):
            return self._nb == other._nb and self._d == other._d
        if isinstance(other, (list, tuple)):
            return self._nb == len(other) and self._d == [int(x) for x in other]
        return NotImplemented

    def __hash__(self):
        return hash((self._nb, tuple(self._d)))

    def __str__(self):
        if self._nb == 1:
            return f"({self._d[0]},)"
        return "(" + ", ".join(str(x) for x in self._d) + ")"

    __repr__ = __str__


def as_dims(world: World, value, what: str):
    """Accept Dims, tuple or list as the bindings do (implicit conversion); TypeError otherwise."""
    Dims = world.classes["Dims"]
    if isinstance(value, DimsBase):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(x, (int, np.integer)) for x in value):
        return Dims(value)
    raise TypeError(f"{what}: incompatible function arguments: expected Dims, tuple or list of ints, got {value!r}")


# -- IHostMemory ---------------------------------------------------------------------------------------------------
class HostMemoryBase(bytes):
    """trt.IHostMemory (pyFoundationalTypes.cpp): buffer protocol, ``dtype``, ``nbytes`` and nothing else.

    It is a bytes subclass here only to get the buffer protocol in pure Python (3.11 has no __buffer__); the
    sequence methods the real object lacks raise TypeError."""

    def __len__(self):
        raise TypeError("object of type 'IHostMemory' has no len(); use .nbytes")

    def __getitem__(self, item):
        raise TypeError("'IHostMemory' object is not subscriptable; use memoryview(obj)")

    def __iter__(self):
        raise TypeError("'IHostMemory' object is not iterable; use memoryview(obj)")

    @property
    def nbytes(self) -> int:
        return bytes.__len__(self)

    @property
    def dtype(self):
        return self._world_ref.classes["DataType"].UINT8


def buffer_bytes(value, what: str) -> bytes:
    """The bytes of a py::buffer argument (bytes, bytearray, memoryview, IHostMemory, numpy); TypeError else."""
    if isinstance(value, str):
        raise TypeError(f"{what}: incompatible function arguments: str is not a buffer")
    try:
        return bytes(memoryview(value).cast("B"))
    except TypeError:
        raise TypeError(f"{what}: incompatible function arguments: {type(value).__name__} is not a buffer") from None


def host_memory(world: World, data: bytes):
    obj = world.classes["IHostMemory"](data)
    obj._world_ref = world
    return obj
