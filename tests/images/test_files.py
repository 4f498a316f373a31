"""images.files: bundled photographs, safe loading (skips with reasons), folders of images."""

from __future__ import annotations

import pytest
from PIL import Image

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.images import files as images
from rsz_export.model.imagenet import labels


def test_bundled_photographs_are_small_jpegs_with_sources():
    paths = images.sample_images()
    assert 3 <= len(paths) <= 4
    sources = (images.SAMPLE_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for path in paths:
        assert path.stat().st_size < 60_000
        assert path.name in sources
        img = images.load_rgb(path)
        assert img.mode == "RGB" and max(img.size) <= 512


def test_labels_are_the_thousand_imagenet_classes():
    names = labels()
    assert len(names) == 1000 and names[0] == "tench" and len(set(names)) == 1000


def test_image_files_skips_bad_files_with_reasons(tmp_path):
    Image.new("RGB", (64, 48), (10, 20, 30)).save(tmp_path / "good.png")
    Image.new("L", (50, 50), 128).save(tmp_path / "grey.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "fake.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden.png").write_bytes(data)
    paths, skipped = images.image_files(tmp_path)
    assert [p.name for p in paths] == ["good.png", "grey.jpg"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert set(reasons) == {"empty.jpg", "notes.txt", "truncated.png", "fake.eps"}
    assert "0 bytes" in reasons["empty.jpg"]
    assert images.load_rgb(paths[1]).mode == "RGB"


def test_decompression_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 50_000)
    with pytest.raises(IntegrityError, match=r"300x200 pixels, more than the 50,000 allowed"):
        images.load_rgb(tmp_path / "big.png")


def test_missing_directory_and_file_are_reported():
    with pytest.raises(UsageError, match="is not a directory"):
        images.image_files("/nonexistent/dir")
    with pytest.raises(IntegrityError, match="does not exist"):
        images.load_rgb("/nonexistent/file.jpg")


def test_load_photos_from_a_folder_without_images_is_a_usage_error(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UsageError, match=r"holds no readable image \(1 file\(s\) skipped\)"):
        images.load_photos(tmp_path)
