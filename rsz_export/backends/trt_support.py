"""Pure helpers for the TensorRT backend: versions, profile shapes, inspector JSON, parser errors, engine
compatibility, timing-cache facts. Nothing here imports tensorrt, torch or CUDA, so all of it is tested on the CPU.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rsz_export.backends.base import BuildOptions
from rsz_export.errors import EnvironmentProblem, UsageError
from rsz_export.interface import INPUT_NAME, PRECISIONS
from rsz_export.plan.profiles import Plan
from rsz_export.shapes import is_digits

MIN_VERSION = (10, 1)
"""10.0 lacks the v2 device-memory API; 11 removed the v1 API, so 10.1 is the oldest release both paths share."""
SUPPORTED_MAJORS = (10, 11)
HARDWARE_COMPAT = ("none", "ampere+", "same-compute-capability")
SAME_CC_MIN_VERSION = (10, 9)
"""HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY first appears in 10.9."""
MAX_OPT_LEVEL = 5
INSTALL_HINT = (
    "pip install \"rsz-export[tensorrt]\" (TensorRT's wheels fetch their CUDA libraries from NVIDIA's index, "
    "https://pypi.nvidia.com; if pip cannot find them add --extra-index-url https://pypi.nvidia.com), "
    "and a CUDA GPU with a recent NVIDIA driver"
)


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.13.3.9"`` -> (10, 13, 3, 9); trailing non-numeric parts (``"11.0.0b1"``) are dropped."""
    parts = []
    for bit in str(text).split("."):
        match = re.match(r"\d+", bit)
        if not match:
            break
        parts.append(int(match.group()))
    if not parts:
        raise EnvironmentProblem(f"cannot read the TensorRT version {text!r}")
    return tuple(parts)


def api_major(version: str) -> int:
    """The API generation (10 or 11) for an installed TensorRT version; EnvironmentProblem if unsupported."""
    parsed = parse_version(version)
    if parsed[0] not in SUPPORTED_MAJORS or parsed < MIN_VERSION:
        raise EnvironmentProblem(
            f"TensorRT {version} is not supported: rsz-export needs TensorRT >= 10.1 and < 12",
            hint=INSTALL_HINT,
        )
    return parsed[0]


def precision_path(major: int, precision: str) -> str:
    """How a precision is obtained: builder flags (10.x), a reduced-precision ONNX (11.x), plain fp32, or for int8
    a Q/DQ ONNX on both (explicit quantization; 10.x also sets the INT8 flag it needs)."""
    if precision in ("fp32", "tf32"):
        return "fp32-onnx"
    if precision == "int8":
        return "qdq-onnx"
    return "builder-flags" if major == 10 else "reduced-precision-onnx"


def check_build_options(options: BuildOptions, version: str | None = None) -> None:
    """UsageError (exit 2) naming any TensorRT build option outside what is allowed."""
    if options.precision not in PRECISIONS:
        raise UsageError(f"precision {options.precision!r} is not one TensorRT builds: choose {', '.join(PRECISIONS)}")
    if options.precision == "tf32" and not options.tf32:
        raise UsageError("precision tf32 contradicts --no-tf32: use --precision fp32 --no-tf32 for strict fp32")
    if not isinstance(options.opt_level, int) or not 0 <= options.opt_level <= MAX_OPT_LEVEL:
        raise UsageError(f"--opt-level {options.opt_level!r} is outside 0..{MAX_OPT_LEVEL}")
    if options.workspace_mib is not None and (not isinstance(options.workspace_mib, int) or options.workspace_mib < 1):
        raise UsageError(f"--workspace-mib {options.workspace_mib!r} must be a whole number of MiB, at least 1")
    level = options.hardware_compat or "none"
    if level not in HARDWARE_COMPAT:
        raise UsageError(f"--hardware-compat {level!r} is unknown: choose {', '.join(HARDWARE_COMPAT)}")
    if level == "same-compute-capability" and version and parse_version(version) < SAME_CC_MIN_VERSION:
        raise EnvironmentProblem(f"--hardware-compat same-compute-capability needs TensorRT >= 10.9, found {version}")


def engine_groups(plan: Plan, per_profile: bool) -> list[tuple[int, ...]]:
    """Plan profile indices per engine: all in one engine, or one engine per profile."""
    indices = tuple(range(len(plan.profiles)))
    return [(i,) for i in indices] if per_profile else [indices]


def trt_profile_shapes(
    plan: Plan, engine_profiles: tuple[int, ...], input_name: str = INPUT_NAME
) -> list[tuple[str, tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(input name, min, opt, max) NCHW shapes for each TensorRT profile, in engine-local order.

    Engine-local profile k is plan profile ``engine_profiles[k]``.
    """
    if not engine_profiles:
        raise UsageError("an engine needs at least one profile")
    shapes = []
    for index in engine_profiles:
        if not 0 <= index < len(plan.profiles):
            raise UsageError(f"plan profile {index} does not exist: the plan has {len(plan.profiles)}")
        p = plan.profiles[index]
        shapes.append((input_name, p.min.nchw, p.opt.nchw, p.max.nchw))
    return shapes


@dataclass(frozen=True)
class ParserErrorInfo:
    """One ONNX-parser error, copied out of trt.ParserError so formatting needs no TensorRT."""

    code: str
    desc: str
    node: int = -1
    node_name: str = ""
    operator: str = ""


def format_parser_errors(onnx_path: str, errors: list[ParserErrorInfo]) -> str:
    """One paragraph listing every parser error with node, operator and description."""
    if not errors:
        return f"TensorRT could not parse {onnx_path} and reported no error (see the log above)"
    lines = [f"TensorRT could not parse {onnx_path} ({len(errors)} error{'s' if len(errors) > 1 else ''}):"]
    for e in errors:
        where = f"node {e.node}" if e.node >= 0 else "graph"
        if e.node_name:
            where += f" {e.node_name!r}"
        op = f" ({e.operator})" if e.operator else ""
        lines.append(f"  - {where}{op}: {e.code.rsplit('.', 1)[-1]}: {e.desc}")
    return "\n".join(lines)


@dataclass(frozen=True)
class InspectorSummary:
    """What the engine inspector's JSON says, in a schema-independent form."""

    schema: str  # "10" ("Bindings"), "11" ("I/O Tensors") or "unknown"
    layers: int
    layer_types: dict
    precisions: dict
    io_tensors: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "layers": self.layers,
            "layer_types": dict(self.layer_types),
            "precisions": dict(self.precisions),
            "io_tensors": list(self.io_tensors),
        }


_DTYPE_RE = re.compile(r"\b(FP32|FP16|BF16|FP8|INT8|INT32|INT64|Float|Half|BFloat16|Int8|Int32|Int64|Bool)\b", re.I)
_DTYPE_NAMES = {"float": "FP32", "half": "FP16", "bfloat16": "BF16"}


def _tensor_dtype(tensor: Any) -> str | None:
    if not isinstance(tensor, dict):
        return None
    for key in ("DataType", "Datatype", "Format/Datatype", "Format"):
        value = tensor.get(key)
        if isinstance(value, str) and (match := _DTYPE_RE.search(value)):
            token = match.group(1)
            return _DTYPE_NAMES.get(token.lower(), token.upper())
    return None


def parse_inspector_json(text: str) -> InspectorSummary:
    """Summarize ``get_engine_information(JSON)`` from TensorRT 10 or 11; never raises on odd content."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return InspectorSummary("unknown", 0, {}, {}, ())
    if not isinstance(data, dict):
        return InspectorSummary("unknown", 0, {}, {}, ())
    if "I/O Tensors" in data:
        schema = "11"
        io = tuple(str(t.get("Name")) for t in data["I/O Tensors"] if isinstance(t, dict))
    elif "Bindings" in data:
        schema = "10"
        io = tuple(str(b) for b in data["Bindings"] if isinstance(b, (str, int)))
    else:
        schema, io = "unknown", ()
    layers = data.get("Layers") if isinstance(data.get("Layers"), list) else []
    types: dict[str, int] = {}
    precisions: dict[str, int] = {}
    for layer in layers:
        kind = str(layer.get("LayerType", "unknown")) if isinstance(layer, dict) else "name-only"
        types[kind] = types.get(kind, 0) + 1
        outputs = layer.get("Outputs", []) if isinstance(layer, dict) else []
        dtype = _tensor_dtype(outputs[0]) if isinstance(outputs, list) and outputs else None
        if dtype:
            precisions[dtype] = precisions.get(dtype, 0) + 1
    return InspectorSummary(schema, len(layers), types, precisions, io)


def _cc(value: str) -> tuple[int, ...]:
    return tuple(int(x) for x in str(value).split(".") if is_digits(x))


def _version_problem(built: str, here: str, version_compat: bool) -> str | None:
    if built == here:
        return None
    b, h = parse_version(built), parse_version(here)
    if not version_compat:
        return f"it was built by TensorRT {built} and this machine has {here} (engines load only in the same version)"
    if h < b or (b[0], h[0]) not in ((10, 10), (10, 11), (11, 11)):
        return f"it is version-compatible from TensorRT {built}, which {here} cannot load (newer 10.x/11.x only)"
    return None


def _hardware_problem(settings: dict, here: dict) -> str | None:
    level = settings.get("hardware_compat") or "none"
    built_cc, here_cc = str(settings.get("compute_capability")), str(here.get("compute_capability"))
    if level == "ampere+":
        return None if _cc(here_cc) >= (8, 0) else f"it needs an Ampere or newer GPU and this one is sm {here_cc}"
    if built_cc != here_cc:
        return f"it was built for compute capability {built_cc} and this GPU has {here_cc}"
    if level == "none" and settings.get("gpu_name") != here.get("gpu_name"):
        return f"it was built on a {settings.get('gpu_name')} and this GPU is a {here.get('gpu_name')}"
    return None


def compatibility_problem(settings: dict, here: dict) -> str | None:
    """None if an engine with these build ``settings`` may run ``here``, else a sentence saying what differs.

    Same TensorRT version unless built version-compatible; same GPU model and compute capability unless
    built hardware-compatible (ampere+: any sm >= 8.0; same-compute-capability: the same sm, any model).
    """
    missing = [k for k in ("tensorrt_version", "gpu_name", "compute_capability") if not settings.get(k)]
    if missing:
        return f"its manifest lacks {', '.join(missing)}, so it cannot be checked; rebuild it"
    problems = [
        _version_problem(
            str(settings["tensorrt_version"]), str(here["tensorrt_version"]), bool(settings.get("version_compat"))
        ),
        _hardware_problem(settings, here),
    ]
    problems = [p for p in problems if p]
    return (
        ("this engine cannot run here: " + "; ".join(problems) + ". Rebuild it on this machine") if problems else None
    )


def timing_cache_stats(path: str, before: bytes, after: bytes, keys_before: int | None, keys_after: int | None) -> dict:
    """What the timing cache did in a build, for the manifest. TensorRT does not report hits directly;
    entries added during the build are tactics that had to be timed (misses)."""
    import hashlib

    stats = {
        "path": path,
        "loaded_bytes": len(before),
        "loaded_sha256": hashlib.sha256(before).hexdigest() if before else None,
        "bytes": len(after),
        "sha256": hashlib.sha256(after).hexdigest(),
        "reused": bool(before),
        "changed": before != after,
    }
    if keys_before is not None and keys_after is not None:
        stats.update(entries_before=keys_before, entries_after=keys_after, new_entries=keys_after - keys_before)
    return stats


def timing_cache_problem(settings: dict, here: dict) -> str | None:
    """None when a timing cache written beside engines built with ``settings`` can serve a build ``here``;
    else why not: TensorRT reads only caches of its own version, and tactics timed on another GPU do not apply."""
    built, now = settings.get("tensorrt_version"), here.get("tensorrt_version")
    if built != now:
        return f"it was written by TensorRT {built} and this machine has {now}"
    gpu = (settings.get("gpu_name"), settings.get("compute_capability"))
    if gpu != (here.get("gpu_name"), here.get("compute_capability")):
        return f"it was made on a {gpu[0]} (sm {gpu[1]}) and this GPU is a {here.get('gpu_name')}"
    return None


TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
}


def torch_dtype_name(trt_dtype_name: str) -> str:
    """The torch dtype name for a TensorRT DataType name (``DataType.HALF`` or ``HALF``)."""
    key = str(trt_dtype_name).rsplit(".", 1)[-1]
    if key not in TORCH_DTYPES:
        raise EnvironmentProblem(f"engine IO tensor type {trt_dtype_name} has no torch buffer type here")
    return TORCH_DTYPES[key]


def unavailable_message(import_error: str | None, version: str | None, cuda_error: str | None) -> str | None:
    """The sentence ``unavailable_reason`` returns, from what the probes found; None when all is well."""
    if import_error is not None:
        return f"the tensorrt Python package cannot be imported ({import_error}); install it: {INSTALL_HINT}"
    if version is not None:
        try:
            api_major(version)
        except EnvironmentProblem as exc:
            return exc.message + f"; install a supported one: {INSTALL_HINT}"
    if cuda_error is not None:
        return f"TensorRT {version} is installed but no CUDA GPU is usable ({cuda_error})"
    return None
