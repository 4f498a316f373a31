"""Only ``rsz_export/backends/`` knows the backends by name: elsewhere no code compares a name with a backend's
(``== "tensorrt"``, ``in ("onnxruntime", ...)``) or lists backend names in a tuple of its own; it asks the
``Backend`` object (``load_backend(name)``) or the registry."""

from __future__ import annotations

import ast

from rsz_export.backends import BACKENDS
from tests.helpers import REPO

PACKAGE = REPO / "rsz_export"


def _names_in(node: ast.AST) -> list[str]:
    """Backend names written as string constants in ``node`` itself or in a literal tuple/list/set it is."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in BACKENDS]


def name_comparisons(source: str) -> list[tuple[int, str]]:
    """(line, backend name) of every comparison with a backend name and every tuple of two or more of them."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, name) for name in _names_in(operand)]
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = _names_in(node)
            if len(names) >= 2 and len(names) == len(node.elts):
                found += [(node.lineno, name) for name in names]
    return sorted(set(found))


def test_no_code_outside_backends_compares_backend_names():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name != "backends" and (hits := name_comparisons(path.read_text())):
            found[str(path.relative_to(REPO))] = hits
    assert found == {}


def test_the_check_finds_comparisons_and_name_tuples():
    source = (
        'if engine.backend == "tensorrt": pass\n'
        'shared = engine.backend in ("onnxruntime", "torch")\n'
        'CHOICES = ("onnxruntime", "tensorrt", "torch")\n'
        'libraries = ("torch", "torchvision", "onnx")\n'
        'if device != "cuda": pass\n'
    )
    assert name_comparisons(source) == [
        (1, "tensorrt"), (2, "onnxruntime"), (2, "torch"), (3, "onnxruntime"), (3, "tensorrt"), (3, "torch"),
    ]
