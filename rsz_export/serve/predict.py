"""Classifying image files: which arguments name the engines folder and which the images, and each file's
prediction (a file found in a folder that is not a readable image is skipped with its reason)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rsz_export.artifacts.manifest import MANIFEST_NAME
from rsz_export.errors import IntegrityError, UsageError
from rsz_export.images.files import list_files, load_rgb

DEFAULT_DIR = "engines"


@dataclass(frozen=True)
class ImageArguments:
    """``[DIR] IMAGE...`` resolved: the engines folder, the image files, and those that came from a folder."""

    engines_dir: str
    images: tuple[Path, ...]
    from_folders: frozenset[Path]


def split_arguments(paths: Sequence[str]) -> ImageArguments:
    """``[DIR] IMAGE...``: the first path is the engines folder when it holds a manifest (else ./engines is);
    a folder among the images stands for every file under it."""
    paths = list(paths)
    engines_dir = paths.pop(0) if paths and (Path(paths[0]) / MANIFEST_NAME).is_file() else DEFAULT_DIR
    if not paths:
        raise UsageError("give at least one image: rsz-export predict [DIR] IMAGE...")
    images: list[Path] = []
    from_folders: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = list_files(path)
            images += found
            from_folders.update(found)
        else:
            images.append(path)
    return ImageArguments(engines_dir, tuple(images), frozenset(from_folders))


def predict_files(
    session, arguments: ImageArguments, top: int, warn: Callable[[str], None] = lambda message: None
) -> Iterator:
    """Each image's Prediction, in order. A file given by name must be a readable image (IntegrityError
    otherwise); one found in a folder that is not is skipped with a warning. UsageError when no file was."""
    done = 0
    for path in arguments.images:
        try:
            image = load_rgb(path)
        except IntegrityError as exc:
            if path not in arguments.from_folders:
                raise
            warn(f"skipped {path}: {exc.message}")
            continue
        done += 1
        yield session.predict(image, top, source=str(path))
    if not done:
        raise UsageError(
            f"none of the {len(arguments.images)} file(s) given is a readable image", hint="give JPEG/PNG files"
        )
