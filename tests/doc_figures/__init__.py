"""The figures README.md and docs/*.md quote from recorded result files, declared next to each other so a test
(tests/test_doc_figures.py) can read every cited file and check every quoted figure against it.

One module here per result file, holding ``RECORD``: the file, and each ``Quote`` of it: the document, its text
with every checked figure written as ``{}``, and per ``{}`` where the figure lives in the file (a path, see
``at``, or a function of the whole record). A figure matches when the file's value rounds to it at the digits
the document shows (``52.1`` matches 52.05..52.15; ``2.7e-3`` matches 2.65e-3..2.75e-3). Whitespace in the text
matches any whitespace, so a quote may wrap across lines as the document does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Quote:
    """``text`` as it stands in ``doc`` (``{}`` for each checked figure) and, per ``{}``, its value's place."""

    doc: str
    text: str
    values: tuple[str | Callable[[Any], float], ...]


@dataclass(frozen=True)
class Record:
    """A result file under benchmarks/results/ and what the documents quote from it. ``cited_only``: why a
    cited file has no quotes of its own (a plot, a table rendered from a JSON checked elsewhere)."""

    file: str
    quotes: tuple[Quote, ...] = ()
    cited_only: str | None = None


def at(data: Any, path: str) -> Any:
    """The value at ``path`` in parsed JSON: keys and list indices separated by ``/``; ``name[k=v,...]`` picks
    the one item of list ``name`` whose fields equal those values (compared as text)."""
    for part in path.split("/"):
        if "[" in part:
            name, _, condition = part.partition("[")
            wanted = dict(pair.split("=", 1) for pair in condition.rstrip("]").split(","))
            matches = [item for item in data[name] if all(str(item.get(k)) == v for k, v in wanted.items())]
            if len(matches) != 1:
                raise KeyError(f"{part!r} matches {len(matches)} items, not one")
            data = matches[0]
        elif isinstance(data, list):
            data = data[int(part)]
        else:
            data = data[part]
    return data
