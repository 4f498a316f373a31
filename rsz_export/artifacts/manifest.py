"""What was built, from what, with what, on what: the manifest, its hashes, atomic save and strict load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from rsz_export.artifacts.files import atomic_write_text, sha256_file
from rsz_export.errors import IntegrityError, read_regular_file, read_small_file
from rsz_export.interface import NUM_CLASSES
from rsz_export.plan.profiles import Plan

SCHEMA_VERSION = 3
"""2 added the class count, the class names (``labels``) and the weights' content hash and head size. A
version-1 manifest is read as what every build of that version was: 1000 ImageNet classes, no names given.
3 added the int8 calibration (``calibration``); earlier versions have none."""
READABLE_VERSIONS = (1, 2, SCHEMA_VERSION)
MANIFEST_NAME = "manifest.json"
ENGINES_DIR = "engines"  # the build folder a command uses when none is given (``make engines`` builds it)


@dataclass(frozen=True)
class FileRecord:
    """A file in the output directory (path relative to it) with its sha256 and size."""

    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class EngineRecord:
    """One engine: its file, which planned profiles it carries, and how it was built.

    ``profiles`` are indices into ``Manifest.plan.profiles``; engine-local profile k serves plan
    profile ``profiles[k]``. ``settings`` holds the backend's own build and session settings.
    """

    name: str
    backend: str
    precision: str
    file: FileRecord
    profiles: tuple[int, ...]
    build_seconds: float
    settings: dict = field(default_factory=dict)
    extra_files: tuple[FileRecord, ...] = ()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["profiles"] = list(self.profiles)
        data["extra_files"] = [asdict(f) for f in self.extra_files]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EngineRecord:
        return cls(
            name=str(data["name"]),
            backend=str(data["backend"]),
            precision=str(data["precision"]),
            file=FileRecord(**data["file"]),
            profiles=tuple(int(i) for i in data["profiles"]),
            build_seconds=float(data["build_seconds"]),
            settings=dict(data.get("settings", {})),
            extra_files=tuple(FileRecord(**f) for f in data.get("extra_files", [])),
        )


@dataclass(frozen=True)
class WeightsRecord:
    """Which weights the model was built from. ``id`` is imagenet1k-v1/-v2, ``random`` or ``file``.

    ``sha256`` is checked before the weights are deserialised: the file's bytes, or for ``random`` the generated
    tensors'. ``content_sha256`` hashes the tensors themselves (names, dtypes, shapes, bytes) after unwrapping a
    checkpoint, the same for every way of saving the same weights. ``num_classes``: the head's size.
    """

    id: str
    sha256: str
    source: str
    seed: int | None = None
    warning: str | None = None
    content_sha256: str | None = None
    num_classes: int = NUM_CLASSES


@dataclass(frozen=True)
class LabelsRecord:
    """The class names given at build time: their copy in the build folder (hash-checked when read, one name
    per line, index = logit position) and the file they came from."""

    file: FileRecord
    source: str
    source_sha256: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LabelsRecord:
        return cls(FileRecord(**data["file"]), str(data["source"]), str(data["source_sha256"]))


@dataclass(frozen=True)
class CalibrationRecord:
    """An int8 build's calibration: the ranges file (hash-checked when read, reused by a rebuild with the same
    inputs), the method, where the images came from, each image with its sha256, size and crop, and ``report``:
    the coverage on held-out images and the layers kept in float (``pipeline.int8_placement``)."""

    file: FileRecord
    method: str
    source: str
    images: tuple[dict, ...]
    seconds: float
    warning: str | None = None
    report: dict | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "images": [dict(i) for i in self.images]}

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationRecord:
        return cls(FileRecord(**data["file"]), str(data["method"]), str(data["source"]),
                   tuple(dict(i) for i in data["images"]), float(data["seconds"]), data.get("warning"),
                   data.get("report"))


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
    schema_version: int = SCHEMA_VERSION

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
        }

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
    Call this before deserializing anything: a tampered or truncated engine is never loaded."""
    path = inside(out_dir, record)
    actual = sha256_file(path)
    if actual != record.sha256:
        raise _mismatch(path, actual, record)
    return path
