"""The records a manifest is made of: files, engines, weights, class names, int8 calibration. Pure data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rsz_export.interface import NUM_CLASSES


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
