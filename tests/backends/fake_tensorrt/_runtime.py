"""Runtime: deserialization and the rules that decide whether a plan loads here (version, version
compatibility and host code, GPU and hardware compatibility)."""

from __future__ import annotations

from . import _formats
from ._core import World, buffer_bytes, check_logger, internal, log


def _version_problem(world: World, header: dict, host_code_allowed: bool) -> str | None:
    """TENSORRT.md section 1 item 13 and "Pitfalls": a runtime loads plans of its own version, or
    version-compatible plans from an earlier version of the same major or from 10.x on 11.x; 11 plans never
    load on 10. A version-compatible plan embeds its lean runtime, so loading it needs
    engine_host_code_allowed = True (NvInferRuntime.h IRuntime::setEngineHostCodeAllowed; trtexec
    samples/common/sampleEngines.cpp "Application needs to opt into allowing deserialization of engines with
    embedded lean runtime"; Polygraphy backend/trt/loader.py sets it before deserializing) - also for a plan
    this very version just built."""
    built = tuple(int(x) for x in header["trt"].split("."))
    if header.get("version_compatible") and not header.get("exclude_lean_runtime") and not host_code_allowed:
        return (
            "the plan is version compatible and embeds a lean runtime (host code); set "
            "Runtime.engine_host_code_allowed = True to load it"
        )
    if built == world.vtuple:
        return None
    if not header.get("version_compatible"):
        return (
            f"The engine plan file is not compatible with this version of TensorRT, expecting library "
            f"version {world.version} got {header['trt']}, please rebuild."
        )
    if built > world.vtuple or (built[0], world.major) not in ((10, 10), (10, 11), (11, 11)):
        return (
            f"a version-compatible plan from TensorRT {header['trt']} cannot run on the older or unrelated "
            f"{world.version}"
        )
    return None


def _device_problem(world: World, header: dict) -> str | None:
    """Plans are specific to the GPU they were built on: another compute capability is refused; another model of
    the same capability loads with a warning. HardwareCompatibilityLevel AMPERE_PLUS: any sm >= 8.0;
    SAME_COMPUTE_CAPABILITY: the same sm, any model (NvInfer.h HardwareCompatibilityLevel)."""
    built_cc, here_cc = tuple(header["device"]["cc"]), tuple(world.gpu.compute_capability)
    level = header.get("hardware_compat", "NONE")
    if level == "AMPERE_PLUS":
        return None if here_cc >= (8, 0) else f"a hardware-compatible (Ampere+) plan cannot run on sm {here_cc}"
    if built_cc != here_cc:
        return (
            f"The engine plan file is generated on an incompatible device, expecting compute "
            f"{here_cc[0]}.{here_cc[1]} got compute {built_cc[0]}.{built_cc[1]}, please rebuild."
        )
    return None


class Runtime:
    def __init__(self, logger):
        check_logger(self._world, logger, "Runtime.__init__")
        self._logger, self._host_code = logger, False

    @property
    def engine_host_code_allowed(self) -> bool:
        return self._host_code  # default false (NvInferRuntime.h setEngineHostCodeAllowed)

    @engine_host_code_allowed.setter
    def engine_host_code_allowed(self, value: bool) -> None:
        self._host_code = bool(value)

    def deserialize_cuda_engine(self, serialized_engine):
        """ICudaEngine, or None (after logging an error) when the plan cannot be loaded here
        (NvInferRuntime.h deserializeCudaEngine: "The engine, or nullptr if it could not be deserialized")."""
        world = self._world
        data = buffer_bytes(serialized_engine, "deserialize_cuda_engine")
        try:
            header, onnx_bytes = _formats.unpack(_formats.PLAN_MAGIC, data)
        except _formats.FormatError as exc:
            log(world, self._logger, "ERROR", f"IRuntime::deserializeCudaEngine: Serialization assertion failed: {exc}")
            return None
        problem = _version_problem(world, header, self._host_code) or _device_problem(world, header)
        if problem:
            log(world, self._logger, "ERROR", f"IRuntime::deserializeCudaEngine: {problem}")
            return None
        if header["device"]["name"] != world.gpu.name and header.get("hardware_compat", "NONE") == "NONE":
            log(
                world,
                self._logger,
                "WARNING",
                "Using an engine plan file across different models of devices is "
                "not recommended and is likely to affect performance or even cause errors.",
            )
        return internal(
            world.classes["ICudaEngine"],
            _header=header,
            _onnx=onnx_bytes,
            _logger=self._logger,
            _claims={},
            _session=None,
            _shape_cache={},
        )
