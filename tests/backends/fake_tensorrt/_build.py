"""The fake build: the checks TensorRT makes when it builds, the progress-monitor protocol, the timing cache,
and the plan it writes (ONNX bytes + profiles + precision + compatibility settings + version + GPU)."""

from __future__ import annotations

import math

from . import _formats
from ._builder import _PRECISION_FLAGS, MAX_OPT_LEVEL, layer_key
from ._core import World, call_python, log

LAYER_TYPES = {
    "Conv": "Convolution",
    "Gemm": "MatrixMultiply",
    "MatMul": "MatrixMultiply",
    "Relu": "Activation",
    "GlobalAveragePool": "Reduce",
    "Flatten": "Shuffle",
    "Reshape": "Shuffle",
    "Add": "ElementWise",
    "MaxPool": "Pooling",
    "Cast": "Cast",
    "BatchNormalization": "Scale",
    "QuantizeLinear": "Quantize",
    "DequantizeLinear": "Dequantize",
}
_ONNX_TYPE_NAMES = {1: "FP32", 10: "FP16", 16: "BF16", 6: "INT32", 7: "INT64", 9: "BOOL", 3: "INT8"}


class _Cancelled(Exception):
    pass


def _fail(world: World, logger, message: str):
    log(world, logger, "ERROR", message)
    return None


def _check_profiles(world, logger, network, config) -> str | None:
    """Build-time profile validation (NvInferRuntime.h IOptimizationProfile::setDimensions conditions 1-3, which
    "can be validated only partially" before the network is known; NvInfer.h addOptimizationProfile: "must be
    called at least once if the network has dynamic or shape input tensors")."""
    dynamic = [t for t in network._inputs if any(d == -1 for d in t._shape)]
    if dynamic and not config._profiles:
        return "Network has dynamic or shape inputs, but no optimization profile has been defined."
    for index, profile in enumerate(config._profiles):
        for tensor in network._inputs:
            shapes = profile.get(tensor._name)
            if shapes is None:
                if tensor in dynamic:
                    return f"Optimization profile {index} has no shapes for dynamic input {tensor._name!r}."
                continue
            net = list(tensor._shape)
            for label, dims in zip(("min", "opt", "max"), shapes):
                if len(dims) != len(net):
                    return (
                        f"profile {index}: {label} shape {dims} of {tensor._name!r} has rank {len(dims)}, "
                        f"the network input has {len(net)}"
                    )
                fixed = [i for i, d in enumerate(net) if d != -1 and dims[i] != d]
                if fixed:
                    return (
                        f"profile {index}: {label} shape {dims} of {tensor._name!r} differs from the static dims {net}"
                    )
        unknown = set(profile) - {t._name for t in network._inputs}
        if unknown:
            return f"profile {index} names {sorted(unknown)}, which are not network inputs"
    return None


def _check_config(world, network, config) -> str | None:
    flag_names = [n for n in _PRECISION_FLAGS if config._has(n)]
    if network._strongly_typed and flag_names:
        # Strong typing: "Setting layer precision and layer output types is not allowed" (NvInfer.h
        # NetworkDefinitionCreationFlag::kSTRONGLY_TYPED). Modelled as a build error for precision flags; the
        # exact real outcome is unverified (TENSORRT.md section 14).
        return f"precision flags {flag_names} are not allowed with a strongly typed network"
    if not network._strongly_typed and _quantized(network) and not config._has("INT8"):
        # A weakly typed network with Q/DQ layers is explicitly quantized: "To enable the use of any quantized
        # operations, the INT8 flag must be set in the builder configuration" (TensorRT Developer Guide,
        # "Introduction to Quantization", 8.x-10.x). 11.x has no INT8 flag: its networks are strongly typed and
        # "precision-control build flags are not required and should not be specified" (Developer Guide 11,
        # "Explicit Quantization"), which the rule above enforces.
        return "the network has Q/DQ layers but the INT8 builder flag is not set (weakly typed network)"
    if config._pools.get(0, 0) < world.knobs.min_workspace_bytes:
        return (
            f"Could not find any implementation for node: insufficient workspace "
            f"({config._pools.get(0)} bytes; the tactics need {world.knobs.min_workspace_bytes})"
        )
    cc = tuple(world.gpu.compute_capability)
    if config._has("VERSION_COMPATIBLE") and cc < (7, 0):  # NvInfer.h kVERSION_COMPATIBLE: Volta and later
        return "version compatibility needs a Volta or newer GPU"
    if config._hw.name == "AMPERE_PLUS" and cc < (8, 0):  # HardwareCompatibilityLevel::kAMPERE_PLUS
        return "hardware compatibility AMPERE_PLUS needs an Ampere or newer GPU to build on"
    return None


def _quantized(network) -> bool:
    """Whether the parsed ONNX holds QuantizeLinear/DequantizeLinear nodes (an explicitly quantized network)."""
    import onnx

    ops = {n.op_type for n in onnx.load_from_string(network._onnx).graph.node}
    return bool(ops & {"QuantizeLinear", "DequantizeLinear"})


def _layers(network, config) -> list[dict]:
    """One fake layer per ONNX node, with the data type TensorRT would choose for its output.

    Strongly typed: the ONNX types. Weakly typed 10.x: FP16/BF16 flags let the builder pick reduced precision;
    the double picks it for every layer (what a real builder picks per layer is tactic choice it cannot know)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(network._onnx))
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.output)}
    chosen = "FP16" if config._has("FP16") else "BF16" if config._has("BF16") else None
    layers = []
    for i, node in enumerate(model.graph.node):
        out = node.output[0]
        dtype = _ONNX_TYPE_NAMES.get(types.get(out, 1), "FP32")
        if not network._strongly_typed and chosen and dtype == "FP32":
            dtype = chosen
        layers.append(
            {
                "Name": node.name or f"node_{i}",
                "LayerType": LAYER_TYPES.get(node.op_type, node.op_type),
                "Op": node.op_type,
                "Inputs": list(node.input),
                "Outputs": [{"Name": out, "DataType": dtype}],
            }
        )
    return layers


def _device_memory(profiles, inputs) -> list[int]:
    """Activation memory per profile: a deterministic stand-in (8 float activations per input element at the
    profile's max shape, plus 1 MiB); real sizes depend on tactics."""
    sizes = []
    for profile in profiles:
        volume = sum(math.prod(profile[t._name][2]) for t in inputs if t._name in profile)
        sizes.append(volume * 4 * 8 + (1 << 20))
    return sizes


class _Progress:
    """Drives IProgressMonitor the way the builder does; raises _Cancelled when step_complete says stop."""

    def __init__(self, world, logger, monitor):
        self.world, self.logger, self.monitor, self.steps = world, logger, monitor, 0

    def start(self, name, parent, count):
        if self.monitor is not None:
            call_python(self.world, "phase_start", self.monitor.phase_start, name, parent, count)

    def step(self, name, index):
        self.steps += 1
        if self.world.knobs.sigint_at_build_step == self.steps:
            self.world.pending_sigint = True
        log(self.world, self.logger, "VERBOSE", f"{name}: step {index}")
        if self.monitor is not None:
            keep_going = call_python(
                self.world, "step_complete", self.monitor.step_complete, name, index, on_error=False
            )
            if not keep_going:
                raise _Cancelled(name)

    def finish(self, name):
        if self.monitor is not None:
            call_python(self.world, "phase_finish", self.monitor.phase_finish, name)


def _tune(world, logger, network, config, layers, progress) -> dict:
    """Time every layer for every profile, through the timing cache. Level 0 "will also not respect a timing
    cache" (NvInfer.h setBuilderOptimizationLevel), nor does DISABLE_TIMING_CACHE."""
    cache = config._timing_cache
    use_cache = cache is not None and config._opt_level > 0 and not config._has("DISABLE_TIMING_CACHE")
    level = min(config._opt_level, MAX_OPT_LEVEL)
    stats = {"hits": 0, "misses": 0}
    progress.start("Building engine", None, len(config._profiles) or 1)
    for index, profile in enumerate(config._profiles or [{}]):
        phase = f"Optimizing profile {index}"
        progress.start(phase, "Building engine", len(layers))
        for step, layer in enumerate(layers):
            key = layer_key(layer["Op"], layer["Outputs"][0]["DataType"], profile, config._has("TF32"), level)
            if use_cache and key in cache._entries:
                stats["hits"] += 1
            else:
                stats["misses"] += 1
                if use_cache:
                    cache._entries[key] = {"tactic": key[:8], "ms": 0.01}
            progress.step(phase, step)
        progress.finish(phase)
        progress.step("Building engine", index)
    progress.finish("Building engine")
    log(world, logger, "INFO", f"timing cache: {stats['hits']} hits, {stats['misses']} misses")
    return stats


def build_plan(world: World, logger, network, config) -> bytes | None:
    if network._onnx is None or not network._outputs:
        return _fail(world, logger, "Network must have at least one output")
    problem = _check_profiles(world, logger, network, config) or _check_config(world, network, config)
    if problem:
        return _fail(world, logger, problem)
    layers = _layers(network, config)
    progress = _Progress(world, logger, config._monitor)
    try:
        stats = _tune(world, logger, network, config, layers, progress)
    except _Cancelled as cancelled:
        # NvInferRuntime.h IProgressMonitor::stepComplete: returning false cancels the build; buildSerializedNetwork
        # then returns nullptr.
        return _fail(world, logger, f"Build cancelled by the progress monitor during {cancelled}")
    profiles = config._profiles or [{}]
    header = {
        "trt": world.version,
        "device": world.gpu.to_dict(),
        "version_compatible": config._has("VERSION_COMPATIBLE"),
        "exclude_lean_runtime": config._has("EXCLUDE_LEAN_RUNTIME"),
        "hardware_compat": config._hw.name,
        "strongly_typed": network._strongly_typed,
        "tf32": config._has("TF32"),
        "precision_flags": [n for n in _PRECISION_FLAGS if config._has(n)],
        "opt_level": config._opt_level,
        "verbosity": config._verbosity.name,
        "workspace": config._pools.get(0),
        "profiles": profiles,
        "inputs": [[t._name, t._dtype.name, list(t._shape)] for t in network._inputs],
        "outputs": [[t._name, t._dtype.name, list(t._shape)] for t in network._outputs],
        "device_memory": _device_memory(profiles, network._inputs),
        "layers": layers,
        "timing": stats,
    }
    log(world, logger, "INFO", f"Engine generation completed ({len(layers)} layers, {len(profiles)} profile(s))")
    return _formats.pack(_formats.PLAN_MAGIC, header, network._onnx)
