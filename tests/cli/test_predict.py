"""The predict, sweep and plan --images commands, run as a user runs them (subprocess), with their exit codes.
predict and sweep run on the colour stand-in (``colour_engines``: 224..800, batches 1..4), whose answer says
which pixels reached it: a red image is class 0 (tench), green 1 (goldfish), blue 2 (great white shark)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rsz_export.plan.profile_file import load_profile_file
from rsz_export.plan.profiles import uncovered_example
from tests.helpers import assert_clean_failure, run_cli


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-images")
    rng = np.random.default_rng(11)
    for h, w in [(224, 224), (250, 280), (288, 240), (600, 500), (1024, 768)]:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{h}x{w}.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def heads(stdout: str) -> list[str]:
    return [line for line in stdout.strip().split("\n") if not line.startswith("  ")]


def test_predict_fits_any_photo_by_default_and_says_what_it_did(colour_engines, images):
    result = run_cli("predict", str(colour_engines), *(str(images / f) for f in ("250x280.jpg", "1024x768.jpg")),
                     "--top-k", "3")
    assert result.returncode == 0, result.stderr
    first, second = heads(result.stdout)
    assert "250x280.jpg: 250x280 at its own size (fit), engine ort (onnxruntime) profile 0" in first
    assert "1024x768.jpg: 1024x768 shrunk to 800x600 (fit), engine ort (onnxruntime) profile 3" in second
    assert " ms (total " in second and len(result.stdout.strip().split("\n")) == 2 + 2 * 3


def test_predict_json_of_a_shrunk_image(colour_engines, images):
    big = str(images / "1024x768.jpg")
    result = run_cli("predict", str(colour_engines), big, "--preprocess", "fit", "--json", "-")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    (prediction,) = document["predictions"]
    assert (document["preprocess"], document["complete"], document["skipped"]) == ("fit", True, 0)
    assert (prediction["original"], prediction["input"], prediction["resize"]) == ("1024x768", "800x600", "shrink")
    assert len(prediction["top"]) == 5 and prediction["top"][0]["score"] >= prediction["top"][1]["score"]


def test_predict_native_refuses_what_no_profile_covers(colour_engines, images):
    result = run_cli("predict", str(colour_engines), str(images / "1024x768.jpg"), "--preprocess", "native")
    assert_clean_failure(result, 2, "outside every profile", "224..800")


def test_predict_crop_runs_the_evaluation_crop_at_the_chosen_size(colour_engines, images):
    default = run_cli("predict", str(colour_engines), str(images / "600x500.jpg"), "--preprocess", "crop")
    assert default.returncode == 0 and "600x500 cropped to 256x256 (crop)" in default.stdout, default.stderr
    sized = run_cli("predict", str(colour_engines), str(images / "600x500.jpg"), "--preprocess", "crop", "--size",
                    "300x400", "--json", "-")
    assert json.loads(sized.stdout)["predictions"][0]["input"] == "300x400"
    assert_clean_failure(run_cli("predict", str(colour_engines), str(images / "224x224.jpg"), "--preprocess", "crop",
                                 "--size", "900"), 2, "crop size 900x900 is outside every profile")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--oversize", "shrink"), "No such option '--oversize'"),
        (("--preprocess", "native", "--size", "300"), "own size"),
        (("--preprocess", "crop", "--stride", "snap"), "crop runs at its size exactly"),
        (("--size", "big"), "--size: cannot read size 'big'"),
    ],
)
def test_predict_inconsistent_options_are_usage_errors(colour_engines, images, args, message):
    assert_clean_failure(run_cli("predict", str(colour_engines), str(images / "224x224.jpg"), *args), 2, message)


def test_predict_without_engines_is_an_integrity_error(tmp_path, images):
    result = run_cli("predict", str(images / "224x224.jpg"), cwd=tmp_path)
    assert result.returncode == 4 and "no manifest" in result.stderr


def test_sweep_prints_accuracy_and_latency_per_size(colour_engines, tmp_path):
    rng = np.random.default_rng(2)
    for name in ("goldfish", "tench"):
        (tmp_path / name).mkdir()
        Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(tmp_path / name / "a.png")
    result = run_cli("sweep", str(colour_engines), "--images", str(tmp_path), "--sizes", "224,288,900", "--json", "-")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [r["size"] for r in rows] == ["224x224", "288x288", "900x900"]
    assert rows[0]["images"] == 2 and rows[0]["latency_ms"] > 0 and rows[0]["profile"] == 0
    assert not rows[2]["covered"] and rows[2]["profile"] is None
    bad = run_cli("sweep", str(colour_engines), "--images", str(tmp_path), "--sizes", "224,abc")
    assert bad.returncode == 2 and "--sizes" in bad.stderr


@pytest.mark.slow
def test_sweep_compares_crop_and_fit_at_every_size(colour_engines, tmp_path):
    """Red centre on a blue 300x900 strip, labelled tench (red): the crop sees only red, the whole image is mostly
    blue. Plain blue images, labelled great white shark, are right under both. So crop must score 100% and fit
    50% at every size: both policies ran, each on its own pixels."""
    for name in ("tench", "great white shark"):
        (tmp_path / "set" / name).mkdir(parents=True)
    for i in range(2):
        strip = Image.new("RGB", (900, 300), (20, 20, 230))
        strip.paste((230, 20, 20), (310, 10, 590, 290))
        strip.save(tmp_path / "set" / "tench" / f"{i}.png")
        Image.new("RGB", (400 + 50 * i, 300), (20, 20, 230)).save(tmp_path / "set" / "great white shark" / f"{i}.png")
    plot = tmp_path / "sweep.png"
    result = run_cli("sweep", str(colour_engines), "--images", str(tmp_path / "set"), "--preprocess", "crop,fit",
                     "--json", str(tmp_path / "sweep.json"), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "sweep.json").read_text())
    sizes = ["224x224", "256x256", "352x352", "480x480", "672x672", "800x800"]  # the plan's min, opt points, max
    assert document["preprocess"] == ["crop", "fit"]
    by_cell = {(r["preprocess"], r["size"]): r for r in document["rows"]}
    assert sorted(by_cell) == sorted((p, s) for p in ("crop", "fit") for s in sizes)
    for size in sizes:
        crop, fit = by_cell[("crop", size)], by_cell[("fit", size)]
        assert (crop["top1"], fit["top1"], crop["images"], fit["images"]) == (1.0, 0.5, 4, 4), size
        assert crop["latency_ms"] > 0 and fit["latency_ms"] > 0
    assert by_cell[("fit", "224x224")]["megapixels"] == pytest.approx((2 * 224 * 672 + 224 * 299 + 224 * 336) / 4e6,
                                                                      rel=0.01)
    assert any(r["pareto"] for r in document["rows"]) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run_cli("sweep", str(colour_engines), "--images", str(tmp_path / "set"), "--preprocess", "crop,fit",
                    "--sizes", "224,900")
    lines = table.stdout.splitlines()
    assert "crop" in lines[1] and "fit" in lines[1] and "top-1" in lines[2]
    row_224 = next(line for line in lines if line.startswith("ort") and "224x224" in line)
    assert row_224.count("100.0%") >= 2 and "50.0%" in row_224
    assert next(line for line in lines if "900x900" in line).count("outside every profile") == 2


def test_plan_from_images_writes_a_profile_file_build_accepts(images, tmp_path):
    target = tmp_path / "profiles" / "mine.toml"
    result = run_cli("plan", "--images", str(images), "--write", str(target))
    assert result.returncode == 0, result.stderr
    assert "5 image(s)" in result.stdout and "skipped 1" in result.stdout and "proposal: min 224" in result.stdout
    plan = load_profile_file(target).plan()
    assert (plan.min_size, plan.max_size) == (224, 1024) and uncovered_example(plan) is None
    again = run_cli("plan", "--profile-file", str(target), "--json", "-")
    assert again.returncode == 0 and json.loads(again.stdout)["max_size"] == 1024
    mixed = run_cli("plan", "--images", str(images), "--min", "224")
    assert mixed.returncode == 2 and "not both" in mixed.stderr
