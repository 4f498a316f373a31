"""Keeping a build folder tidy: temp files of killed runs, files no manifest references any more, and a
timing cache no manifest vouches for."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from rsz_export.artifacts.files import sha256_file, stale_cleanup_allowed
from rsz_export.artifacts.manifest import Manifest, load_previous_manifest
from rsz_export.interface import Log
from rsz_export.pipeline.keys import KEY_CHARS


def remove_partial(out_dir: Path) -> None:
    """Temp files of a run that was killed (SIGKILL leaves them): safe to delete while we hold the lock."""
    for pattern in (".*.tmp", "*/.*.tmp"):
        for path in out_dir.glob(pattern):
            with contextlib.suppress(OSError):
                path.unlink()


def drop_untrusted_timing_cache(out_dir: Path, cache: Path, log: Log, problem=lambda settings: None) -> None:
    """TensorRT parses a timing cache natively, so the one kept in ``out_dir`` is used only when the manifest
    there recorded its sha256 (it is what an earlier build wrote) and ``problem(settings)`` of the engines that
    recorded it is None (the backend's check that this TensorRT and GPU can use it, e.g. after an upgrade);
    otherwise it is deleted before the build. A --timing-cache elsewhere is the user's own file, used as given."""
    if cache.parent != out_dir.resolve() or not cache.is_file():
        return
    current = load_previous_manifest(out_dir)
    sha = sha256_file(cache)
    vouching = [
        e for e in (current.engines if current else ()) if (e.settings.get("timing_cache") or {}).get("sha256") == sha
    ]
    why = problem(vouching[0].settings) if vouching else "no manifest here records its sha256"
    if why:
        log(f"not using {cache.name}: {why}; TensorRT starts a new one")
        cache.unlink(missing_ok=True)


def _is_build_output(path: Path) -> bool:
    name = path.name
    if path.is_file():
        return (name.startswith("model-") and name.endswith(".onnx")) or (
            name.startswith("labels-") and name.endswith(".txt")
        ) or (name.startswith("calibration-") and name.endswith(".json"))
    head, _, key = name.rpartition("-")
    return bool(head) and len(key) == KEY_CHARS and all(c in "0123456789abcdef" for c in key)


def remove_stale(out_dir: Path, current: Manifest, log: Log = lambda message: None) -> None:
    """After the new manifest is saved, delete earlier exports, class-name copies, int8 calibrations and engine
    folders it does not reference (those of replaced builds and of interrupted ones) unless a reader (validate,
    predict, bench) is using the folder: then they stay, for the next build to remove."""
    keep = {Path(f.file).parts[0] for f in current.engine_files()} | {current.onnx.file}
    keep |= {current.labels.file.file} if current.labels else set()
    keep |= {current.calibration.file.file} if current.calibration else set()
    stale = [path for path in out_dir.iterdir() if path.name not in keep and _is_build_output(path)]
    if not stale:
        return
    with stale_cleanup_allowed(out_dir) as allowed:
        if not allowed:
            log(f"kept {len(stale)} earlier file(s): a reader is using {out_dir}; the next build removes them")
            return
        for path in stale:
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
