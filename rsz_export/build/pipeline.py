"""The build: weights -> ONNX export (reused when unchanged) -> engines -> manifest, in one output folder.

Every stage has a cache key over everything that affects its result (``keys``); a rerun whose keys match the
manifest, and whose files still match their sha256, reuses them without importing torch. ``build --onnx``
starts from a user's ONNX instead of an export (``onnx_import``); ``cleanup`` keeps the folder tidy. The
manifest is written last, atomically, under the folder's write lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rsz_export import __version__
from rsz_export.artifacts.files import atomic_path, directory_lock, ensure_writable_dir, sha256_file
from rsz_export.artifacts.host import host_info, library_versions
from rsz_export.artifacts.manifest import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    WeightsRecord,
    file_record,
    files_intact,
    load_previous_manifest,
    save_manifest,
)
from rsz_export.backends import choose_backend, require_backend
from rsz_export.backends.base import BuildOptions, Log
from rsz_export.build.cleanup import drop_untrusted_timing_cache, remove_partial, remove_stale
from rsz_export.build.keys import engine_dir_name, onnx_name, stage_keys
from rsz_export.build.onnx_import import ImportedOnnx, check_import
from rsz_export.errors import IntegrityError, RszError, UsageError, check_choice
from rsz_export.interface import PRECISIONS
from rsz_export.model.weights import default_weights, weights_identity
from rsz_export.plan.profiles import Plan


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
        check_choice(self.options.precision, "precision", PRECISIONS)


@dataclass(frozen=True)
class BuildResult:
    """The manifest now in the folder, and whether it was reused as it was."""

    manifest: Manifest
    reused: bool


def build(spec: BuildSpec, log: Log = lambda message: None) -> BuildResult:
    """Export, plan and build engines into ``spec.out_dir``; write the manifest last, atomically."""
    backend, reason = choose_backend(spec.backend)
    module = require_backend(backend)
    if spec.options.precision not in module.SUPPORTED_PRECISIONS:
        raise UsageError(
            f"precision {spec.options.precision} is not available on backend {backend}; "
            f"allowed: {', '.join(module.SUPPORTED_PRECISIONS)}"
        )
    imported = check_import(spec) if spec.onnx is not None else None  # before anything is written
    out_dir = ensure_writable_dir(spec.out_dir)
    with directory_lock(out_dir, "build"):
        return _build_locked(spec, backend, reason, module, out_dir, log, imported)


def _build_locked(
    spec, backend, reason, module, out_dir: Path, log: Log, imported: ImportedOnnx | None = None
) -> BuildResult:
    remove_partial(out_dir)
    if imported is None:
        weights_spec, warning = (spec.weights, None) if spec.weights is not None else default_weights(spec.seed)
    else:
        weights_spec, warning = spec.weights, None
    versions = library_versions()
    identity = weights_identity(weights_spec, spec.seed) if imported is None else imported.identity
    keys = stage_keys(spec, backend, identity, versions)
    previous = None if spec.force else load_previous_manifest(out_dir)
    if (
        previous
        and previous.keys == keys
        and files_intact(out_dir, [previous.onnx, *previous.engine_files()])
        and _runs_here(module, previous, log)
    ):
        log(f"up to date: reusing {out_dir / MANIFEST_NAME} (use --force to rebuild)")
        return BuildResult(previous, True)
    log(f"[1/3] {reason}")
    if imported is None:
        onnx_record, weights = _export_stage(spec, weights_spec, warning, keys, previous, out_dir, log)
    else:
        onnx_record, weights = _import_stage(spec, imported, keys, previous, out_dir, log)
    log(f"[2/3] building {len(spec.plan.profiles)} profile(s) with {backend}")
    engine_dir = out_dir / engine_dir_name(backend, keys)
    engine_dir.mkdir(exist_ok=True)
    options = spec.options
    if options.timing_cache is None:  # shared by every build in this folder, so it outlives engine folders
        options = replace(options, timing_cache=str(out_dir.resolve() / "timing.cache"))
    if backend == "tensorrt":
        drop_untrusted_timing_cache(out_dir, Path(options.timing_cache), log, module.timing_cache_problem)
    built = module.build_engines(out_dir / onnx_record.file, spec.plan, options, engine_dir, log)
    engines = [_rebase(engine, engine_dir.name) for engine in built]
    manifest = Manifest(
        tool_version=__version__, command=spec.command,
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        host=host_info(), versions=versions, onnx=onnx_record, weights=weights, backend=backend,
        precision=spec.options.precision, plan=spec.plan, engines=tuple(engines), cache_key=keys["engines"],
        warnings=tuple(w for w in (warning,) if w), keys=keys,
    )  # fmt: skip
    log(f"[3/3] writing {out_dir / MANIFEST_NAME}")
    save_manifest(manifest, out_dir)
    remove_stale(out_dir, manifest, log)
    return BuildResult(manifest, False)


def _runs_here(module, manifest: Manifest, log: Log) -> bool:
    """Whether every engine of an up-to-date manifest can run on this machine (a TensorRT engine copied from
    another GPU or TensorRT version cannot); if not, the engines are rebuilt here."""
    for engine in manifest.engines:
        if problem := module.check_compatible(manifest, engine):
            log(f"rebuilding: engine {engine.name}: {problem}")
            return False
    return True


def _export_stage(
    spec, weights_spec, warning, keys, previous, out_dir: Path, log: Log
) -> tuple[FileRecord, WeightsRecord]:
    """Reuse the ONNX when its key and hash still match; else load weights, export and verify."""
    if previous and previous.keys.get("export") == keys["export"] and files_intact(out_dir, [previous.onnx]):
        log("      reusing the exported ONNX (weights and exporter unchanged)")
        return previous.onnx, replace(previous.weights, warning=warning)
    from rsz_export.model.export import export_onnx
    from rsz_export.model.weights import build_model, resolve_weights

    target = out_dir / onnx_name(keys)
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
    if previous and previous.keys.get("export") == keys["export"] and files_intact(out_dir, [previous.onnx]):
        log("      reusing the imported ONNX (file and weights unchanged)")
        return previous.onnx, previous.weights
    target = out_dir / onnx_name(keys)
    log(f"      importing {imported.path} (interface checked)")
    with atomic_path(target) as tmp:
        shutil.copyfile(imported.path, tmp)
        if sha256_file(tmp) != imported.sha256:
            raise IntegrityError(
                f"--onnx {imported.path} changed while it was being copied", hint="run the build again"
            )
    weights = imported.weights
    if spec.weights is not None:
        from rsz_export.model.weights import resolve_weights

        log(f"      loading weights {spec.weights} (the reference for validate)")
        weights = resolve_weights(spec.weights, spec.seed)[1]
    return file_record(out_dir, target), weights


def _finished_export(path: Path, export_key: str) -> dict | None:
    """The metadata of a complete export for this key left by an interrupted run, else None.

    Safe to reuse: exports are checked and verified before their atomic rename, and the key in the file's
    own metadata must match (the file name alone is not trusted).
    """
    if not path.is_file():
        return None
    from rsz_export.model.export import read_metadata

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
