"""A manifest names only files inside its own build folder: paths that lead out are refused (exit 4) when it is read,
even when the file they lead to carries the recorded hash."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from rsz_export.artifacts.manifest import FileRecord, inside, load_manifest, save_manifest, verified_bytes
from rsz_export.errors import EXIT_INTEGRITY, IntegrityError
from rsz_export.serve.session import Session
from tests.helpers import SAMPLE_IMAGE, assert_clean_failure, run_cli


@pytest.fixture()
def build_copy(tiny_engines, tmp_path) -> Path:
    """A private copy of the tiny build, one folder below ``tmp_path`` (so ``../`` leads to a writable place)."""
    return Path(shutil.copytree(tiny_engines, tmp_path / "build"))


def _point_engine_at(folder: Path, name: str) -> None:
    """Rewrite the manifest so its first engine is recorded as ``name`` (with that file's true hash and size)."""
    manifest = load_manifest(folder)
    engine = manifest.engines[0]
    record = replace(engine.file, file=name)
    save_manifest(replace(manifest, engines=(replace(engine, file=record), *manifest.engines[1:])), folder)


def _move_engine_out(folder: Path) -> Path:
    """Move the first engine out of the build to ``folder/../outside.onnx``; returns the new place."""
    manifest = load_manifest(folder)
    outside = folder.parent / "outside.onnx"
    shutil.move(folder / manifest.engines[0].file.file, outside)
    return outside


def test_a_session_refuses_an_engine_recorded_as_dot_dot(build_copy):
    _move_engine_out(build_copy)
    _point_engine_at(build_copy, "../outside.onnx")  # the hash still matches the moved file
    with pytest.raises(IntegrityError, match=r"'\.\./outside\.onnx'.*not a relative path inside"):
        Session(build_copy)


def test_predict_refuses_an_absolute_engine_path_with_exit_4(build_copy):
    outside = _move_engine_out(build_copy)
    _point_engine_at(build_copy, str(outside))
    result = run_cli("predict", str(build_copy), str(SAMPLE_IMAGE))
    assert_clean_failure(result, EXIT_INTEGRITY, "not a relative path inside the build folder", str(outside))


def test_a_symlink_out_of_the_build_is_refused(build_copy):
    outside = _move_engine_out(build_copy)
    link = build_copy / "linked.onnx"
    link.symlink_to(outside)
    _point_engine_at(build_copy, "linked.onnx")
    with pytest.raises(IntegrityError, match="through a symlink"):
        Session(build_copy)
    result = run_cli("predict", str(build_copy), str(SAMPLE_IMAGE))
    assert_clean_failure(result, EXIT_INTEGRITY, "through a symlink")


def test_a_symlinked_folder_inside_the_build_is_also_checked(build_copy, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = _move_engine_out(build_copy)
    shutil.move(outside, elsewhere / "model.onnx")
    (build_copy / "sub").symlink_to(elsewhere, target_is_directory=True)
    _point_engine_at(build_copy, "sub/model.onnx")
    with pytest.raises(IntegrityError, match="through a symlink"):
        load_manifest(build_copy)


def test_a_symlink_that_stays_inside_the_build_is_served(build_copy):
    manifest = load_manifest(build_copy)
    (build_copy / "alias.onnx").symlink_to(manifest.engines[0].file.file)
    _point_engine_at(build_copy, "alias.onnx")
    with Session(build_copy) as session:
        assert session.predict(SAMPLE_IMAGE).top


@pytest.mark.parametrize("name", ["", ".", "/etc/passwd", "a/../../x", "..", "C:/x.onnx", "\\\\host\\share\\x",
                                  "a\\..\\..\\x"])
def test_paths_leading_out_are_refused_before_reading(tmp_path, name):
    with pytest.raises(IntegrityError, match="names the file"):
        verified_bytes(tmp_path, FileRecord(name, "0" * 64, 0))


@pytest.mark.parametrize("name", ["model.onnx", "engines/a.plan", "a/./b.onnx", "x..y.onnx"])
def test_ordinary_relative_paths_are_accepted(tmp_path, name):
    assert inside(tmp_path, FileRecord(name, "0" * 64, 0)) == tmp_path / name


def test_every_record_is_checked_when_the_manifest_is_read(build_copy):
    manifest = load_manifest(build_copy)
    save_manifest(replace(manifest, onnx=replace(manifest.onnx, file="../model.onnx")), build_copy)
    with pytest.raises(IntegrityError, match="'../model.onnx'"):
        load_manifest(build_copy)
