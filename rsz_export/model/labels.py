"""Class names: read from a user's file (one name per line, or a JSON list), checked, stored with a build, and
read back for predict and sweep. Index = logit position.

A build without names uses ImageNet's for a 1000-class head and ``class <index>`` for any other.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.interface import NUM_CLASSES

_SHOWN = 5


def normal_name(name: str) -> str:
    """How a class name is matched (sweep's folder names): case, ``_``, ``-`` and runs of spaces do not matter."""
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--labels {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _from_json(text: str, path: Path) -> list[str]:
    try:
        names = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--labels {path} starts like a JSON list but is not valid JSON: {exc}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"--labels {path} must be a JSON list of strings (class names)")
    return names


def _from_lines(text: str, path: Path) -> list[str]:
    lines = text.rstrip().splitlines()  # a trailing newline (or several) ends the file, it names no class
    blank = [i for i, line in enumerate(lines, 1) if not line.strip()]
    if blank:
        raise UsageError(
            f"--labels {path}: line(s) {', '.join(map(str, blank[:_SHOWN]))} are empty; every line names the class "
            "of its logit position, so an empty line would shift every name after it"
        )
    return [line.strip() for line in lines]


def check_names(names: Sequence[str], source: str) -> tuple[str, ...]:
    """``names`` when each is a non-empty single line and no two match alike (``normal_name``); else UsageError."""
    if not names:
        raise UsageError(f"{source} holds no class names", hint="one name per line, or a JSON list of strings")
    bad = [i for i, n in enumerate(names) if not n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise UsageError(f"{source}: class name(s) at index {', '.join(map(str, bad[:_SHOWN]))} are empty or span "
                         "lines")
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
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--labels {path} does not exist", hint="give a file with one class name per line") from None
    except OSError as exc:
        raise UsageError(f"--labels {path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    text = _decode(data, path)
    names = _from_json(text, path) if text.lstrip().startswith("[") else _from_lines(text, path)
    return check_names(names, f"--labels {path}"), hashlib.sha256(data).hexdigest()


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
