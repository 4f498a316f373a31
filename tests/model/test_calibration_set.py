"""The calibration set: sizes over every profile with aspect ratios kept, seeded, and bad folders refused."""

from __future__ import annotations

import pytest
from PIL import Image

from rsz_export.errors import UsageError
from rsz_export.model.calibration_set import BUNDLED_WARNING, CalibSpec, resolve_calibration_set
from rsz_export.shapes import Resolution
from tests.helpers import make_plan

PLAN = make_plan(224, 800)


def _profile_of(size):
    return [i for i, p in enumerate(PLAN.profiles) if p.covers(1, size.h, size.w)]


def test_bundled_crops_cover_every_profile_and_are_seeded():
    first = resolve_calibration_set(CalibSpec(count=16), PLAN)
    assert len(first.items) == 16 and first.warning == BUNDLED_WARNING and first.source == "bundled"
    covered = {i for item in first.items for i in _profile_of(item.size)}
    assert covered == set(range(len(PLAN.profiles)))
    sides = sorted(max(item.size.h, item.size.w) for item in first.items)
    assert sides[0] < 340 and sides[-1] > 700  # spread from the bottom (224 on the shorter side) to the top
    assert all(item.crop is not None and len(item.sha256) == 64 for item in first.items)
    assert resolve_calibration_set(CalibSpec(count=16), PLAN) == first
    assert resolve_calibration_set(CalibSpec(count=16, seed=1), PLAN) != first
    feeds = list(first.feeds())
    assert [f.shape[2:] for f in feeds] == [(i.size.h, i.size.w) for i in first.items]


def test_folder_images_keep_their_aspect_ratio(tmp_path):
    for k, (w, h) in enumerate([(1200, 800), (600, 900), (1000, 1000), (2000, 500)]):
        Image.new("RGB", (w, h), (k * 40, 90, 200)).save(tmp_path / f"{k}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    chosen = resolve_calibration_set(CalibSpec(tmp_path, count=3), PLAN)
    assert len(chosen.items) == 3 and chosen.warning is None
    ratios = {"0.png": 1.5, "1.png": 600 / 900, "2.png": 1.0, "3.png": 4.0}
    every = resolve_calibration_set(CalibSpec(tmp_path), PLAN)  # default: every image but the held-out one
    (held,) = every.holdout.files
    assert len(every.items) == 3 and held[0] not in {i.file for i in every.items}
    for item in (*chosen.items, *every.items):
        assert _profile_of(item.size)
        if item.file == "3.png":  # 4:1 is wider than any profile holds (224..800: 800/224): a centre crop
            assert item.crop is not None and item.size.w / item.size.h == pytest.approx(800 / 224, rel=0.02)
        else:
            assert item.crop is None and item.size.w / item.size.h == pytest.approx(ratios[item.file], rel=0.02)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("empty", "is empty"),
        ("no-images", "holds no readable image"),
        ("too-few", "--calib-count 5 but"),
        ("too-small", "shorter than the range minimum 224"),
    ],
)
def test_bad_calibration_folders(case, message, tmp_path):
    folder = tmp_path / "calib"
    if case != "missing":
        folder.mkdir()
    if case == "no-images":
        (folder / "a.jpg").write_bytes(b"not a jpeg")
    if case in ("too-few", "too-small"):
        Image.new("RGB", (300, 300)).save(folder / "big.png")
        Image.new("RGB", (300, 100 if case == "too-small" else 300)).save(folder / "other.png")
    with pytest.raises(UsageError, match=message):
        resolve_calibration_set(CalibSpec(folder, count=5 if case == "too-few" else None), PLAN)


def test_bad_settings():
    with pytest.raises(UsageError, match="--calib-method"):
        CalibSpec(method="kl")
    with pytest.raises(UsageError, match="--calib-count"):
        CalibSpec(count=0)


def test_the_default_holds_out_two_whole_bundled_photographs():
    from rsz_export.images.loading import SAMPLE_DIR, calibration_photos

    chosen = resolve_calibration_set(CalibSpec(count=16), PLAN)
    held = {name for name, _ in chosen.holdout.files}
    assert len(held) == 2 and held.isdisjoint(i.file for i in chosen.items)
    every = {p.relative_to(SAMPLE_DIR).as_posix() for p in calibration_photos()}
    assert {i.file for i in chosen.items} == every - held  # the seven others are all cropped for calibration
    assert resolve_calibration_set(CalibSpec(count=16, seed=1), PLAN).holdout != chosen.holdout
    assert chosen.key_data()["holdout"] == [sha for _, sha in chosen.holdout.files]
    assert chosen.holdout.feeds_at(Resolution(224, 256)).shape == (2, 3, 224, 256)
