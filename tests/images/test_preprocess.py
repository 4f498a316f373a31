"""images.preprocess: resizing to exact NCHW sizes with ImageNet normalisation, seeded random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsz_export.errors import UsageError
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


def test_an_rgb_image_is_used_as_it_is():
    """No copy of an 8-bit RGB photograph's pixels (the common case); other modes are converted."""
    photo = Image.new("RGB", (64, 48), (1, 2, 3))
    assert preprocess.to_rgb(photo) is photo
    grey = preprocess.to_rgb(Image.new("L", (64, 48), 9))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (9, 9, 9)

def test_sixteen_bit_greys_round_to_the_nearest_8_bit_level():
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    rgb = np.asarray(preprocess.to_rgb(Image.fromarray(every)))  # Pillow's I;16
    assert rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], np.round(every / 257))
    wide = Image.fromarray(np.array([[-1000, 0, 65535, 65664, 70000]], dtype=np.int32))  # mode I, 32-bit signed
    assert wide.mode == "I"
    np.testing.assert_array_equal(np.asarray(preprocess.to_rgb(wide))[0, :, 0], [0, 0, 255, 255, 255])


def test_transparency_is_flattened_onto_white():
    """An alpha channel blends onto white; a grey or RGB PNG whose colour key marks a colour transparent shows
    that colour as white, as a browser on a white page does."""
    import io

    rgba = Image.new("RGBA", (4, 2), (10, 200, 20, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    flat = np.asarray(preprocess.to_rgb(rgba)).astype(int)
    assert tuple(flat[0, 0]) == (255, 255, 255) and tuple(flat[1, 3]) == (10, 200, 20)
    assert np.abs(flat[0, 1] - 127).max() <= 1  # half of white over black
    assert tuple(np.asarray(preprocess.to_rgb(Image.new("LA", (2, 2), (40, 0))))[0, 0]) == (255, 255, 255)
    for mode, key, other in (("RGB", (10, 20, 30), (90, 80, 70)), ("L", 7, 99)):
        image = Image.new(mode, (4, 2), key)
        image.putpixel((3, 1), other)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", transparency=key)
        decoded = Image.open(buffer)
        assert decoded.mode == mode and "transparency" in decoded.info
        flat = np.asarray(preprocess.to_rgb(decoded))
        assert tuple(flat[0, 0]) == (255, 255, 255), mode
        assert tuple(flat[1, 3]) == (other if mode == "RGB" else (other,) * 3), mode


@pytest.mark.parametrize("shape", [(4, 5, 4), (4, 5), (4, 5, 1)])
def test_normalise_refuses_pixels_that_are_not_rgb(shape):
    with pytest.raises(UsageError) as refused:
        preprocess.normalise(np.zeros(shape, dtype=np.uint8))
    assert str(refused.value) == f"expected H x W x 3 RGB pixels, got shape {shape}"


def test_random_input_is_seeded():
    a = preprocess.random_input(Resolution(33, 35), seed=3, batch=2)
    assert a.shape == (2, 3, 33, 35) and a.dtype == np.float32
    np.testing.assert_array_equal(a, preprocess.random_input(Resolution(33, 35), seed=3, batch=2))
    assert not np.array_equal(a, preprocess.random_input(Resolution(33, 35), seed=4, batch=2))
    assert preprocess.random_input(Resolution(33, 35), seed=3).shape == (1, 3, 33, 35)  # one image by default


def test_random_input_spans_the_pixel_range():
    """Undoing the normalisation gives pixels spread over 0..1 (0..255 in an image), no further."""
    x = preprocess.random_input(Resolution(64, 64), seed=0, batch=2)
    pixels = x * np.asarray(STD, dtype=np.float32)[:, None, None] + np.asarray(MEAN, dtype=np.float32)[:, None, None]
    assert -1e-6 <= pixels.min() < 0.01 and 0.99 < pixels.max() <= 1 + 1e-6


@pytest.mark.parametrize("shape", [(384, 512), (512, 384)], ids=["landscape", "portrait"])
def test_crop_input_matches_torchvision_eval_transform(shape):
    from torchvision import transforms

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
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


@pytest.mark.parametrize("ratio", [0.09, 1.01, 1.5, float("nan")])
def test_crop_ratio_outside_its_range_is_refused(ratio):
    image = Image.new("RGB", (64, 48))
    with pytest.raises(UsageError, match=r"^crop ratio must be a finite number in 0\.1\.\.1, got "):
        preprocess.crop_input(image, Resolution(32, 32), crop_ratio=ratio)


def test_crop_ratio_at_its_bounds_is_accepted():
    image = Image.new("RGB", (64, 48))
    for ratio in (0.1, 1.0):
        assert preprocess.crop_input(image, Resolution(32, 32), crop_ratio=ratio).shape == (1, 3, 32, 32)


def routes(monkeypatch, image, size, ratio):
    """crop_input as it chooses, then forced through the whole-image route, then through the centre region."""
    chosen = preprocess.crop_input(image, size, ratio)
    with monkeypatch.context() as patch:
        patch.setattr(preprocess, "MAX_CROP_INTERMEDIATE", 10**9)
        whole = preprocess.crop_input(image, size, ratio)
        patch.setattr(preprocess, "MAX_CROP_INTERMEDIATE", 0)
        centre = preprocess.crop_input(image, size, ratio)
    assert not np.array_equal(whole, centre)  # else the routes cannot be told apart
    return chosen, whole, centre


def test_crop_route_switches_above_the_intermediate_limit(monkeypatch):
    """A 2000x10 strip at 32x32 would be resized to 7314x37 (over 8 times the crop's pixels): only its centre is
    resized. An 82x16 image at 40x40 / 0.8 is resized to 256x50, exactly 8 times 40x40: resized whole."""
    rng = np.random.default_rng(11)
    strip = Image.fromarray(rng.integers(0, 256, (10, 2000, 3), dtype=np.uint8))
    chosen, _, centre = routes(monkeypatch, strip, Resolution(32, 32), 0.875)
    np.testing.assert_array_equal(chosen, centre)
    assert preprocess.MAX_CROP_INTERMEDIATE == 8
    at_limit = Image.fromarray(rng.integers(0, 256, (16, 82, 3), dtype=np.uint8))
    chosen, whole, _ = routes(monkeypatch, at_limit, Resolution(40, 40), 0.8)
    np.testing.assert_array_equal(chosen, whole)
