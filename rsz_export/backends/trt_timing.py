"""The TensorRT timing cache of a build: loaded once and shared by every engine of the build, refused when TensorRT
cannot read it, and merged back into its file under a lock, so that builds sharing one file keep each other's
entries (what Polygraphy's engine loader and trtexec's ``updateTimingCacheFile`` do) instead of the last one
overwriting the others'."""

from __future__ import annotations

from pathlib import Path

from rsz_export.artifacts.files import atomic_write_bytes, exclusive_lock
from rsz_export.backends import trt_support as ts
from rsz_export.backends.trt_env import logged
from rsz_export.errors import EnvironmentProblem, IntegrityError
from rsz_export.interface import Log


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes() if path.exists() else b""
    except OSError as exc:
        raise IntegrityError(f"cannot read the timing cache {path}: {exc.strerror or exc}") from None


def open_timing_cache(trt, builder_config, logger, path: Path):
    """(timing cache, the bytes it was loaded from). ``create_timing_cache`` returns None for bytes it cannot
    read (another TensorRT version, or not a timing cache; TENSORRT.md "Pitfalls"); the file is then refused,
    never overwritten. A cache the manifest vouches for but an earlier TensorRT wrote is dropped before the
    build (``pipeline.cleanup.drop_untrusted_timing_cache``), so what reaches this point is the user's."""
    before = _read(path)
    timing_cache = builder_config.create_timing_cache(before)
    if timing_cache is None:
        raise IntegrityError(
            f"TensorRT {trt.__version__} cannot read the timing cache {path} ({logged(logger, 1)}): another "
            "TensorRT version wrote it, or it is not a timing cache",
            hint=f"delete {path} to start a new one, or pass --timing-cache with another path",
        )
    return timing_cache, before


def use_timing_cache(builder_config, timing_cache, path: Path) -> None:
    """Hand the cache to a builder config; a cache made on another GPU is refused (``setTimingCache`` checks the
    device unless told to ignore it, which would let tactics timed elsewhere pick this GPU's kernels)."""
    if not builder_config.set_timing_cache(timing_cache, False):
        raise EnvironmentProblem(
            f"the timing cache {path} was made on another GPU",
            hint=f"delete {path} to start a new one, or pass --timing-cache with another path",
        )


def cache_entries(timing_cache) -> int | None:
    """Entries in the cache; queryKeys exists from 10.8 (older 10.x: None, the manifest records bytes only)."""
    return len(timing_cache.queryKeys()) if hasattr(timing_cache, "queryKeys") else None


def save_timing_cache(builder, timing_cache, path: Path, log: Log) -> bytes:
    """Merge ``timing_cache`` into the file at ``path`` under ``path.lock`` (read, combine, atomic write);
    returns the bytes written. Entries another build added since this one loaded the file are kept."""
    with exclusive_lock(path.with_name(path.name + ".lock")):
        on_disk = _read(path)
        if on_disk:
            previous = builder.create_builder_config().create_timing_cache(on_disk)
            if previous is None or not timing_cache.combine(previous, False):
                log(f"tensorrt: {path} changed during the build into a cache this one cannot merge; replacing it")
        merged = bytes(memoryview(timing_cache.serialize()))
        atomic_write_bytes(path, merged)
    return merged


def cache_stats(path: Path, before: bytes, after: bytes, keys_before, timing_cache) -> dict:
    """What the manifest records about the cache (see ``trt_support.timing_cache_stats``)."""
    return ts.timing_cache_stats(str(path), before, after, keys_before, cache_entries(timing_cache))
