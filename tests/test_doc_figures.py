"""Every figure README.md and docs/*.md quote from a recorded result file matches that file, and every result
file they cite is declared with its quotes in tests/doc_figures/ (one module per file: see its docstring)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Callable

import pytest

from tests import doc_figures
from tests.doc_figures import Quote, Record, at
from tests.helpers import REPO

NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
CITED = re.compile(r"benchmarks/results/([\w.\-]+\.[A-Za-z]+)")


def declared() -> list[Record]:
    modules = (importlib.import_module(f"{doc_figures.__name__}.{m.name}")
               for m in pkgutil.iter_modules(doc_figures.__path__))
    return [record for module in modules for record in module.RECORDS]


def pattern(text: str) -> re.Pattern:
    """``text`` as a regular expression: each ``{}`` captures a number, any whitespace matches any whitespace."""
    literal = lambda piece: "".join(r"\s+" if t.isspace() else re.escape(t) for t in re.split(r"(\s+)", piece) if t)  # noqa: E731
    return re.compile(NUMBER.join(literal(piece) for piece in text.split("{}")))


def agrees(shown: str, value: float) -> bool:
    """Whether ``value`` rounds to ``shown`` at the digits shown (``52.1``: to 0.1; ``2.7e-3``: to 1e-4)."""
    mantissa, _, exponent = shown.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    step = 10.0 ** (int(exponent or 0) - decimals)
    return abs(float(value) - float(shown)) <= step / 2 * (1 + 1e-9)


def problems(record: Record, read_doc: Callable[[str], str] | None = None, data=None) -> list[str]:
    """What is wrong with ``record``'s quotes: a text its document no longer holds, or a figure its file does not."""
    read_doc = read_doc or (lambda doc: (REPO / doc).read_text(encoding="utf-8"))
    data = data if data is not None else json.loads((REPO / record.file).read_text(encoding="utf-8"))
    found = []
    for quote in record.quotes:
        assert quote.text.count("{}") == len(quote.values), quote
        match = pattern(quote.text).search(read_doc(quote.doc))
        if match is None:
            found.append(f"{quote.doc} no longer holds {quote.text!r}: update the quote in tests/doc_figures/")
            continue
        for shown, where in zip(match.groups(), quote.values, strict=True):
            value = where(data) if callable(where) else at(data, where)
            if not agrees(shown, value):
                name = where if isinstance(where, str) else "a figure computed from it"
                found.append(f"{quote.doc} shows {shown} in {quote.text!r} but {record.file} holds {value:.6g} "
                             f"({name})")
    return found


@pytest.mark.parametrize("record", [r for r in declared() if r.quotes], ids=lambda r: r.file.rsplit("/", 1)[-1])
def test_every_quoted_figure_matches_its_result_file(record):
    assert problems(record) == []


def test_every_cited_result_file_is_declared_and_exists():
    records = {r.file: r for r in declared()}
    for record in records.values():
        assert (REPO / record.file).is_file(), record.file
        assert record.quotes or record.cited_only, f"{record.file}: give its quotes or say why it has none"
    cited = {f"benchmarks/results/{name}": doc for doc in DOCS
             for name in CITED.findall((REPO / doc).read_text(encoding="utf-8"))}
    undeclared = {file: doc for file, doc in cited.items() if file not in records}
    assert not undeclared, f"cited but not declared in tests/doc_figures/ (add a module there): {undeclared}"


def test_a_figure_that_disagrees_with_its_file_is_caught():
    """A document changed without its file, and a file changed without its document, both show."""
    record = next(r for r in declared() if r.file.endswith("serve-latency-vm-2026-12-02.json"))
    text = (REPO / "docs/serving.md").read_text(encoding="utf-8")
    assert "| 80.9 ms | 87.2 ms | 1.06 |" in text
    edited = text.replace("| 80.9 ms | 87.2 ms | 1.06 |", "| 80.9 ms | 87.2 ms | 1.08 |")
    assert any("shows 1.08" in p for p in problems(record, read_doc=lambda doc: edited if doc == "docs/serving.md"
                                                  else (REPO / doc).read_text(encoding="utf-8")))
    data = json.loads((REPO / record.file).read_text(encoding="utf-8"))
    data["latency"][0]["served_p50_ms"] = 90.0
    assert any("holds 90" in p for p in problems(record, data=data))
    reworded = text.replace("p50 latency, concurrency 1, HTTP", "median latency, one client, HTTP")
    assert any("no longer holds" in p for p in problems(record, read_doc=lambda doc: reworded))


@pytest.mark.parametrize("shown, value, ok", [
    ("52.1", 52.0923, True), ("52.1", 52.16, False), ("2.7e-3", 2.66e-3, True), ("2.7e-3", 2.76e-3, False),
    ("8e-3", 0.008, True), ("-0.6", -0.576, True), ("1267", 1266.88, True), ("0.90", 0.9018, True),
    ("0.90", 0.906, False),
])
def test_figures_agree_at_the_digits_shown(shown, value, ok):
    assert agrees(shown, value) is ok


def test_paths_pick_keys_indices_and_the_one_matching_item():
    data = {"rows": [{"size": "224x224", "backend": "torch", "ms": 1}, {"size": "224x224", "backend": "ort", "ms": 2}]}
    assert at(data, "rows[size=224x224,backend=ort]/ms") == 2 and at(data, "rows/0/ms") == 1
    with pytest.raises(KeyError, match="matches 2 items"):
        at(data, "rows[size=224x224]/ms")
    assert isinstance(Quote("a", "{}", ("x",)), Quote)
