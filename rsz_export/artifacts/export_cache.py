"""Exported ONNX files shared by every build of one user: a build whose export key is in the cache takes the
file from there instead of exporting again, and puts each export it makes there.

Where: ``$RSZ_EXPORT_CACHE`` when set (``off`` turns the cache off), else ``$XDG_CACHE_HOME/rsz-export/exports``
(``~/.cache/rsz-export/exports``). An entry is named by the export stage's key (weights' content, tool and exporter
versions: ``pipeline keys``) and by the sha256 of its bytes, ``<key>.<sha256>.onnx``; a file is taken only when
its bytes still hash to its name, so a damaged entry is passed over (and removed), never used.

A build folder stays self-contained: the ONNX is hard-linked into it (no second copy on disk; deleting the cache
leaves the folder whole), or copied where a link cannot be made (another filesystem). Entries are written under a
temporary name and renamed into place, so concurrent builds never see half a file; two builds exporting the same
key at once each write a complete entry. Nothing is ever evicted: delete the folder to reclaim the space.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from rsz_export.artifacts.files import atomic_path, sha256_file
from rsz_export.errors import IntegrityError, OutputError

CACHE_ENV = "RSZ_EXPORT_CACHE"
OFF = "off"


def cache_dir() -> Path | None:
    """The cache folder, or None when ``$RSZ_EXPORT_CACHE`` is ``off``."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen == OFF:
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rsz-export" / "exports"


def _entries(folder: Path, key: str) -> list[Path]:
    try:
        return sorted(folder.glob(f"{key}.*.onnx"))
    except OSError:
        return []


def _place(source: Path, target: Path) -> None:
    """``source`` at ``target``, atomically: a hard link, or a copy across filesystems."""
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def fetch(key: str, target: Path) -> Path | None:
    """Put the cached export for ``key`` at ``target``; the cache entry used, or None when there is none (or no
    usable one, or no cache)."""
    folder = cache_dir()
    if folder is None:
        return None
    for entry in _entries(folder, key):
        try:
            intact = sha256_file(entry) == entry.suffixes[-2].lstrip(".")
        except IntegrityError:
            continue
        if not intact:
            with contextlib.suppress(OSError):
                entry.unlink()
            continue
        try:
            _place(entry, target)
        except (OSError, OutputError):
            continue
        return entry
    return None


def store(source: Path, key: str) -> Path | None:
    """Add ``source`` (a finished, verified export for ``key``) to the cache; the entry, or None when there is no
    cache or it cannot be written (a build never fails for want of a cache)."""
    folder = cache_dir()
    if folder is None:
        return None
    entry = folder / f"{key}.{sha256_file(source)}.onnx"
    if entry.is_file():
        return entry
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _place(source, entry)
    except (OSError, OutputError):
        return None
    return entry
