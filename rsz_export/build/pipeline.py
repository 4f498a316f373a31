"""The build pipeline: weights -> ONNX export (reused when unchanged) -> engines -> manifest.

Every stage has a cache key over everything that affects its result; a rerun whose keys match the
manifest, and whose files still match their sha256, reuses them without importing torch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rsz_export import __version__
from rsz_export.backends import choose_backend, require_backend
from rsz_export.backends.base import BuildOptions, Log
from rsz_export.errors import EnvironmentProblem, IntegrityError, RszError, UsageError
from rsz_export.fileio import atomic_path, directory_lock, ensure_writable_dir, sha256_file, stale_cleanup_allowed
from rsz_export.hostinfo import host_info, library_versions
from rsz_export.manifest import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    WeightsRecord,
    file_record,
    load_manifest,
    save_manifest,
    verify_file,
)
from rsz_export.model import DEFAULT_WEIGHTS, PRETRAINED, weights_identity
from rsz_export.planning import PRECISIONS, Plan

ONNX_PATTERN = "model-{key}.onnx"
ENGINE_DIR_PATTERN = "{backend}-{key}"
"""Files are named by their stage key, so a new build never overwrites what the current manifest points to:
an interrupted or failed build leaves the previous manifest and its files intact."""
_KEY_CHARS = 12
_EXPORT_LIBRARIES = ("torch", "torchvision", "onnx")


@dataclass(frozen=True)
class BuildSpec:
    """What to build. ``weights=None`` means the default pretrained weights, falling back to random.

    ``onnx``: build from this user-provided ONNX instead of exporting (its interface is checked first); the
    weights it was exported from come from its rsz_export metadata, or from ``weights`` when given.
    """

    plan: Plan
    out_dir: Path
    backend: str = "auto"
    weights: str | None = None
    seed: int = 0
    options: BuildOptions = field(default_factory=BuildOptions)
    force: bool = False
    verify: bool = True
    command: str = ""
    onnx: Path | None = None

    def __post_init__(self) -> None:
        if self.options.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.options.precision!r}; choose one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class ImportedOnnx:
    """A user-provided ONNX that passed the interface check: its hash and the weights it stands for."""

    path: Path
    sha256: str
    identity: str
    weights: WeightsRecord | None


@dataclass(frozen=True)
class BuildResult:
    manifest: Manifest
    reused: bool
    backend_reason: str


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _weights_choice(spec: BuildSpec) -> tuple[str, str | None]:
    """(weights spec to use, warning): the default falls back to seeded random weights when unavailable."""
    if spec.weights is not None:
        return spec.weights, None
    from rsz_export.model import pretrained_path

    try:
        pretrained_path(DEFAULT_WEIGHTS)
        return DEFAULT_WEIGHTS, None
    except EnvironmentProblem as exc:
        return "random", (
            f"default weights {DEFAULT_WEIGHTS} unavailable ({exc.message}); built with seeded random weights "
            f"(seed {spec.seed}): outputs are NOT ImageNet predictions. Put {PRETRAINED[DEFAULT_WEIGHTS]} in the "
            "torch hub cache and rebuild with --force for real weights"
        )


def stage_keys(spec: BuildSpec, backend: str, weights_id: str, versions: dict) -> dict[str, str]:
    """Cache keys: export depends on weights and exporter versions; engines on that and everything else."""
    export = _digest({"tool": __version__, "weights": weights_id, **{k: versions.get(k) for k in _EXPORT_LIBRARIES}})
    options = {k: v for k, v in asdict(spec.options).items() if k != "timing_cache"}  # tuning speed, not results
    engines = _digest(
        {"export": export, "backend": backend, "plan": spec.plan.to_dict(), "options": options, "versions": versions}
    )
    return {"export": export, "engines": engines}


def _previous(out_dir: Path) -> Manifest | None:
    if not (out_dir / MANIFEST_NAME).exists():
        return None
    with contextlib.suppress(RszError):
        return load_manifest(out_dir)
    return None


def _files_intact(out_dir: Path, records) -> bool:
    try:
        for record in records:
            verify_file(out_dir, record)
    except RszError:
        return False
    return True


def _engine_files(manifest: Manifest) -> list[FileRecord]:
    return [f for e in manifest.engines for f in (e.file, *e.extra_files)]


def build(spec: BuildSpec, log: Log = lambda message: None) -> BuildResult:
    """Export, plan and build engines into ``spec.out_dir``; write the manifest last, atomically."""
    backend, reason = choose_backend(spec.backend)
    module = require_backend(backend)
    if spec.options.precision not in module.PRECISIONS:
        raise UsageError(
            f"precision {spec.options.precision} is not available on backend {backend}; "
            f"allowed: {', '.join(module.PRECISIONS)}"
        )
    imported = check_import(spec) if spec.onnx is not None else None  # before anything is written
    out_dir = ensure_writable_dir(spec.out_dir)
    with directory_lock(out_dir, "build"):
        return _build_locked(spec, backend, reason, module, out_dir, log, imported)


def weights_from_metadata(meta: dict[str, str]) -> WeightsRecord | None:
    """The WeightsRecord an rsz-export ONNX names in its metadata, or None when it does not say enough."""
    weights_id, sha = meta.get("rsz_export.weights_id"), meta.get("rsz_export.weights_sha256")
    if not weights_id or not sha:
        return None
    source = meta.get("rsz_export.weights_source", "")
    seed_text = meta.get("rsz_export.weights_seed") or ""
    if not seed_text and weights_id == "random":  # exports before weights_seed: "numpy PCG64 seed N"
        found = re.search(r"seed (\d+)$", source)
        seed_text = found.group(1) if found else ""
    if weights_id == "random" and not seed_text.isdigit():
        return None
    return WeightsRecord(weights_id, sha, source, int(seed_text) if seed_text.isdigit() else None)


def check_import(spec: BuildSpec) -> ImportedOnnx:
    """Check ``spec.onnx`` (interface, weights to validate against) without writing anything."""
    from rsz_export.export import check_user_onnx

    meta = check_user_onnx(spec.onnx, spec.plan)
    weights = weights_from_metadata(meta)
    if spec.weights is None and weights is None:
        raise UsageError(
            f"--onnx {spec.onnx} does not say which weights it was exported from (no rsz_export metadata), "
            "so validate would have no PyTorch reference",
            hint="give the weights it holds with --weights imagenet1k-v1|imagenet1k-v2|random|PATH",
        )
    sha = sha256_file(spec.onnx)
    chosen = weights_identity(spec.weights, spec.seed) if spec.weights is not None else f"meta:{weights.sha256}"
    return ImportedOnnx(Path(spec.onnx), sha, f"onnx:{sha}|{chosen}", weights)


def _build_locked(
    spec, backend, reason, module, out_dir: Path, log: Log, imported: ImportedOnnx | None = None
) -> BuildResult:
    _remove_partial(out_dir)
    weights_spec, warning = _weights_choice(spec) if imported is None else (spec.weights, None)
    versions = library_versions()
    identity = weights_identity(weights_spec, spec.seed) if imported is None else imported.identity
    keys = stage_keys(spec, backend, identity, versions)
    previous = None if spec.force else _previous(out_dir)
    if previous and previous.keys == keys and _files_intact(out_dir, [previous.onnx, *_engine_files(previous)]):
        log(f"up to date: reusing {out_dir / MANIFEST_NAME} (use --force to rebuild)")
        return BuildResult(previous, True, reason)
    log(f"[1/3] {reason}")
    if imported is None:
        onnx_record, weights = _export_stage(spec, weights_spec, warning, keys, previous, out_dir, log)
    else:
        onnx_record, weights = _import_stage(spec, imported, keys, previous, out_dir, log)
    log(f"[2/3] building {len(spec.plan.profiles)} profile(s) with {backend}")
    engine_dir = out_dir / ENGINE_DIR_PATTERN.format(backend=backend, key=keys["engines"][:_KEY_CHARS])
    engine_dir.mkdir(exist_ok=True)
    options = spec.options
    if options.timing_cache is None:  # shared by every build in this folder, so it outlives engine folders
        options = replace(options, timing_cache=str(out_dir.resolve() / "timing.cache"))
    if backend == "tensorrt":
        drop_untrusted_timing_cache(out_dir, Path(options.timing_cache), log)
    built = module.build_engines(out_dir / onnx_record.file, spec.plan, options, engine_dir, log)
    engines = [_rebase(engine, engine_dir.name) for engine in built]
    manifest = Manifest(
        tool_version=__version__,
        command=spec.command,
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        host=host_info(),
        versions=versions,
        onnx=onnx_record,
        weights=weights,
        backend=backend,
        precision=spec.options.precision,
        plan=spec.plan,
        engines=tuple(engines),
        cache_key=keys["engines"],
        warnings=tuple(w for w in (warning,) if w),
        keys=keys,
    )
    log(f"[3/3] writing {out_dir / MANIFEST_NAME}")
    save_manifest(manifest, out_dir)
    _remove_stale(out_dir, manifest, log)
    return BuildResult(manifest, False, reason)


def _export_stage(
    spec, weights_spec, warning, keys, previous, out_dir: Path, log: Log
) -> tuple[FileRecord, WeightsRecord]:
    """Reuse the ONNX when its key and hash still match; else load weights, export and verify."""
    if previous and previous.keys.get("export") == keys["export"] and _files_intact(out_dir, [previous.onnx]):
        log("      reusing the exported ONNX (weights and exporter unchanged)")
        return previous.onnx, replace(previous.weights, warning=warning)
    from rsz_export.export import export_onnx
    from rsz_export.model import build_model, resolve_weights

    target = out_dir / ONNX_PATTERN.format(key=keys["export"][:_KEY_CHARS])
    finished = _finished_export(target, keys["export"])
    if finished and not spec.force:
        log(f"      reusing {target.name}, finished by an earlier run that stopped before its manifest")
        return file_record(out_dir, target), WeightsRecord(
            finished["rsz_export.weights_id"],
            finished["rsz_export.weights_sha256"],
            finished.get("rsz_export.weights_source", ""),
            spec.seed if weights_spec == "random" else None,
            warning,
        )

    started = time.perf_counter()
    log(f"      loading weights {weights_spec}")
    state, weights = resolve_weights(weights_spec, spec.seed)
    weights = replace(weights, warning=warning)
    model = build_model(state, source=weights.source)
    onnx_path, checks = export_onnx(model, weights, target, log, verify=spec.verify, export_key=keys["export"])
    if checks:
        worst = max(c.rel_l2 for c in checks)
        log(f"      verified against PyTorch at {', '.join(str(c.size) for c in checks)}: worst rel L2 {worst:.1e}")
    log(f"      export took {time.perf_counter() - started:.1f} s")
    return file_record(out_dir, onnx_path), weights


def _import_stage(
    spec, imported: ImportedOnnx, keys, previous, out_dir: Path, log: Log
) -> tuple[FileRecord, WeightsRecord]:
    """Copy the user's ONNX in under its stage key (reused when unchanged) and name the weights it holds."""
    if previous and previous.keys.get("export") == keys["export"] and _files_intact(out_dir, [previous.onnx]):
        log("      reusing the imported ONNX (file and weights unchanged)")
        return previous.onnx, previous.weights
    target = out_dir / ONNX_PATTERN.format(key=keys["export"][:_KEY_CHARS])
    log(f"      importing {imported.path} (interface checked)")
    with atomic_path(target) as tmp:
        shutil.copyfile(imported.path, tmp)
        if sha256_file(tmp) != imported.sha256:
            raise IntegrityError(
                f"--onnx {imported.path} changed while it was being copied", hint="run the build again"
            )
    weights = imported.weights
    if spec.weights is not None:
        from rsz_export.model import resolve_weights

        log(f"      loading weights {spec.weights} (the reference for validate)")
        weights = resolve_weights(spec.weights, spec.seed)[1]
    return file_record(out_dir, target), weights


def drop_untrusted_timing_cache(out_dir: Path, cache: Path, log: Log) -> None:
    """TensorRT parses a timing cache natively, so the one kept in ``out_dir`` is used only when the manifest
    there recorded its sha256 (it is what an earlier build wrote); otherwise it is deleted before the build.
    A --timing-cache elsewhere is the user's own file and is used as given."""
    if cache.parent != out_dir.resolve() or not cache.is_file():
        return
    current = _previous(out_dir)
    recorded = {(e.settings.get("timing_cache") or {}).get("sha256") for e in current.engines} if current else set()
    if sha256_file(cache) not in recorded:
        log(f"      not using {cache.name}: no manifest here records its sha256; TensorRT starts a new one")
        cache.unlink(missing_ok=True)


def _remove_partial(out_dir: Path) -> None:
    """Temp files of a run that was killed (SIGKILL leaves them): safe to delete while we hold the lock."""
    for pattern in (".*.tmp", "*/.*.tmp"):
        for path in out_dir.glob(pattern):
            with contextlib.suppress(OSError):
                path.unlink()


def _finished_export(path: Path, export_key: str) -> dict | None:
    """The metadata of a complete export for this key left by an interrupted run, else None.

    Safe to reuse: exports are checked and verified before their atomic rename, and the key in the file's
    own metadata must match (the file name alone is not trusted).
    """
    if not path.is_file():
        return None
    from rsz_export.export import read_metadata

    with contextlib.suppress(RszError):
        meta = read_metadata(path)
        if meta.get("rsz_export.export_key") == export_key and meta.get("rsz_export.verified") == "true":
            return meta
    return None


def _rebase(engine, subdir: str):
    """Engine records from a backend name files relative to ``subdir``; the manifest names them from its own dir."""

    def moved(record: FileRecord) -> FileRecord:
        return replace(record, file=f"{subdir}/{record.file}")

    return replace(engine, file=moved(engine.file), extra_files=tuple(moved(f) for f in engine.extra_files))


def _is_build_output(path: Path) -> bool:
    name = path.name
    if path.is_file():
        return name.startswith("model-") and name.endswith(".onnx")
    head, _, key = name.rpartition("-")
    return bool(head) and len(key) == _KEY_CHARS and all(c in "0123456789abcdef" for c in key)


def _remove_stale(out_dir: Path, current: Manifest, log: Log = lambda message: None) -> None:
    """After the new manifest is saved, delete earlier exports and engine folders it does not reference
    (those of replaced builds and of interrupted ones) unless a reader (validate, predict, bench) is using
    the folder: then they stay, for the next build to remove."""
    keep = {Path(f.file).parts[0] for f in _engine_files(current)} | {current.onnx.file}
    stale = [path for path in out_dir.iterdir() if path.name not in keep and _is_build_output(path)]
    if not stale:
        return
    with stale_cleanup_allowed(out_dir) as allowed:
        if not allowed:
            log(f"      kept {len(stale)} earlier file(s): a reader is using {out_dir}; the next build removes them")
            return
        for path in stale:
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
