"""Assemble one fake ``tensorrt`` module for a version: enums from the surface file, the implemented classes with
every member that version lacks hidden, and module functions."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np

from . import _builder, _context, _engine, _network, _runtime, _timing
from ._core import DimsBase, FakeGpu, HostMemoryBase, Knobs, World
from ._enums import make_enum
from ._surface import in_any, known_versions, load

ENUMS = (
    "NetworkDefinitionCreationFlag",
    "BuilderFlag",
    "MemoryPoolType",
    "ProfilingVerbosity",
    "HardwareCompatibilityLevel",
    "LayerInformationFormat",
    "ExecutionContextAllocationStrategy",
    "TensorIOMode",
    "DataType",
    "ErrorCode",
)
CLASSES = {
    "Builder": _builder.Builder,
    "IBuilderConfig": _builder.IBuilderConfig,
    "IOptimizationProfile": _builder.IOptimizationProfile,
    "ITimingCache": _timing.ITimingCache,
    "IProgressMonitor": _builder.IProgressMonitor,
    "INetworkDefinition": _network.INetworkDefinition,
    "ITensor": _network.ITensor,
    "OnnxParser": _network.OnnxParser,
    "ParserError": _network.ParserError,
    "Runtime": _runtime.Runtime,
    "ICudaEngine": _engine.ICudaEngine,
    "EngineInspector": _engine.EngineInspector,
    "IExecutionContext": _context.IExecutionContext,
    "Dims": DimsBase,
    "IHostMemory": HostMemoryBase,
}
_ALWAYS = {
    "__init__",
    "__bool__",
    "__len__",
    "__getitem__",
    "__iter__",
    "__eq__",
    "__hash__",
    "__str__",
    "__repr__",
    "__del__",
    "MAX_DIMS",
}


class _Absent:
    """A member this TensorRT version does not have: reading it raises AttributeError (so hasattr() is False)."""

    def __init__(self, owner: str, name: str):
        self.owner, self.name = owner, name

    def __get__(self, obj, objtype=None):
        raise AttributeError(f"'{self.owner}' object has no attribute '{self.name}' (not in TensorRT's API here)")


def _public_members(impl: type) -> set[str]:
    names = set()
    for klass in impl.__mro__:
        if klass in (object, bytes):
            continue
        names |= {n for n in vars(klass) if not n.startswith("_") or n in _ALWAYS}
    return names


def _versioned_class(world: World, name: str, impl: type) -> type:
    """``impl`` as the version's class ``name``: members missing from the surface raise AttributeError."""
    namespace = {"_world": world, "__module__": "tensorrt", "__qualname__": name}
    for member in _public_members(impl):
        if member in _ALWAYS:
            continue
        if not in_any(f"{name}.{member}"):
            raise AssertionError(f"fake_tensorrt implements {name}.{member}, which no TensorRT surface has")
        if not world.surface.has(f"{name}.{member}"):
            namespace[member] = _Absent(name, member)
    return type(name, (impl,), namespace)


class _LoggerMeta(type):
    def __call__(cls, *args, **kwargs):
        obj = super().__call__(*args, **kwargs)
        # pybind11 (detail/class.h pybind11_meta_call): a Python subclass of a bound class that overrides
        # __init__ without calling the base __init__ fails with this TypeError at construction.
        if not getattr(obj, "_trt_initialised", False):
            raise TypeError(f"{cls.__name__}.__init__() must be called when overriding __init__")
        return obj


def _logger_classes(world: World) -> tuple[type, type]:
    # Older surface files list the Severity members without values; the C++ enum (kINTERNAL_ERROR = 0 ...
    # kVERBOSE = 4) is unchanged across 10 and 11 (TENSORRT.md section 9, "Unchanged"), so any listing serves.
    values = world.surface.enums.get("ILogger.Severity") or next(
        load(v).enums["ILogger.Severity"] for v in known_versions() if "ILogger.Severity" in load(v).enums
    )
    severity = make_enum("Severity", values, arithmetic=True)
    world.severity = severity

    def ilogger_init(self):
        self._trt_initialised = True

    def ilogger_log(self, severity, msg):  # pure virtual: the trampoline reports the missing override
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')

    members = {"__init__": ilogger_init, "log": ilogger_log, "Severity": severity, "__module__": "tensorrt"}
    members.update({name: getattr(severity, name) for name in severity.__members__})  # .export_values()
    ilogger = _LoggerMeta("ILogger", (), members)

    def logger_init(self, min_severity=severity.WARNING):
        ilogger_init(self)
        self.min_severity = min_severity

    def logger_log(self, severity, msg):
        if (
            severity <= self.min_severity
        ):  # pyCore.cpp DefaultLogger::log: "INFO is the largest value, so this comparison is inverted"
            print(f"[TRT] [{severity.name[0]}] {msg}")

    logger = _LoggerMeta("Logger", (ilogger,), {"__init__": logger_init, "log": logger_log, "__module__": "tensorrt"})
    return ilogger, logger


def _datatype_enum(world: World) -> type:
    itemsize = {
        "FLOAT": 4,
        "HALF": 2,
        "BF16": 2,
        "INT8": 1,
        "INT32": 4,
        "INT64": 8,
        "BOOL": 1,
        "UINT8": 1,
        "FP8": 1,
        "INT4": 0.5,
        "FP4": 0.5,
        "E8M0": 1,
    }
    return make_enum(
        "DataType", world.surface.enums["DataType"], extra={"itemsize": property(lambda self: itemsize[self._name])}
    )


def _nptype(trt_type):
    """trt.nptype (tensorrt/__init__.py): numpy type for a DataType; TypeError for types numpy lacks."""
    mapping = {
        "FLOAT": np.float32,
        "HALF": np.float16,
        "INT8": np.int8,
        "INT32": np.int32,
        "INT64": np.int64,
        "BOOL": np.bool_,
        "UINT8": np.uint8,
    }
    if trt_type.name not in mapping:
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return mapping[trt_type.name]


def _volume(iterable) -> int:
    """trt.volume: product of the dims (1 for an empty shape)."""
    out = 1
    for d in iterable:
        out *= d
    return out


def make_module(
    version: str = "10.16.1.11", gpu: FakeGpu | None = None, knobs: Knobs | None = None
) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module for ``version`` (a surface in tests/data/tensorrt-api/)."""
    world = World(load(version), gpu or FakeGpu(), knobs or Knobs())
    world.classes = {}
    module = types.ModuleType("tensorrt", f"fake TensorRT {version} (fake_tensorrt test double)")
    module.__version__ = version
    # A module spec as an installed package has one: torch._dynamo (trace_rules.add, run at `import torchvision`)
    # and anything else calling importlib.util.find_spec("tensorrt") read sys.modules["tensorrt"].__spec__ and
    # raise ValueError when it is None (importlib.util.find_spec, CPython Lib/importlib/util.py). The origin is
    # this package's __init__.py, standing in for site-packages/tensorrt/__init__.py.
    origin = Path(__file__).with_name("__init__.py")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None, origin=str(origin), is_package=True)
    module.__file__, module.__path__ = str(origin), []
    module._fake = world  # the test-side handle: world.gpu, world.knobs, world.device
    for name in ENUMS:
        cls = _datatype_enum(world) if name == "DataType" else make_enum(name, world.surface.enums[name])
        cls.__module__ = "tensorrt"
        world.classes[name] = cls
    world.classes["ILogger"], world.classes["Logger"] = _logger_classes(world)
    for name, impl in CLASSES.items():
        world.classes[name] = _versioned_class(world, name, impl)
    for name, cls in world.classes.items():
        if not world.surface.has(name):
            raise AssertionError(f"{name} is not a class of TensorRT {version}")
        setattr(module, name, cls)
    module.nptype, module.volume = _nptype, _volume
    return module


def install(monkeypatch, version: str = "10.16.1.11", **kwargs) -> types.ModuleType:
    """Put a fresh fake module in sys.modules as ``tensorrt`` for one test (pytest's monkeypatch undoes it)."""
    module = make_module(version, **kwargs)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module
