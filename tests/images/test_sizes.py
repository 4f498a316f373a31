"""images.sizes: sizes from headers only (never a decode), skipped files counted by reason, the distribution."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFile

from rsz_export.errors import UsageError
from rsz_export.images.sizes import read_size, render_scan, scan_sizes, size_stats


@pytest.fixture()
def mixed_folder(tmp_path):
    """Real images of several sizes and formats, one rotated by EXIF, and files that are not images."""
    sizes = {"a.jpg": (240, 320), "b.png": (500, 375), "c.webp": (64, 64), "sub/d.jpg": (768, 1024)}
    for name, (h, w) in sizes.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (w, h), (10, 200, 30)).save(tmp_path / name)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    Image.new("RGB", (400, 300)).save(tmp_path / "rotated.jpg", exif=exif)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 5)
    (tmp_path / ".hidden.jpg").write_bytes(b"junk")
    return tmp_path


def test_scan_reads_every_size_and_counts_what_it_skips(mixed_folder):
    scan = scan_sizes(mixed_folder)
    found = {name.split("/")[-1]: size for name, size in zip(scan.files, scan.sizes)}
    assert found == {
        "a.jpg": (240, 320),
        "b.png": (500, 375),
        "c.webp": (64, 64),
        "d.jpg": (768, 1024),
        "rotated.jpg": (400, 300),
    }
    assert scan.skipped_by_reason == {"empty file": 1, "not an image": 2}
    text = render_scan(scan, size_stats(scan.sizes))
    assert "5 image(s)" in text and "skipped 3" in text


def test_scan_never_decodes_pixels(mixed_folder, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)
    assert len(scan_sizes(mixed_folder).sizes) == 5


def test_header_of_a_truncated_file_still_gives_its_size(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.effect_noise((640, 480), 60).convert("RGB").save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert read_size(path) == (480, 640)


def test_empty_missing_and_imageless_folders_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="is empty"):
        scan_sizes(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        scan_sizes(tmp_path / "nowhere")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UsageError, match="no readable image among its 1 file"):
        scan_sizes(tmp_path)


def test_distribution_quantiles_and_aspect_buckets():
    sizes = [(300, 400)] * 8 + [(1000, 500), (224, 224)]
    stats = size_stats(sizes)
    assert stats.count == 10
    assert stats.shorter == {"min": 224, "p5": 224, "p50": 300, "p95": 500, "max": 500}
    assert stats.longer["max"] == 1000 and stats.longer["p50"] == 400
    assert dict(stats.aspect_buckets) == {"tall  < 0.6": 1, "square 0.9-1.11": 1, "landscape 1.11-1.67": 8}
    assert dict(stats.common_sizes)["300x400"] == 8
    with pytest.raises(UsageError):
        size_stats([])
