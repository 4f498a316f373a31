"""The shared export cache: entries named by key and content, taken only while intact, linked into build folders
(which stay whole without the cache), written safely by concurrent builds; and a build that takes its export
from it instead of exporting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rsz_export.artifacts import export_cache
from rsz_export.artifacts.files import sha256_file

KEY = "ab" * 32


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(export_cache.CACHE_ENV, str(folder))
    return folder


def test_an_export_stored_is_linked_into_another_folder_which_keeps_it_without_the_cache(cache, tmp_path):
    source = tmp_path / "a" / "model.onnx"
    source.parent.mkdir()
    source.write_bytes(b"an exported model" * 1000)
    entry = export_cache.store(source, KEY)
    assert entry == cache / f"{KEY}.{sha256_file(source)}.onnx" and export_cache.store(source, KEY) == entry
    target = tmp_path / "b" / "model.onnx"
    target.parent.mkdir()
    assert export_cache.fetch(KEY, target) == entry
    assert os.stat(target).st_ino == os.stat(entry).st_ino  # a hard link: no second copy on disk
    assert export_cache.fetch("cd" * 32, tmp_path / "b" / "other.onnx") is None
    for path in cache.iterdir():
        path.unlink()
    assert target.read_bytes() == source.read_bytes()


def test_a_damaged_entry_is_never_used_and_is_removed(cache, tmp_path):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"an exported model")
    entry = export_cache.store(source, KEY)
    with open(entry, "r+b") as handle:  # damaged in place, as a write through a build folder's hard link would
        handle.write(b"X")
    target = tmp_path / "b.onnx"
    assert export_cache.fetch(KEY, target) is None and not target.exists() and not entry.exists()


def test_off_means_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(export_cache.CACHE_ENV, export_cache.OFF)
    source = tmp_path / "model.onnx"
    source.write_bytes(b"x")
    assert export_cache.store(source, KEY) is None and export_cache.fetch(KEY, tmp_path / "b.onnx") is None
    monkeypatch.delenv(export_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert export_cache.cache_dir() == tmp_path / "xdg" / "rsz-export" / "exports"


WRITER = """
import sys
from pathlib import Path
from rsz_export.artifacts import export_cache
from rsz_export.artifacts.files import sha256_file
source, key, target = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
for i in range(8):
    export_cache.store(source, key)
    entry = export_cache.fetch(key, target)
    assert entry is not None and sha256_file(target) == entry.name.split(".")[1], i
    assert len(set(target.read_bytes())) == 1 and target.stat().st_size == 1_000_000, i  # one whole export
"""


def test_concurrent_builds_store_and_take_complete_files(cache, tmp_path):
    """Four processes storing and fetching the same export at once (two with other bytes for the key, as two
    exports of the same weights may differ): every fetch is a complete, intact file."""
    sources = []
    for name, content in (("x", b"x" * 1_000_000), ("y", b"y" * 1_000_000)):
        sources.append(tmp_path / f"{name}.onnx")
        sources[-1].write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(sources[i % 2]), KEY,
                                   str(tmp_path / f"target{i}.onnx")], env=env, stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{KEY}.{sha256_file(s)}.onnx" for s in sources)


def test_a_build_takes_a_cached_export_instead_of_exporting(engines_dir, onnx_path, cache, tmp_path):
    """The session's export, cached, serves a build of the same weights into a new folder: no export, the
    file is linked, and the folder validates without the cache."""
    from rsz_export.artifacts.manifest import files_intact, load_manifest
    from rsz_export.pipeline.run import BuildSpec, build
    from tests.helpers import make_plan

    session = load_manifest(engines_dir)
    entry = export_cache.store(onnx_path, session.keys["export"])
    logged: list[str] = []
    out = tmp_path / "engines"
    manifest = build(BuildSpec(make_plan(224, 256), out, backend="onnxruntime"), logged.append).manifest
    assert any(f"reusing the export cached in {cache}" in line for line in logged), logged
    assert not any("exporting ResNet-50" in line for line in logged)
    assert manifest.onnx.sha256 == session.onnx.sha256 and manifest.weights.id == session.weights.id
    assert manifest.weights.warning == session.weights.warning
    assert os.stat(out / manifest.onnx.file).st_ino == os.stat(entry).st_ino
    entry.unlink()
    assert files_intact(out, [manifest.onnx, *manifest.engine_files()])
