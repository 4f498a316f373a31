"""Builder, IBuilderConfig, IOptimizationProfile and IProgressMonitor; the build itself is in ``_build``."""

from __future__ import annotations

import hashlib

from ._core import (
    World,
    as_dims,
    buffer_bytes,
    check_logger,
    host_memory,
    internal,
    log,
    raise_no_constructor,
)
from ._timing import new_timing_cache

MAX_OPT_LEVEL = 5  # NvInfer.h setBuilderOptimizationLevel: "Valid values include integers from 0 to ... 5"
_PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4")


def _check_enum(world: World, value, enum: str, where: str):
    # pybind11 enum arguments accept only members of that enum (TypeError "incompatible function arguments").
    if not isinstance(value, world.classes[enum]):
        raise TypeError(f"{where}: incompatible function arguments: expected tensorrt.{enum}, got {value!r}")


# -- progress monitor ---------------------------------------------------------------------------------------------
class IProgressMonitor:
    """Base class for Python progress monitors (python/src/infer/pyCore.cpp PyProgressMonitor trampoline).

    The builder calls phase_start(phase_name, parent_phase, num_steps), step_complete(phase_name, step) -> bool
    and phase_finish(phase_name) (NvInferRuntime.h IProgressMonitor). step_complete returning False cancels the
    build ("Returning false ... will cause the build to be cancelled"); an exception in step_complete is printed
    and also cancels it, an exception in the others is printed and ignored."""

    def __init__(self):
        self._trt_initialised = True

    def phase_start(self, phase_name, parent_phase, num_steps):  # pure virtual in C++
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_start"')

    def step_complete(self, phase_name, step):
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::step_complete"')

    def phase_finish(self, phase_name):
        raise RuntimeError('Tried to call pure virtual function "IProgressMonitor::phase_finish"')


# -- optimization profile ----------------------------------------------------------------------------------------
class IOptimizationProfile:
    __init__ = raise_no_constructor

    def set_shape(self, input, min, opt, max):  # noqa: A002 - the binding's parameter names
        """pyCore.cpp opt_profile_set_shape: setDimensions(kMIN), then kOPT, then kMAX, each failure raising
        RuntimeError("Shape provided for min|opt|max is inconsistent with other shapes.") through
        PY_ASSERT_RUNTIME_ERROR (python/include/utils.h). The docstring (pyCoreDoc.h) says ValueError; the
        implementation raises RuntimeError, so callers must catch both. A failure leaves the earlier selectors
        set, which makes the profile invalid (isValid false)."""
        world = self._world
        shapes = [as_dims(world, s, "set_shape") for s in (min, opt, max)]
        entry = self._shapes.setdefault(str(input), [None, None, None])
        for k, (label, dims) in enumerate(zip(("min", "opt", "max"), shapes)):
            # NvInferRuntime.h IOptimizationProfile::setDimensions rules checkable without the network:
            # 0 <= min[i] <= opt[i] <= max[i], and equal ranks.
            previous = entry[k - 1] if k else None
            bad = any(d < 0 for d in dims) or (
                previous is not None and (len(previous) != len(dims) or any(a > b for a, b in zip(previous, dims)))
            )
            if bad:
                raise RuntimeError(f"Shape provided for {label} is inconsistent with other shapes.")
            entry[k] = dims

    def get_shape(self, input):  # noqa: A002
        entry = self._shapes.get(str(input))
        return [] if entry is None or entry[0] is None else list(entry)  # pyCore.cpp opt_profile_get_shape

    def __bool__(self):
        # IOptimizationProfile::isValid: min, opt and max set together for every input named.
        return all(all(d is not None for d in entry) for entry in self._shapes.values())


# -- builder config --------------------------------------------------------------------------------------------------
class IBuilderConfig:
    __init__ = raise_no_constructor

    def _setup(self, builder):
        world = self._world
        self._builder = builder
        # BuilderFlag.TF32 is on by default (NvInfer.h BuilderFlag::kTF32 "Enable TF32 ... enabled by default").
        self._flags = {int(world.classes["BuilderFlag"].TF32)}
        self._opt_level = 3  # setBuilderOptimizationLevel: "The default optimization level is 3"
        self._verbosity = world.classes["ProfilingVerbosity"].LAYER_NAMES_ONLY
        self._hw = world.classes["HardwareCompatibilityLevel"].NONE
        # setMemoryPoolLimit: WORKSPACE defaults to the device's total global memory.
        self._pools = {0: world.gpu.total_memory}
        self._profiles, self._timing_cache, self._monitor = [], None, None
        return self

    # flags
    def set_flag(self, flag) -> None:
        _check_enum(self._world, flag, "BuilderFlag", "set_flag")
        self._flags.add(int(flag))

    def clear_flag(self, flag) -> None:
        _check_enum(self._world, flag, "BuilderFlag", "clear_flag")
        self._flags.discard(int(flag))

    def get_flag(self, flag) -> bool:
        _check_enum(self._world, flag, "BuilderFlag", "get_flag")
        return int(flag) in self._flags

    @property
    def flags(self) -> int:
        return sum(1 << v for v in self._flags)

    @flags.setter
    def flags(self, mask: int) -> None:
        valid = {int(m) for m in self._world.classes["BuilderFlag"].__members__.values()}
        self._flags = {v for v in valid if mask >> v & 1}

    def _has(self, name: str) -> bool:
        member = getattr(self._world.classes["BuilderFlag"], name, None)
        return member is not None and int(member) in self._flags

    # memory pools
    def set_memory_pool_limit(self, pool, pool_size: int) -> None:
        _check_enum(self._world, pool, "MemoryPoolType", "set_memory_pool_limit")
        if not isinstance(pool_size, int) or pool_size < 0:  # size_t parameter: pybind11 rejects negatives
            raise TypeError("set_memory_pool_limit(): incompatible function arguments: pool_size must be >= 0")
        self._pools[int(pool)] = pool_size

    def get_memory_pool_limit(self, pool) -> int:
        _check_enum(self._world, pool, "MemoryPoolType", "get_memory_pool_limit")
        return self._pools.get(int(pool), 0)

    # optimization level, verbosity, hardware compatibility
    @property
    def builder_optimization_level(self) -> int:
        return self._opt_level

    @builder_optimization_level.setter
    def builder_optimization_level(self, level: int) -> None:
        if not isinstance(level, int) or isinstance(level, bool):
            raise TypeError("builder_optimization_level must be an int")
        if level < 0:  # "Must be non-negative": the noexcept setter reports an error and keeps the old value
            log(
                self._world, self._builder._logger, "ERROR", f"IBuilderConfig::setBuilderOptimizationLevel: {level} < 0"
            )
            return
        self._opt_level = level  # above 5 "results in behavior identical to the maximum level"

    @property
    def profiling_verbosity(self):
        return self._verbosity

    @profiling_verbosity.setter
    def profiling_verbosity(self, value) -> None:
        _check_enum(self._world, value, "ProfilingVerbosity", "profiling_verbosity")
        self._verbosity = value

    @property
    def hardware_compatibility_level(self):
        return self._hw

    @hardware_compatibility_level.setter
    def hardware_compatibility_level(self, value) -> None:
        _check_enum(self._world, value, "HardwareCompatibilityLevel", "hardware_compatibility_level")
        self._hw = value

    # timing cache
    def create_timing_cache(self, serialized_timing_cache):
        return new_timing_cache(
            self._world, buffer_bytes(serialized_timing_cache, "create_timing_cache"), self._builder._logger
        )

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        """NvInfer.h IBuilderConfig::setTimingCache: "A failure will be reported if the CUDA device property in
        the provided cache is different from current environment. ignoreMismatch = true skips strict
        verification". Both arguments are required (pyCore.cpp: "cache"_a, "ignore_mismatch"_a); the C++
        parameter is a reference, so None is a TypeError."""
        if not isinstance(cache, self._world.classes["ITimingCache"]):
            raise TypeError(
                f"set_timing_cache(): incompatible function arguments: expected ITimingCache, got {cache!r}"
            )
        if not isinstance(ignore_mismatch, bool):
            raise TypeError("set_timing_cache(): ignore_mismatch must be a bool")
        if cache._header["device"] != self._world.gpu.to_dict() and not ignore_mismatch:
            log(self._world, self._builder._logger, "ERROR", "Timing cache was created on a different device")
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self):
        return self._timing_cache

    # profiles
    def add_optimization_profile(self, profile) -> int:
        """NvInfer.h addOptimizationProfile: "The index of the optimization profile (starting from 0) if the
        input is valid, or -1 if the input is not valid" (valid = profile->isValid())."""
        if not isinstance(profile, self._world.classes["IOptimizationProfile"]):
            raise TypeError("add_optimization_profile(): incompatible function arguments")
        if not profile:
            log(self._world, self._builder._logger, "ERROR", "addOptimizationProfile: the profile is not valid")
            return -1
        self._profiles.append({name: [list(d) for d in dims] for name, dims in profile._shapes.items()})
        return len(self._profiles) - 1

    num_optimization_profiles = property(lambda self: len(self._profiles))

    @property
    def progress_monitor(self):
        return self._monitor

    @progress_monitor.setter
    def progress_monitor(self, monitor) -> None:
        if monitor is not None and not isinstance(monitor, self._world.classes["IProgressMonitor"]):
            raise TypeError("progress_monitor must be an IProgressMonitor")
        if monitor is not None and not getattr(monitor, "_trt_initialised", False):
            raise TypeError(f"{type(monitor).__name__}.__init__() must be called when overriding __init__")
        self._monitor = monitor


# -- builder ---------------------------------------------------------------------------------------------------------
class Builder:
    def __init__(self, logger):
        check_logger(self._world, logger, "Builder.__init__")
        self._logger = logger

    def create_network(self, flags: int = 0):
        """NvInfer.h createNetworkV2 / TENSORRT.md section 3: on 10.x flags 0 is a weakly typed network and
        STRONGLY_TYPED opts into strong typing, EXPLICIT_BATCH is ignored; on 11.x every network is strongly
        typed and STRONGLY_TYPED is accepted and ignored. Bits naming no flag of this version: nullptr/None."""
        world = self._world
        enum = world.classes["NetworkDefinitionCreationFlag"]
        valid = {int(m) for m in enum.__members__.values()}
        unknown = [bit for bit in range(32) if flags >> bit & 1 and bit not in valid]
        if unknown:
            log(world, self._logger, "ERROR", f"createNetworkV2: invalid network creation flags {flags:#x}")
            return None
        strong = world.major >= 11 or bool(flags >> int(enum.STRONGLY_TYPED) & 1)
        return internal(
            world.classes["INetworkDefinition"],
            _flags=flags,
            _strongly_typed=strong,
            _inputs=[],
            _outputs=[],
            _onnx=None,
        )

    def create_builder_config(self):
        return internal(self._world.classes["IBuilderConfig"])._setup(self)

    def create_optimization_profile(self):
        return internal(self._world.classes["IOptimizationProfile"], _shapes={})

    def build_serialized_network(self, network, config):
        """IHostMemory, or None when the build fails; the reasons go to the logger (TENSORRT.md section 3)."""
        from ._build import build_plan

        world = self._world
        if not isinstance(network, world.classes["INetworkDefinition"]) or not isinstance(
            config, world.classes["IBuilderConfig"]
        ):
            raise TypeError("build_serialized_network(): incompatible function arguments")
        plan = build_plan(world, self._logger, network, config)
        return None if plan is None else host_memory(world, plan)


def layer_key(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]
