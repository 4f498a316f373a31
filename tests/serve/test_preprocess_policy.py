"""serve.preprocess_policy: native, fit and crop turn decoded images into routed inputs, one implementation for every
command; checked against the plan's profiles and against the pixel functions they call."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsz_export.errors import UsageError
from rsz_export.images.preprocess import crop_input, to_input
from rsz_export.plan.routing import plan_candidates
from rsz_export.serve.preprocess_policy import Preprocess, parse_modes
from rsz_export.shapes import BatchRange, Resolution
from tests.helpers import make_plan

PLAN = make_plan(224, 800)  # profiles up to 320, 416, 576, 800; opt points 256 .. 672
ALL = plan_candidates(PLAN)


def noise(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_native_runs_covered_images_as_they_are_and_refuses_the_rest():
    image = noise(250, 300)
    ready = Preprocess("native").prepare(image, ALL)
    assert (ready.original, ready.route.size, ready.route.profile, ready.resize) == ((250, 300), Resolution(250, 300),
                                                                                     0, "none")
    np.testing.assert_array_equal(ready.array, to_input(image, Resolution(250, 300)))
    for h, w in [(3000, 4000), (100, 150), (1, 1)]:
        with pytest.raises(UsageError, match=r"outside every profile.*224\.\.800"):
            Preprocess("native").route(h, w, ALL)


@pytest.mark.parametrize(
    ("original", "size", "profile", "resize"),
    [
        ((3000, 4000), (600, 800), 3, "shrink"),  # a camera photo: the largest profile, aspect kept
        ((4000, 3000), (800, 600), 3, "shrink"),
        ((64, 64), (224, 224), 0, "upscale"),  # a thumbnail: up to the range minimum
        ((100, 150), (224, 336), 1, "upscale"),
        ((1, 1), (224, 224), 0, "upscale"),
        ((500, 300), (500, 300), 2, "none"),  # covered: its own size
    ],
)
def test_fit_keeps_the_aspect_ratio_into_the_cheapest_profile_that_holds_it(original, size, profile, resize):
    chosen = Preprocess("fit").route(*original, ALL)
    assert (chosen.size, chosen.profile) == (Resolution(*size), profile)
    ready = Preprocess("fit").prepare(Image.new("RGB", original[::-1], (9, 99, 199)), ALL)
    assert ready.resize == resize and ready.array.shape == (1, 3, *size)


def test_fit_refuses_an_aspect_ratio_no_profile_holds_and_says_what_would_work():
    with pytest.raises(UsageError, match=r"10x20000 image .* 2000\.0:1 and the profiles hold at most 3\.57:1") as exc:
        Preprocess("fit").route(10, 20000, ALL)
    assert "--preprocess crop" in exc.value.hint


def test_fit_with_a_size_aims_the_shorter_side_there():
    fit = Preprocess("fit", Resolution(300, 300))
    assert fit.route(600, 450, ALL).size == Resolution(400, 300)
    assert fit.route(150, 200, ALL).size == Resolution(300, 400)
    assert fit.route(300, 900, ALL).size == Resolution(267, 800)  # 300x900 does not fit: the nearest scale that does


def test_crop_is_the_evaluation_transform_at_the_plans_first_opt_point_by_default():
    image = noise(333, 500, seed=1)
    crop = Preprocess("crop").for_plan(PLAN)
    assert crop.size == Resolution(256, 256) and crop.describe() == "crop 256x256"
    ready = crop.prepare(image, ALL)
    assert (ready.route.size, ready.route.profile, ready.route.resized, ready.resize) == (Resolution(256, 256), 0,
                                                                                          True, "crop")
    np.testing.assert_array_equal(ready.array, crop_input(image, Resolution(256, 256)))
    wide = Preprocess("crop", Resolution(300, 400), crop_ratio=0.5).prepare(image, ALL)
    np.testing.assert_array_equal(wide.array, crop_input(image, Resolution(300, 400), 0.5))
    panorama = Preprocess("crop", Resolution(224, 224)).prepare(Image.new("RGB", (20000, 10), (200, 10, 10)), ALL)
    assert panorama.array.shape == (1, 3, 224, 224) and panorama.route.profile == 0
    with pytest.raises(UsageError, match=r"crop size 900x900 is outside every profile"):
        Preprocess("crop", Resolution(900, 900)).route(100, 100, ALL)
    with pytest.raises(UsageError, match="needs a size"):
        Preprocess("crop").route(100, 100, ALL)


def test_snap_rounds_native_and_fit_sizes_to_the_stride():
    assert Preprocess("native", stride="snap").route(250, 270, ALL).size == Resolution(256, 256)
    assert Preprocess("fit", stride="snap").route(1700, 1000, ALL).size == Resolution(800, 480)


def test_batch_ranges_are_respected():
    batched = plan_candidates(make_plan(224, 800, batch=BatchRange(2, 4, 8)))
    assert Preprocess("fit").route(3000, 4000, batched, batch=2).size == Resolution(600, 800)
    with pytest.raises(UsageError, match="batch 1"):
        Preprocess("native").route(300, 300, batched, batch=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "letterbox"}, "unknown preprocess policy 'letterbox'; choose one of native, fit, crop"),
        ({"mode": "fit", "stride": "floor"}, "unknown stride policy 'floor'"),
        ({"mode": "native", "size": Resolution(300, 300)}, "own size"),
        ({"mode": "fit", "size": Resolution(300, 400)}, "one side"),
        ({"mode": "crop", "stride": "snap"}, "crop runs at its size exactly"),
        ({"mode": "crop", "crop_ratio": 1.5}, "crop ratio"),
    ],
)
def test_inconsistent_policies_are_refused_when_made(kwargs, message):
    with pytest.raises(UsageError, match=message):
        Preprocess(**kwargs)


def test_policy_lists_parse_in_order():
    assert parse_modes("crop,fit") == ("crop", "fit")
    assert parse_modes(" fit , crop,fit ") == ("fit", "crop")
    for bad in ("", "crop,square", ","):
        with pytest.raises(UsageError, match="native, fit, crop"):
            parse_modes(bad)
