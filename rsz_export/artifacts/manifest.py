"""What was built, from what, with what, on what: the manifest, its hashes, atomic save and strict load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from rsz_export.artifacts.files import atomic_write_text, sha256_file
from rsz_export.artifacts.records import (  # noqa: F401  (the records are part of the manifest's interface)
    CalibrationRecord,
    EngineRecord,
    FileRecord,
    LabelsRecord,
    WeightsRecord,
)
from rsz_export.errors import IntegrityError, read_regular_file, read_small_file
from rsz_export.interface import DEFAULT_OUTPUTS, NUM_CLASSES, OUTPUT_KINDS, output_names
from rsz_export.plan.profiles import Plan

SCHEMA_VERSION = 3
"""2 added the class count, the class names (``labels``) and the weights' content hash and head size. A
version-1 manifest is read as what every build of that version was: 1000 ImageNet classes, no names given.
3 added the int8 calibration (``calibration``); earlier versions have none."""
FEATURES_SCHEMA_VERSION = 4
"""A build whose model gives feature maps (``outputs`` other than logits) writes version 4, which records them:
a reader that does not know feature builds refuses it rather than taking its first map for logits. Logits builds
keep writing version 3."""
READABLE_VERSIONS = (1, 2, SCHEMA_VERSION, FEATURES_SCHEMA_VERSION)
MANIFEST_NAME = "manifest.json"
ENGINES_DIR = "engines"
"""The build folder a command uses when none is given (``make engines`` builds it)."""


@dataclass(frozen=True)
class Manifest:
    """Everything a later stage needs to trust and reproduce a build."""

    tool_version: str
    command: str
    created_utc: str
    host: dict
    versions: dict
    onnx: FileRecord
    weights: WeightsRecord
    backend: str
    precision: str
    plan: Plan
    engines: tuple[EngineRecord, ...]
    cache_key: str
    warnings: tuple[str, ...] = ()
    keys: dict = field(default_factory=dict)
    """Cache keys of the stages (``export``, ``engines``, ``manifest``): a rerun reuses a stage whose key is
    unchanged, and the whole build when every key is."""
    num_classes: int = NUM_CLASSES
    """The model's output width: ``logits`` is [batch, num_classes]."""
    labels: LabelsRecord | None = None
    """The class names given with ``--labels``; None: ImageNet's for 1000 classes, else ``class <index>``."""
    calibration: CalibrationRecord | None = None
    """int8 builds: the calibrated ranges and the images behind them."""
    outputs: str = DEFAULT_OUTPUTS
    """What the model gives (``interface.OUTPUT_KINDS``): logits, or a backbone's feature maps (then
    ``num_classes`` is 0)."""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.outputs != DEFAULT_OUTPUTS and self.schema_version < FEATURES_SCHEMA_VERSION:
            object.__setattr__(self, "schema_version", FEATURES_SCHEMA_VERSION)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The model's output tensors, in order."""
        return output_names(self.outputs)

    @property
    def has_classes(self) -> bool:
        """Whether the model gives class logits (predict, sweep and labels need them)."""
        return self.outputs == DEFAULT_OUTPUTS

    @property
    def random_weights_warning(self) -> str | None:
        """The build's warning when it fell back to seeded random weights for want of pretrained ones (what the
        outputs are not, and how to get real weights); None for weights that were asked for."""
        return self.weights.warning if self.weights.id == "random" else None

    def engine_files(self) -> list[FileRecord]:
        """Every file the engines consist of (engine files and their extra files)."""
        return [f for e in self.engines for f in (e.file, *e.extra_files)]

    def file_records(self) -> list[FileRecord]:
        """Every file the manifest names in its build folder: the ONNX, the engines, the labels, the ranges."""
        extra = [r.file for r in (self.labels, self.calibration) if r is not None]
        return [self.onnx, *self.engine_files(), *extra]

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "tool_version": self.tool_version,
            "command": self.command,
            "created_utc": self.created_utc,
            "host": self.host,
            "versions": self.versions,
            "onnx": asdict(self.onnx),
            "weights": asdict(self.weights),
            "backend": self.backend,
            "precision": self.precision,
            "plan": self.plan.to_dict(),
            "engines": [e.to_dict() for e in self.engines],
            "cache_key": self.cache_key,
            "warnings": list(self.warnings),
            "keys": dict(self.keys),
            "num_classes": self.num_classes,
            "labels": None if self.labels is None else self.labels.to_dict(),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        } | ({} if self.has_classes else {"outputs": self.outputs, "output_names": list(self.output_names)})

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise IntegrityError(
                f"manifest schema version {version!r} is not one this rsz-export reads "
                f"({', '.join(map(str, READABLE_VERSIONS))})",
                hint="rebuild the engines with this version: rsz-export build --force",
            )
        labels = data.get("labels") if version >= 2 else None
        outputs = str(data["outputs"]) if version >= FEATURES_SCHEMA_VERSION else DEFAULT_OUTPUTS
        if outputs not in OUTPUT_KINDS:
            raise ValueError(f"outputs {outputs!r} is none of {', '.join(OUTPUT_KINDS)}")
        calibration = data.get("calibration") if version >= 3 else None
        return cls(
            tool_version=str(data["tool_version"]),
            command=str(data["command"]),
            created_utc=str(data["created_utc"]),
            host=dict(data["host"]),
            versions=dict(data["versions"]),
            onnx=FileRecord(**data["onnx"]),
            weights=WeightsRecord(**data["weights"]),
            backend=str(data["backend"]),
            precision=str(data["precision"]),
            plan=Plan.from_dict(data["plan"]),
            engines=tuple(EngineRecord.from_dict(e) for e in data["engines"]),
            cache_key=str(data["cache_key"]),
            warnings=tuple(data.get("warnings", ())),
            keys=dict(data.get("keys", {})),
            num_classes=int(data["num_classes"]) if version >= 2 else NUM_CLASSES,
            labels=None if labels is None else LabelsRecord.from_dict(labels),
            calibration=None if calibration is None else CalibrationRecord.from_dict(calibration),
            outputs=outputs,
        )


def save_manifest(manifest: Manifest, out_dir: str | Path) -> Path:
    """Write ``out_dir/manifest.json`` atomically and return its path."""
    path = Path(out_dir) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n")
    return path


def load_manifest(out_dir: str | Path) -> Manifest:
    """Read and check ``out_dir/manifest.json``; IntegrityError (exit 4) for missing, corrupt or foreign files."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        data = json.loads(read_small_file(path, f"manifest {path}", IntegrityError).decode("utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"no manifest at {path}", hint=_missing_build_hint(Path(out_dir))) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"manifest {path} is unreadable or corrupt: {exc}", hint="rebuild with --force") from None
    if not isinstance(data, dict):
        raise IntegrityError(f"manifest {path} is not a JSON object", hint="rebuild with --force")
    try:
        manifest = Manifest.from_dict(data)
    except IntegrityError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"manifest {path} is malformed ({exc!r})", hint="rebuild with --force") from None
    for record in manifest.file_records():
        inside(out_dir, record)
    return manifest


def _missing_build_hint(out_dir: Path) -> str:
    """For a folder with no manifest: the existing builds beside it whose names are close, else how to build."""
    from rsz_export.errors import did_you_mean

    parent = out_dir.parent
    try:
        builds = [p.name for p in parent.iterdir() if p.name != out_dir.name and (p / MANIFEST_NAME).is_file()]
    except OSError:
        builds = []
    shown = (lambda name: f"{name}/") if parent == Path(".") else (lambda name: f"{parent / name}/")
    return did_you_mean(out_dir.name, builds, shown) or f"build engines first: rsz-export build {out_dir} " \
        "--min MIN --max MAX"


def load_previous_manifest(out_dir: str | Path) -> Manifest | None:
    """The folder's manifest when there is a readable one, else None (a writer then starts afresh)."""
    if not (Path(out_dir) / MANIFEST_NAME).exists():
        return None
    try:
        return load_manifest(out_dir)
    except IntegrityError:
        return None


def files_intact(out_dir: str | Path, records) -> bool:
    """Whether every recorded file is present with its recorded sha256."""
    try:
        for record in records:
            verify_file(out_dir, record)
    except IntegrityError:
        return False
    return True


def file_record(out_dir: str | Path, path: str | Path) -> FileRecord:
    """A FileRecord for ``path`` (inside ``out_dir``), hashing it now."""
    path = Path(path)
    return FileRecord(file=str(path.relative_to(out_dir)), sha256=sha256_file(path), bytes=path.stat().st_size)


def inside(out_dir: str | Path, record: FileRecord) -> Path:
    """``out_dir / record.file``, refused (IntegrityError, exit 4) unless it stays inside ``out_dir``: a relative
    path without ``..`` that no symlink leads out of. A manifest names only files of its own build, so a record
    pointing elsewhere, even with the right hash, is a tampered or foreign manifest."""
    name, root = record.file, Path(out_dir)
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if not name or posix.is_absolute() or windows.drive or windows.root or ".." in windows.parts:
        raise _outside(root, name, "is not a relative path inside the build folder")
    path = root / name
    real_root = root.resolve()
    if not path.resolve().is_relative_to(real_root) or path.resolve() == real_root:
        raise _outside(root, name, "leads out of the build folder through a symlink")
    return path


def _outside(root: Path, name: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"the manifest in {root} names the file {name!r}, which {why}: a build's manifest names only files of "
        "that build, so this manifest was edited or copied from elsewhere; nothing it names was loaded",
        hint=f"rebuild the folder: rsz-export build {root} --force",
    )


def _mismatch(path: Path, actual: str, record: FileRecord) -> IntegrityError:
    return IntegrityError(
        f"{path} does not match the manifest (sha256 {actual[:12]}... recorded {record.sha256[:12]}...): "
        "it was modified, truncated or replaced after the build",
        hint="rebuild it: rsz-export build --force",
    )


def verified_bytes(out_dir: str | Path, record: FileRecord) -> bytes:
    """The file's bytes, read once and checked against the record's sha256: what is checked is what is loaded
    (no window in which the file could be swapped between the check and the load)."""
    import hashlib

    path = inside(out_dir, record)
    try:  # a regular file only, and no more than one byte past its recorded size (a longer file fails the hash)
        data = read_regular_file(path, str(path), IntegrityError, record.bytes)
    except FileNotFoundError:
        raise IntegrityError(f"file {path} is missing", hint="rebuild it: rsz-export build --force") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {exc.strerror or exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != record.sha256:
        raise _mismatch(path, actual, record)
    return data


def verify_file(out_dir: str | Path, record: FileRecord) -> Path:
    """Return the file's path after checking its sha256 against the record; IntegrityError on any mismatch.

    Call this before deserializing anything: a tampered or truncated engine is never loaded.
    """
    path = inside(out_dir, record)
    actual = sha256_file(path)
    if actual != record.sha256:
        raise _mismatch(path, actual, record)
    return path
