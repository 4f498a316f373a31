"""The package's shape: stages import downwards only, no import cycles, a short top level, no oversized module,
one home for shared constants, and pure modules that import without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "rsz_export"
MAX_TOP_LEVEL_MODULES = 6
MAX_MODULE_LINES = 350
PURE = (
    "rsz_export.shapes",
    "rsz_export.interface",
    "rsz_export.parity",
    "rsz_export.plan.profiles",
    "rsz_export.plan.grid",
    "rsz_export.plan.profile_file",
    "rsz_export.plan.from_images",
    "rsz_export.validate.tolerance",
    "rsz_export.validate.report",
    "rsz_export.bench.stats",
    "rsz_export.bench.flops",
    "rsz_export.plan.routing",
    "rsz_export.serve.preprocess_policy",
    "rsz_export.triton.spec",
    "rsz_export.triton.config",
    "rsz_export.triton.kserve",
    "rsz_export.backends.trt_support",
    "rsz_export.pipeline.keys",
)
"""Modules that must import with torch, onnxruntime, onnx, tensorrt, PIL, tritonclient and pytriton absent."""
STAGE_ORDER = (
    ("rsz_export", "errors", "interface"),
    ("shapes", "parity"),
    ("images",),
    ("plan",),
    ("artifacts",),
    ("model",),
    ("backends",),
    ("pipeline",),
    ("validate", "bench", "serve"),
    ("sweep", "triton"),
    ("cli",),
    ("__main__",),
)
"""The package's stages, lowest first: a module imports from its own stage and from stages on earlier lines only
(``rsz_export`` is the package's ``__init__``, its version)."""


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path) -> set[str]:
    """The rsz_export modules a module imports, at any depth (functions included), TYPE_CHECKING excepted."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rsz_export")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rsz_export"):
            for alias in node.names:  # ``from rsz_export.bench import report`` imports a module
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                found.add(candidate if is_module else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None, find_cycle(import_graph())


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def stage_of(module: str) -> str:
    """``rsz_export.plan.routing`` -> ``plan``; the package itself -> ``rsz_export``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]], order=STAGE_ORDER) -> list[str]:
    """Every import of a module from a stage at its own level or above (other than its own stage), as text."""
    level = {stage: i for i, stages in enumerate(order) for stage in stages}
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            here, there = stage_of(module), stage_of(target)
            if here != there and level[there] >= level[here]:
                found.append(f"{module} imports {target} ({here} may not import {there})")
    return found


def test_every_stage_has_a_place_in_the_order():
    placed = {stage for stages in STAGE_ORDER for stage in stages}
    assert {stage_of(module) for module in import_graph()} <= placed


def test_stages_import_downwards_only():
    assert upward_imports(import_graph()) == []


def test_the_stage_check_finds_an_upward_import():
    graph = {
        "rsz_export.model.export": {"rsz_export.parity", "rsz_export.validate.run"},
        "rsz_export.images.preprocess": {"rsz_export.model.weights"},
        "rsz_export.validate.run": {"rsz_export.bench.loop", "rsz_export.validate.report"},
    }
    assert upward_imports(graph) == [
        "rsz_export.images.preprocess imports rsz_export.model.weights (images may not import model)",
        "rsz_export.model.export imports rsz_export.validate.run (model may not import validate)",
        "rsz_export.validate.run imports rsz_export.bench.loop (validate may not import bench)",
    ]


def test_top_level_is_short_and_modules_are_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not long, long


@pytest.mark.parametrize(
    "constant, home",
    [
        ("INPUT_NAME", "interface.py"),
        ("OUTPUT_NAME", "interface.py"),
        ("PRECISIONS", "interface.py"),
        ("NUM_CLASSES", "interface.py"),
        ("CHANNELS", "interface.py"),
        ("MAX_THREADS", "artifacts/host.py"),
        ("CROP_RATIO", "images/imagenet.py"),
        ("DEFAULT_PRECISION", "interface.py"),
        ("Log", "interface.py"),
        ("ENGINES_DIR", "artifacts/manifest.py"),
        ("TIMING_CACHE_NAME", "backends/base.py"),
        ("REFERENCE", "backends/__init__.py"),
    ],
)
def test_each_shared_constant_is_assigned_in_one_module(constant, home):
    homes = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == constant for t in targets):
                homes.append(str(path.relative_to(PACKAGE)))
    assert homes == [home]


@pytest.mark.parametrize("text, home", [("timing.cache", "backends/base.py")])
def test_each_shared_file_name_is_written_in_one_module(text, home):
    homes = []
    for path in PACKAGE.rglob("*.py"):
        strings = (n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant))
        if text in strings:
            homes.append(str(path.relative_to(PACKAGE)))
    assert homes == [home]


def test_pure_modules_import_without_heavy_libraries():
    blocked = ("torch", "torchvision", "onnxruntime", "onnx", "tensorrt", "PIL", "tritonclient", "pytriton")
    code = (
        "import sys, importlib\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"for module in {PURE!r}: importlib.import_module(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
