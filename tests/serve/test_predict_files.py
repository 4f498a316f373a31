"""serve.predict: batching images that share a route, per-image outcomes over folders, how a run ends; over the
colour stand-in (``colour_engines``), whose answer tells which pixels reached it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsz_export.artifacts.manifest import load_manifest, save_manifest
from rsz_export.errors import IntegrityError, UsageError
from rsz_export.plan.routing import Route
from rsz_export.serve.predict import Batcher, final_error, predict_files, split_arguments
from rsz_export.serve.preprocess_policy import ModelInput
from rsz_export.serve.session import Pending, Session
from rsz_export.shapes import BatchRange, Resolution

RED, GREEN, BLUE = (230, 20, 20), (20, 230, 20), (20, 20, 230)


def pending(name: str, size: int, profile: int = 0) -> Pending:
    chosen = Route(0, profile, Resolution(size, size), False)
    return Pending(name, ModelInput((size, size), chosen, "none", None), 0.0)


def test_batcher_groups_by_route_up_to_the_limit():
    batcher = Batcher(lambda chosen: 3)
    assert batcher.add(pending("a", 224)) == [] and batcher.add(pending("b", 300)) == []
    assert batcher.add(pending("c", 224)) == []
    (ready,) = batcher.add(pending("d", 224))
    assert [p.source for p in ready] == ["a", "c", "d"]
    batcher.add(pending("e", 224, profile=1))  # same size, another profile: another group
    assert [[p.source for p in group] for group in batcher.drain()] == [["b"], ["e"]]
    assert batcher.drain() == [] and batcher.pixels == 0


def test_batcher_sends_the_oldest_groups_early_when_too_much_waits():
    batcher = Batcher(lambda chosen: 8, max_pixels=2 * 224 * 224 + 256 * 256)
    for name, size in [("a", 224), ("b", 256), ("c", 224)]:
        assert batcher.add(pending(name, size)) == []
    ready = batcher.add(pending("d", 288))
    assert [[p.source for p in group] for group in ready] == [["a", "c"]]
    assert batcher.pixels == 256 * 256 + 288 * 288


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Six 300x400 images (one route), two 3000x4000 (shrunk), one thumbnail, a panorama and a truncated JPEG."""
    root = tmp_path_factory.mktemp("predict-files")
    for i, colour in enumerate([RED, GREEN, BLUE, RED, GREEN, BLUE]):
        Image.new("RGB", (400, 300), colour).save(root / f"same-{i}.png")
    for i, colour in enumerate([GREEN, BLUE]):
        Image.new("RGB", (4000, 3000), colour).save(root / f"big-{i}.jpg")
    Image.new("RGB", (64, 48), RED).save(root / "thumb.png")
    Image.new("RGB", (20000, 10), RED).save(root / "panorama.png")
    (root / "truncated.jpg").write_bytes((root / "big-0.jpg").read_bytes()[:4000])
    return root


def colour_of(path: str) -> int:
    """The class the colour stand-in must give: 0 for red, 1 green, 2 blue."""
    name = Path(path).name
    table = {"same-0": 0, "same-1": 1, "same-2": 2, "same-3": 0, "same-4": 1, "same-5": 2, "big-0": 1, "big-1": 2}
    return table.get(name.split(".")[0], 0)


def test_a_folder_is_batched_by_route_and_every_file_gets_an_outcome(colour_engines, folder):
    arguments = split_arguments([str(colour_engines), str(folder)])
    with Session(colour_engines, preprocess="fit") as session:
        outcomes = list(predict_files(session, arguments, top=3))
    done = {Path(o.source).name: o for o in outcomes}
    assert len(outcomes) == len(arguments.images) == 11
    skipped = {name for name, o in done.items() if hasattr(o, "reason")}
    assert skipped == {"panorama.png", "truncated.jpg"}
    assert "3.57:1" in done["panorama.png"].reason and "truncated" in done["truncated.jpg"].reason
    assert not done["panorama.png"].named and isinstance(done["truncated.jpg"].error, IntegrityError)
    same = [done[f"same-{i}.png"] for i in range(6)]
    assert sorted(p.batch for p in same) == [2, 2, 4, 4, 4, 4]  # max batch 4: one full batch, then the rest
    assert {(p.input, p.resize, p.profile) for p in same} == {(Resolution(300, 400), "none", 1)}
    assert (done["big-0.jpg"].input, done["big-0.jpg"].resize, done["big-0.jpg"].batch) == (Resolution(600, 800),
                                                                                           "shrink", 2)
    assert (done["thumb.png"].input, done["thumb.png"].resize) == (Resolution(224, 299), "upscale")
    for name, p in done.items():
        if name not in skipped:
            assert p.top[0].index == colour_of(name), name  # each batch row belongs to its own image
    assert final_error([o for o in outcomes if hasattr(o, "reason")], 9, 11) is None


def test_min_batch_above_one_repeats_the_last_image(colour_engines, tmp_path, folder):
    shutil.copytree(colour_engines, tmp_path / "engines")
    manifest = load_manifest(tmp_path / "engines")
    plan = manifest.plan
    batched = replace(plan, batch=BatchRange(2, 4, 4), profiles=tuple(
        replace(p, min=replace(p.min, batch=2)) for p in plan.profiles))
    save_manifest(replace(manifest, plan=batched), tmp_path / "engines")
    with Session(tmp_path / "engines", preprocess="fit") as session:
        alone = session.predict(folder / "same-1.png")
    assert (alone.batch, alone.top[0].index) == (1, 1)


def test_how_a_run_ends():
    from rsz_export.serve.predict import Skipped

    unreadable = Skipped("a.jpg", "truncated", True, IntegrityError("cannot read image a.jpg"))
    from_folder = Skipped("d/b.jpg", "too wide", False, UsageError("too wide"))
    assert final_error([unreadable], 0, 1) is unreadable.error
    several = final_error([from_folder, unreadable], 3, 5)
    assert isinstance(several, IntegrityError) and "1 of the 5 image(s) named" in several.message
    assert final_error([from_folder], 4, 5) is None
    nothing = final_error([from_folder], 0, 1)
    assert isinstance(nothing, UsageError) and "none of the 1 file(s)" in nothing.message


def test_session_refuses_a_crop_size_outside_the_range_at_once(colour_engines):
    from rsz_export.serve.preprocess_policy import Preprocess

    with pytest.raises(UsageError, match="crop size 900x900"):
        Session(colour_engines, preprocess=Preprocess("crop", Resolution(900, 900)))
    with Session(colour_engines, preprocess="crop") as session:
        assert session.preprocess.size == Resolution(256, 256)
        array = np.asarray(Image.new("RGB", (30, 20), BLUE))
        p = session.predict(Image.fromarray(array))
    assert (p.input, p.resize, p.preprocess, p.top[0].index) == (Resolution(256, 256), "crop", "crop", 2)
