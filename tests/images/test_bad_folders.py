"""Image folders with bad files: each unreadable file is skipped with its reason, never stopping the folder."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

from tests.helpers import SAMPLE_IMAGE, assert_clean_failure, run_cli


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb as far as a header says)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )

@pytest.fixture()
def bad_images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    sample = SAMPLE_IMAGE
    shutil.copy(sample, folder / "good.jpg")
    (folder / "corrupt.jpg").write_bytes(sample.read_bytes()[:2000])
    (folder / "zero.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(_png_claiming(60000, 60000))
    (folder / "notes.txt").write_text("not an image")
    (folder / "script.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    return folder

def test_image_folder_with_bad_files(fast_engines, bad_images):
    served = run_cli("predict", str(fast_engines), str(bad_images), "--preprocess", "fit")
    assert served.returncode == 0 and "Traceback" not in served.stderr, served.stderr
    assert "good.jpg" in served.stdout
    for name in ("corrupt.jpg", "zero.png", "bomb.png", "notes.txt", "script.eps"):
        assert f"skipped {bad_images / name}" in served.stderr, served.stderr
    assert_clean_failure(run_cli("predict", str(fast_engines), str(bad_images / "bomb.png")), 4, "bomb.png")
    assert_clean_failure(run_cli("predict", str(fast_engines), str(bad_images / "zero.png")), 4, "is empty (0 bytes)")
    scanned = run_cli("plan", "--images", str(bad_images))
    # a header scan cannot see a truncated body: corrupt.jpg counts as an image there
    assert scanned.returncode == 0 and "2 image(s)" in scanned.stdout and "skipped 4" in scanned.stdout, scanned.stdout
    (bad_images / "good.jpg").unlink()
    assert_clean_failure(run_cli("predict", str(fast_engines), str(bad_images)), 2, "none of the 5 file(s)")
    (bad_images / "corrupt.jpg").unlink()
    assert_clean_failure(run_cli("plan", "--images", str(bad_images)), 2, "has no readable image among its 4 file(s)")
