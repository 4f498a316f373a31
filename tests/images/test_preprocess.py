"""images.preprocess: resizing to exact NCHW sizes with ImageNet normalisation, seeded random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsz_export.images import preprocess
from rsz_export.images.imagenet import MEAN, STD
from rsz_export.images.loading import load_rgb, sample_images
from rsz_export.shapes import Resolution


def test_to_input_has_exact_shape_and_imagenet_normalisation():
    img = Image.new("RGB", (40, 30), (255, 0, 128))
    x = preprocess.to_input(img, Resolution(37, 53))
    assert x.shape == (1, 3, 37, 53) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    expected = [(255 / 255 - MEAN[0]) / STD[0], (0 - MEAN[1]) / STD[1], (128 / 255 - MEAN[2]) / STD[2]]
    np.testing.assert_allclose(x[0, :, 5, 7], expected, rtol=1e-6)


def test_to_input_resizes_bilinear_like_torchvision():
    torch = pytest.importorskip("torch")
    from torchvision.transforms.v2 import functional as F

    img = load_rgb(sample_images()[0])
    size = Resolution(225, 301)
    ours = preprocess.to_input(img, size)
    tensor = F.to_image(img)
    resized = F.resize(tensor, [size.h, size.w], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    theirs = F.normalize(resized.to(torch.float32) / 255.0, MEAN, STD).numpy()[None]
    # Pillow rounds to uint8 after resizing; torchvision's tensor path rounds too: within one grey level.
    assert np.abs(ours - theirs).max() <= 1.01 / 255 / min(STD)


def test_random_input_is_seeded():
    a = preprocess.random_input(Resolution(33, 35), seed=3, batch=2)
    assert a.shape == (2, 3, 33, 35) and a.dtype == np.float32
    np.testing.assert_array_equal(a, preprocess.random_input(Resolution(33, 35), seed=3, batch=2))
    assert not np.array_equal(a, preprocess.random_input(Resolution(33, 35), seed=4, batch=2))


def test_crop_input_matches_torchvision_eval_transform():
    from torchvision import transforms

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (384, 512, 3), dtype=np.uint8))
    reference = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )(image).numpy()[None]
    ours = preprocess.crop_input(image, Resolution(224, 224))
    assert ours.shape == (1, 3, 224, 224)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert preprocess.crop_input(image, Resolution(160, 288)).shape == (1, 3, 160, 288)


def test_crop_of_a_panorama_resizes_only_the_centre(monkeypatch):
    """A 20000x10 panorama cropped at 224 would be 448000x224 pixels if resized whole; the centre region is
    resized directly instead, within one grey level of the whole-image route."""
    rng = np.random.default_rng(5)
    strip = Image.fromarray(rng.integers(0, 256, (10, 20000, 3), dtype=np.uint8))
    assert preprocess.crop_input(strip, Resolution(224, 224)).shape == (1, 3, 224, 224)
    image = Image.fromarray(rng.integers(0, 256, (120, 700, 3), dtype=np.uint8))
    whole = preprocess.crop_input(image, Resolution(160, 160))
    monkeypatch.setattr(preprocess, "MAX_CROP_INTERMEDIATE", 0)  # force the centre-region route
    centre = preprocess.crop_input(image, Resolution(160, 160))
    assert np.abs(whole - centre).max() <= 1.01 / 255 / min(STD)
    assert np.abs(whole - centre).mean() < 0.2 / 255 / min(STD)
