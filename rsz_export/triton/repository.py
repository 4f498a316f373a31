"""``rsz-export triton``: a Triton model repository written from a build, atomically.

Every config is made and checked (``triton_config``) before anything is written. The repository is assembled in a
temporary folder beside PATH (``.NAME.rsz-export-<pid>.tmp``), each engine file checked against the manifest's
sha256 as it is copied, then renamed onto PATH: a failure or an interrupt leaves PATH as it was and no temporary
folder. An existing PATH is refused unless ``force``, and even then replaced only when it is a repository this
command wrote (it holds ``rsz-export.json``) or an empty folder. Folders left by a killed run are removed by the
next run for the same PATH (an old repository a killed ``--force`` run had moved aside is put back).

The repository root holds the model folders (what Triton reads), ``rsz-export.json`` (the source manifest's
sha256, the engines' and every copied file's hashes), ``routing.json`` (each model's ranges and the routing rule)
and ``kserve.yaml``. Triton loads only the sub-folders of a repository, so the files beside them are ignored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from rsz_export import __version__
from rsz_export.artifacts.files import atomic_write_bytes, readers_lock, sha256_file
from rsz_export.artifacts.manifest import MANIFEST_NAME, Manifest, load_manifest, verified_bytes
from rsz_export.errors import IntegrityError, OutputError
from rsz_export.interface import Log
from rsz_export.shapes import is_digits
from rsz_export.triton.config import ModelSpec, TritonOptions, config_text, model_threads, plan_models, routing
from rsz_export.triton.kserve import check_storage_uri, inference_service

MARKER = "rsz-export.json"
ROUTING = "routing.json"
KSERVE = "kserve.yaml"
VERSION_DIR = "1"


@dataclass(frozen=True)
class TritonRepo:
    """What was written: the repository, its models, and the TensorRT version its plans need (None for ORT)."""

    path: Path
    models: tuple[ModelSpec, ...]
    tensorrt_version: str | None
    replaced: bool
    placeholder_uri: bool


def _tensorrt_version(models) -> str | None:
    """The TensorRT version the repository's plans need (``ModelSpec.runtime_version``), None when any loads it."""
    return next((m.runtime_version for m in models if m.runtime_version), None)


def _check_target(repo: Path, force: bool) -> bool:
    """Whether ``repo`` exists (and may be replaced); OutputError when it may not."""
    if not repo.exists() and not repo.is_symlink():
        return False
    if not repo.is_dir() or repo.is_symlink():
        raise OutputError(f"cannot write a repository at {repo}: it is a file or a link", hint="choose another path")
    if not force:
        raise OutputError(f"{repo} already exists", hint="give --force to replace it, or choose another --repo")
    if (repo / MARKER).is_file() or not any(repo.iterdir()):
        return True
    raise OutputError(
        f"{repo} is not a repository written by rsz-export triton (no {MARKER}): --force replaces only those",
        hint="choose another --repo, or remove the folder yourself",
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_leftovers(repo: Path) -> None:
    """Clean up after killed runs writing ``repo`` (their process is gone): remove their temporary folders, and put
    back a repository one of them had moved aside and not replaced."""
    for path in sorted(repo.parent.glob(f".{repo.name}.rsz-export-*")):
        pid, _, kind = path.name.rsplit("rsz-export-", 1)[1].partition(".")
        if not is_digits(pid) or _pid_alive(int(pid)) or not path.is_dir():
            continue
        if kind == "old" and not repo.exists():
            path.rename(repo)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _make_temp(tmp: Path, repo: Path) -> None:
    if tmp.exists():  # this process id's folder from a killed run
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise OutputError(f"cannot write {repo}: {exc.strerror or exc}", hint="choose a writable folder") from None


def _write(path: Path, data: bytes, written: dict, root: Path) -> None:
    atomic_write_bytes(path, data)
    written[str(path.relative_to(root))] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _fill(tmp: Path, engines_dir: Path, manifest: Manifest, models, configs: dict, extras: dict, log: Log) -> dict:
    """Write every file into ``tmp``; returns {relative path: sha256 and size}."""
    written: dict = {}
    for model in models:
        folder = tmp / model.name
        _write(folder / "config.pbtxt", configs[model.name].encode(), written, tmp)
        log(f"copying {model.source.file} ({model.source.bytes / 2**20:.1f} MiB) to {model.name}/{VERSION_DIR}/")
        _write(folder / VERSION_DIR / model.target, verified_bytes(engines_dir, model.source), written, tmp)
        for record, target in model.extra:
            _write(folder / VERSION_DIR / target, verified_bytes(engines_dir, record), written, tmp)
    for name, text in extras.items():
        _write(tmp / name, text.encode(), written, tmp)
    return written


def _marker(engines_dir: Path, manifest: Manifest, manifest_sha: str, models, written: dict) -> str:
    return json.dumps({
        "tool_version": __version__,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": {"engines_dir": str(engines_dir.resolve()), "manifest_sha256": manifest_sha,
                   "manifest_cache_key": manifest.cache_key, "backend": manifest.backend,
                   "precision": manifest.precision, "num_classes": manifest.num_classes,
                   "tensorrt_version": _tensorrt_version(models),
                   "engines": [e.to_dict() | {"settings": _portable_facts(e.settings)} for e in manifest.engines]},
        "models": [asdict(m) for m in models],
        "files": written,
    }, indent=2) + "\n"


def _portable_facts(settings: dict) -> dict:
    """The engine facts a server must match (the full settings stay in the build's manifest)."""
    keys = ("tensorrt_version", "gpu_name", "compute_capability", "hardware_compat", "version_compat", "device",
            "onnxruntime_version", "intra_op_num_threads", "inter_op_num_threads", "openvino_version",
            "INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "capabilities")
    return {k: settings[k] for k in keys if k in settings}


def _publish(tmp: Path, repo: Path, replace: bool) -> None:
    """Rename ``tmp`` onto ``repo``; an existing one is moved aside first and put back if anything fails."""
    old = repo.with_name(f".{repo.name}.rsz-export-{os.getpid()}.old")
    moved = False
    try:
        if replace:
            os.rename(repo, old)
            moved = True
        os.rename(tmp, repo)
    except BaseException as exc:  # an interrupt between the two renames must not lose the old repository
        if moved and not repo.exists():
            os.rename(old, repo)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {repo}: {exc.strerror or exc}", hint="choose a writable folder") from None
        raise
    shutil.rmtree(old, ignore_errors=True)


def _extras(manifest: Manifest, models, options: TritonOptions, storage_uri: str | None) -> dict[str, str]:
    threads = max((model_threads(m) for m in models), default=1) or 1
    threads *= options.instances
    gpu = any(m.kind == "KIND_GPU" for m in models)
    kserve = inference_service(options.name, storage_uri, gpu, threads, _tensorrt_version(models))
    return {ROUTING: json.dumps(routing(manifest, models), indent=2) + "\n", KSERVE: kserve}


def write_repository(
    engines_dir: str | Path,
    repo: str | Path,
    options: TritonOptions | None = None,
    storage_uri: str | None = None,
    force: bool = False,
    log: Log = lambda _m: None,
) -> TritonRepo:
    """Write the Triton model repository of the build in ``engines_dir`` at ``repo`` (see the module docstring)."""
    engines_dir, repo = Path(engines_dir), Path(os.path.abspath(repo))
    options = options or TritonOptions()
    if storage_uri is not None:
        check_storage_uri(storage_uri)
    with readers_lock(engines_dir):
        manifest_sha = sha256_file(engines_dir / MANIFEST_NAME) if (engines_dir / MANIFEST_NAME).is_file() else ""
        manifest = load_manifest(engines_dir)
        if sha256_file(engines_dir / MANIFEST_NAME) != manifest_sha:
            raise IntegrityError(f"{engines_dir / MANIFEST_NAME} changed while it was read (a build is writing it)",
                                 hint="run the command again when the build has finished")
        models = plan_models(manifest, options)
        configs = {m.name: config_text(m) for m in models}  # every config checked before anything is written
        _remove_leftovers(repo)
        replace = _check_target(repo, force)
        extras = _extras(manifest, models, options, storage_uri)
        tmp = repo.with_name(f".{repo.name}.rsz-export-{os.getpid()}.tmp")
        try:
            _make_temp(tmp, repo)
            written = _fill(tmp, engines_dir, manifest, models, configs, extras, log)
            marker = _marker(engines_dir, manifest, manifest_sha, models, written)
            atomic_write_bytes(tmp / MARKER, marker.encode())
            _publish(tmp, repo, replace)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    return TritonRepo(repo, models, _tensorrt_version(models), replace, storage_uri is None)
