"""images: bundled photographs, safe loading (skips with reasons), preprocessing to exact NCHW sizes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsz_export import images
from rsz_export.errors import IntegrityError, UsageError
from rsz_export.imagenet import MEAN, STD, labels
from rsz_export.shapes import Resolution


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


def test_to_input_has_exact_shape_and_imagenet_normalisation():
    img = Image.new("RGB", (40, 30), (255, 0, 128))
    x = images.to_input(img, Resolution(37, 53))
    assert x.shape == (1, 3, 37, 53) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    expected = [(255 / 255 - MEAN[0]) / STD[0], (0 - MEAN[1]) / STD[1], (128 / 255 - MEAN[2]) / STD[2]]
    np.testing.assert_allclose(x[0, :, 5, 7], expected, rtol=1e-6)


def test_to_input_resizes_bilinear_like_torchvision():
    torch = pytest.importorskip("torch")
    from torchvision.transforms.v2 import functional as F

    img = images.load_rgb(images.sample_images()[0])
    size = Resolution(225, 301)
    ours = images.to_input(img, size)
    tensor = F.to_image(img)
    resized = F.resize(tensor, [size.h, size.w], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    theirs = F.normalize(resized.to(torch.float32) / 255.0, MEAN, STD).numpy()[None]
    # Pillow rounds to uint8 after resizing; torchvision's tensor path rounds too: within one grey level.
    assert np.abs(ours - theirs).max() <= 1.01 / 255 / min(STD)


def test_random_input_is_seeded():
    a = images.random_input(Resolution(33, 35), seed=3, batch=2)
    assert a.shape == (2, 3, 33, 35) and a.dtype == np.float32
    np.testing.assert_array_equal(a, images.random_input(Resolution(33, 35), seed=3, batch=2))
    assert not np.array_equal(a, images.random_input(Resolution(33, 35), seed=4, batch=2))


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


def test_named_inputs_single_and_batched():
    photos, skipped = images.load_photos()
    assert [n for n, _ in photos] == [p.name for p in images.sample_images()] and skipped == []
    size = Resolution(33, 47)
    singles = images.named_inputs(photos[:2], [7], size)
    assert [n for n, _ in singles] == [photos[0][0], photos[1][0], "random7"]
    assert all(x.shape == (1, 3, 33, 47) for _, x in singles)
    [(name, stack)] = images.named_inputs(photos[:2], [7], size, batch=5)
    assert name == "mixed-batch5" and stack.shape == (5, 3, 33, 47)
    np.testing.assert_array_equal(stack[3], singles[0][1][0])  # cycles: photo0, photo1, random7, photo0, ...


def test_load_photos_from_a_folder_without_images_is_a_usage_error(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UsageError, match=r"holds no readable image \(1 file\(s\) skipped\)"):
        images.load_photos(tmp_path)
