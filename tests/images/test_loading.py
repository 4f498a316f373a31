"""images.loading: bundled photographs, safe loading (skips with reasons), folders of images."""

from __future__ import annotations

import pytest
from PIL import Image

from rsz_export.errors import IntegrityError, UsageError
from rsz_export.images import loading as images
from rsz_export.images.imagenet import labels


def test_bundled_photographs_are_small_jpegs_with_sources_and_hashes():
    import hashlib

    paths = images.calibration_photos()
    assert len(images.sample_images()) == 4 and paths[:4] == images.sample_images() and len(paths) == 9
    sources = (images.SAMPLE_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for path in paths:
        assert path.stat().st_size < 60_000
        name = path.relative_to(images.SAMPLE_DIR).as_posix()
        assert f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {name}" in sources
        img = images.load_rgb(path)
        assert img.mode == "RGB" and max(img.size) <= 512
    assert "Minduka" not in " ".join(p.name for p in paths)  # the benchmark's held-out photograph


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


def png16(path, pixels) -> None:
    """Write a 16-bit PNG (greyscale for 2-D ``pixels``, RGB for 3-D) by hand: Pillow cannot write 48-bit RGB."""
    import struct
    import zlib

    import numpy as np

    pixels = np.asarray(pixels, dtype=">u2")
    h, w = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour_type = 2 if pixels.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) +
                     chunk(b"IEND", b""))


def test_every_pixel_format_becomes_8_bit_rgb_with_its_colours(tmp_path):
    import warnings

    import numpy as np

    Image.new("L", (40, 30), 77).save(tmp_path / "grey.png")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    png16(tmp_path / "grey16.png", np.full((30, 40), 32896))  # mid grey: 128 in 8 bits, not Pillow's clipped 255
    png16(tmp_path / "rgb16.png", np.stack([np.full((30, 40), v) for v in (65535, 32896, 0)], axis=-1))
    palette = Image.new("P", (40, 30), 0)
    palette.putpalette([0, 0, 0, 10, 200, 20] + [0] * 762)
    palette.paste(1, (0, 0, 20, 30))  # left half green, right half palette entry 0, which is transparent
    palette.save(tmp_path / "palette.png", transparency=bytes([0] + [255] * 255))
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.new("RGB", (1, 1), (5, 6, 7)).save(tmp_path / "dot.png")
    expected = {"grey.png": (77, 77, 77), "cmyk.jpg": (255, 0, 0), "grey16.png": (128, 128, 128),
                "rgb16.png": (255, 128, 0), "animated.gif": (200, 0, 0), "dot.png": (5, 6, 7)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's palette-transparency warning would land on the user's screen
        loaded = {name: images.load_rgb(tmp_path / name) for name in [*expected, "palette.png"]}
    for name, image in loaded.items():
        assert image.mode == "RGB", name
    for name, colour in expected.items():
        assert np.abs(np.asarray(loaded[name], dtype=int)[0, 0] - colour).max() <= 2, name
    flattened = np.asarray(loaded["palette.png"])
    assert tuple(flattened[5, 5]) == (10, 200, 20) and tuple(flattened[5, 30]) == (255, 255, 255)  # on white


RED, BLUE = (230, 20, 20), (20, 20, 230)


@pytest.mark.parametrize("orientation, top, size",
                         [(1, RED, (400, 300)), (6, RED, (300, 400)), (3, BLUE, (400, 300)), (8, BLUE, (300, 400))])
def test_decoding_applies_the_exif_orientation(tmp_path, orientation, top, size):
    """Stored 400x300 with a red left half and a blue right half; EXIF orientation 6 (shown turned 90 degrees
    clockwise) puts red on top of a 300x400 portrait, 8 (counter-clockwise) blue, 3 (upside down) blue on the left."""
    stored = Image.new("RGB", (400, 300), BLUE)
    stored.paste(RED, (0, 0, 200, 300))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    image = images.load_rgb(tmp_path / "photo.jpg")
    assert image.size == size
    first = image.getpixel((10, 10))  # the top-left corner as shown
    assert all(abs(a - b) < 12 for a, b in zip(first, top)), first
