"""Class names: read from a user's file (one name per line, or a JSON list), checked, stored with a build, and
read back for predict and sweep. Index = logit position.

A build without names uses ImageNet's for a 1000-class head and ``class <index>`` for any other.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from rsz_export.errors import IntegrityError, UsageError, read_small_file, shown
from rsz_export.interface import NUM_CLASSES

_SHOWN = 5
MAX_NAME_CHARS = 200
"""The longest class name accepted (ImageNet's longest is 121 characters)."""


def normal_name(name: str) -> str:
    """How a class name is matched (sweep's folder names): case, ``_``, ``-`` and runs of spaces do not matter."""
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--labels {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _from_json(text: str, path: str) -> list[str]:
    try:
        names = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--labels {path} starts like a JSON list but is not valid JSON: {exc}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"--labels {path} must be a JSON list of strings (class names)")
    return names


def _from_lines(text: str, path: str) -> list[str]:
    # Lines end at \n (\r\n too) only: splitlines() would also break at \x1c, \x85 or \u2028 without a word.
    text = text.rstrip()  # a trailing newline (or several) ends the file, it names no class
    lines = text.split("\n") if text else []
    blank = [i for i, line in enumerate(lines, 1) if not line.strip()]
    if blank:
        raise UsageError(
            f"--labels {path}: line(s) {', '.join(map(str, blank[:_SHOWN]))} are empty; every line names the class "
            "of its logit position, so an empty line would shift every name after it"
        )
    return [line.strip() for line in lines]


def _invisible(char: str) -> bool:
    """Control, format, unassigned and line-separating characters: nothing a class name should hold (tabs,
    newlines and NUL included)."""
    return unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp")


def _refuse(source: str, indexes: list[int], what: str) -> None:
    if indexes:
        more = f" and {len(indexes) - _SHOWN} more" if len(indexes) > _SHOWN else ""
        raise UsageError(f"{source}: class name(s) at index {', '.join(map(str, indexes[:_SHOWN]))}{more} {what}",
                         hint="one name per line (or a JSON list of strings), each a few printable words")


def check_names(names: Sequence[str], source: str) -> tuple[str, ...]:
    """``names`` when each is non-empty, at most ``MAX_NAME_CHARS`` long, free of control and invisible
    characters, and no two match alike (``normal_name``); else UsageError."""
    if not names:
        raise UsageError(f"{source} holds no class names", hint="one name per line, or a JSON list of strings")
    _refuse(source, [i for i, n in enumerate(names) if not n.strip()], "are empty")
    _refuse(source, [i for i, n in enumerate(names) if len(n.strip()) > MAX_NAME_CHARS],
            f"are longer than {MAX_NAME_CHARS} characters")
    hidden = [i for i, n in enumerate(names) if any(_invisible(c) for c in n)]
    if hidden:
        example = next(c for c in names[hidden[0]] if _invisible(c))
        _refuse(source, hidden, f"hold control or invisible characters (e.g. {example!r} in "
                f"{shown(names[hidden[0]][:40])})")
    seen: dict[str, int] = {}
    clashes = []
    for index, name in enumerate(names):
        first = seen.setdefault(normal_name(name), index)
        if first != index:
            clashes.append(f"{names[first]!r} (index {first}) and {name!r} (index {index})")
    if clashes:
        raise UsageError(
            f"{source} names a class twice: {'; '.join(clashes[:_SHOWN])}"
            + (f" and {len(clashes) - _SHOWN} more" if len(clashes) > _SHOWN else ""),
            hint="each class needs its own name (case, spaces, '_' and '-' do not tell names apart)",
        )
    return tuple(n.strip() for n in names)


def read_labels(path: str | Path) -> tuple[tuple[str, ...], str]:
    """The class names in a ``--labels`` file and the sha256 of its bytes; UsageError for a missing, unreadable,
    empty or ambiguous file."""
    path = Path(path)
    try:
        data = read_small_file(path, f"--labels {shown(path)}")
    except FileNotFoundError:
        raise UsageError(f"--labels {shown(path)} does not exist",
                         hint="give a file with one class name per line") from None
    text = _decode(data, shown(path))
    names = _from_json(text, shown(path)) if text.lstrip().startswith("[") else _from_lines(text, shown(path))
    return check_names(names, f"--labels {shown(path)}"), hashlib.sha256(data).hexdigest()


def check_count(names: Sequence[str], num_classes: int, source: str, head: str) -> None:
    """UsageError unless there is one name per class."""
    if len(names) != num_classes:
        raise UsageError(
            f"{source} has {len(names)} class name(s) but the model has {num_classes} classes ({head})",
            hint="give one name per output class, in logit order",
        )


def labels_text(names: Sequence[str]) -> str:
    """How names are stored in a build folder: one per line, UTF-8."""
    return "".join(f"{name}\n" for name in names)


def default_names(num_classes: int) -> list[str]:
    """Names for a build without ``--labels``: ImageNet's for a 1000-class head, else ``class <index>``."""
    from rsz_export.images.imagenet import labels

    return labels() if num_classes == NUM_CLASSES else [f"class {i}" for i in range(num_classes)]


def build_names(manifest, out_dir: str | Path) -> list[str]:
    """The class names of the build in ``out_dir``: its labels copy, checked against the manifest's sha256
    and class count before use, or the defaults."""
    from rsz_export.artifacts.manifest import verified_bytes

    if manifest.labels is None:
        return default_names(manifest.num_classes)
    text = verified_bytes(out_dir, manifest.labels.file).decode("utf-8")
    names = text.splitlines()
    if len(names) != manifest.num_classes:
        raise IntegrityError(
            f"{Path(out_dir) / manifest.labels.file.file} holds {len(names)} names for {manifest.num_classes} "
            "classes", hint="rebuild it: rsz-export build --force"
        )
    return names
