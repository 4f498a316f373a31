"""Every TensorRT name the backend uses exists, on the code path for each major version, in that version's API.

The surfaces (names read off the published binding wheels) are looked up in tests/data/tensorrt-api/ or, in the
project workspace, ../shared/tensorrt-api/. Rules for rsz_export/backends/trt*.py (see trt.py's docstring):
  * functions suffixed ``_v10`` / ``_v11`` run only on that major; everything else runs on both;
  * a version-suffixed function is reached only through a module-level ``{10: f_v10, 11: f_v11}`` dict whose
    key matches its suffix, or from a function with the same suffix;
  * ``trt.X.Y`` chains and members of TensorRT objects held in the conventional local names are checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ROOT / "rsz_export" / "backends"
SURFACE_DIRS = [ROOT / "tests" / "data" / "tensorrt-api", ROOT.parent / "shared" / "tensorrt-api"]
SURFACE_DIR = next((d for d in SURFACE_DIRS if (d / "11.4.0.106.txt").is_file()), None)
needs_surfaces = pytest.mark.skipif(SURFACE_DIR is None, reason=f"TensorRT API surfaces not found in {SURFACE_DIRS}")

VERSIONS = {10: ("10.13.3.9", "10.16.1.11"), 11: ("11.0.0.114", "11.4.0.106")}
OLDEST_10 = "10.0.1"
ALLOWED_MISSING_IN_OLDEST = {
    # name: why the backend may use it although 10.0.1 lacks it
    "ICudaEngine.device_memory_size_v2": "10.1+; trt_support.MIN_VERSION is 10.1",
    "ICudaEngine.get_device_memory_size_for_profile_v2": "10.1+; trt_support.MIN_VERSION is 10.1",
    "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY": "10.9+; check_build_options refuses it below 10.9",
    "ITimingCache.queryKeys": "10.8+; guarded by hasattr in trt_timing.cache_entries",
}
DUNDER_OK = {"__version__"}  # module attributes the surface listing omits
OBJECT_TYPES = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "builder_config": "IBuilderConfig",
    "onnx_parser": "OnnxParser",
    "parser_error": "ParserError",
    "trt_profile": "IOptimizationProfile",
    "trt_runtime": "Runtime",
    "cuda_engine": "ICudaEngine",
    "exec_context": "IExecutionContext",
    "inspector": "EngineInspector",
    "timing_cache": "ITimingCache",
}
_TAG = re.compile(r"_v(\d+)$")


def load_surface(version: str) -> set[str]:
    lines = (SURFACE_DIR / f"{version}.txt").read_text().splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def _tag(name: str) -> int | None:
    match = _TAG.search(name)
    return int(match.group(1)) if match else None


def used_names(func: ast.AST) -> set[str]:
    """'BuilderFlag.FP16'-style names a function uses: trt chains and members of conventionally named objects."""
    names = set()
    for node in ast.walk(func):
        if not isinstance(node, ast.Attribute) or isinstance(getattr(node, "_parent", None), ast.Attribute):
            continue
        chain = _chain(node)
        if not chain:
            continue
        if chain[0] == "trt":
            names.add(".".join(chain[1:]))
        elif chain[0] in OBJECT_TYPES:
            names.add(f"{OBJECT_TYPES[chain[0]]}.{chain[1]}")
    return names


def _mark_parents(tree: ast.AST) -> None:
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            child._parent = parent


def analyse(source: str) -> tuple[dict[str, set[str]], list[str]]:
    """(names used per major version, reachability problems) for a trt.py-style module."""
    tree = ast.parse(source)
    _mark_parents(tree)
    top = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    tagged = {name for name in top if _tag(name) is not None}
    problems = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        dispatch = isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in tagged:
                if not dispatch:
                    problems.append(f"module-level code reaches {sub.id} outside a dispatch dict")
        if dispatch:
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(value, ast.Name) and value.id in tagged:
                    if not (isinstance(key, ast.Constant) and key.value == _tag(value.id)):
                        problems.append(f"dispatch key {ast.unparse(key)} maps to {value.id}")
    per_major: dict[int, set[str]] = {10: set(), 11: set()}
    for name, node in top.items():
        tag = _tag(name)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in tagged and _tag(sub.id) != tag:
                problems.append(f"{name} (runs on {tag or 'both'}) reaches {sub.id} directly")
        for major in per_major:
            if tag in (None, major):
                per_major[major] |= used_names(node)
    return per_major, problems


def surface_problems(source: str) -> list[str]:
    """Every name missing from a surface its path claims to support, plus reachability problems."""
    per_major, problems = analyse(source)
    for major, versions in VERSIONS.items():
        for version in versions:
            surface = load_surface(version)
            for name in sorted(per_major[major] - DUNDER_OK):
                if name not in surface:
                    problems.append(f"trt.{name} is used on the {major}.x path but TensorRT {version} lacks it")
    return problems


TRT_MODULES = ("trt.py", "trt_env.py", "trt_build.py", "trt_runner.py", "trt_timing.py", "trt_cancel.py")
"""The modules that call TensorRT; their top-level functions are analysed together."""
TRT_SOURCE = "\n\n".join((BACKENDS / name).read_text() for name in TRT_MODULES)


@needs_surfaces
def test_backend_uses_only_names_that_exist_on_each_path():
    assert surface_problems(TRT_SOURCE) == []


@needs_surfaces
def test_backend_really_has_both_paths_and_checks_many_names():
    per_major, _ = analyse(TRT_SOURCE)
    assert "BuilderFlag.FP16" in per_major[10] and "BuilderFlag.FP16" not in per_major[11]
    assert "BuilderFlag.BF16" in per_major[10] and "BuilderFlag.BF16" not in per_major[11]
    common = per_major[10] & per_major[11]
    for name in (
        "ICudaEngine.device_memory_size_v2",
        "IExecutionContext.execute_async_v3",
        "IBuilderConfig.set_timing_cache",
        "OnnxParser.get_error",
        "ParserError.node_operator",
    ):
        assert name in common
    assert len(common) > 40


@needs_surfaces
def test_only_documented_names_are_missing_in_10_0():
    per_major, _ = analyse(TRT_SOURCE)
    missing = {n for n in per_major[10] - DUNDER_OK if n not in load_surface(OLDEST_10)}
    assert missing == set(ALLOWED_MISSING_IN_OLDEST)


@needs_surfaces
def test_builder_flag_fp16_on_the_11_path_is_caught():
    bad = TRT_SOURCE.replace(
        "    # 11.x networks are always strongly typed: the types come from the (reduced-precision) ONNX itself.\n",
        "    builder_config.set_flag(trt.BuilderFlag.FP16)\n",
    )
    assert bad != TRT_SOURCE
    problems = surface_problems(bad)
    assert any("BuilderFlag.FP16 is used on the 11.x path" in p and "11.4.0.106" in p for p in problems)


@needs_surfaces
def test_v1_memory_api_in_shared_code_is_caught():
    bad = TRT_SOURCE.replace("cuda_engine.device_memory_size_v2", "cuda_engine.device_memory_size")
    assert bad != TRT_SOURCE
    problems = surface_problems(bad)
    assert any("ICudaEngine.device_memory_size is used on the 11.x path" in p for p in problems)
    assert not any("10.x path" in p for p in problems)


def test_calling_a_version_function_from_shared_code_is_caught():
    snippet = (
        "def _flags_v10(trt, builder_config):\n    builder_config.set_flag(trt.BuilderFlag.FP16)\n\n"
        "def build(trt, builder_config):\n    _flags_v10(trt, builder_config)\n"
    )
    _, problems = analyse(snippet)
    assert problems == ["build (runs on both) reaches _flags_v10 directly"]


def test_dispatch_dict_with_wrong_key_is_caught():
    snippet = "def _a_v10(trt):\n    return trt.BuilderFlag.FP16\n\n_X = {11: _a_v10}\n"
    _, problems = analyse(snippet)
    assert problems == ["dispatch key 11 maps to _a_v10"]


def test_pure_helpers_never_touch_tensorrt():
    source = (BACKENDS / "trt_support.py").read_text()
    tree = ast.parse(source)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {a.name for n in imports if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in imports if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.split(".")[0] in ("tensorrt", "torch", "onnxruntime") for m in modules)
    assert not any(_chain(n) and _chain(n)[0] == "trt" for n in ast.walk(tree) if isinstance(n, ast.Attribute))


@pytest.mark.parametrize("name", TRT_MODULES)
def test_trt_imports_tensorrt_only_inside_functions(name):
    tree = ast.parse((BACKENDS / name).read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in ("tensorrt", "torch") for n in names), ast.unparse(node)
