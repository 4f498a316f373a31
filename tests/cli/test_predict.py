"""The predict, sweep and plan --images commands, run as a user runs them (subprocess), with their exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from rsz_export.plan.profile_file import load_profile_file
from rsz_export.plan.profiles import uncovered_example
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-images")
    rng = np.random.default_rng(11)
    for h, w in [(224, 224), (250, 280), (288, 240), (600, 500), (1024, 768)]:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{h}x{w}.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_prints_labels_engine_profile_and_latency(small_engines_dir, images):
    result = run_cli(
        "predict", str(small_engines_dir), str(images / "224x224.jpg"), str(images / "250x280.jpg"), "--top-k", "3"
    )
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.strip().split("\n")
    heads = [line for line in blocks if not line.startswith("  ")]
    assert len(heads) == 2 and "250x280, engine ort (onnxruntime) profile 0" in heads[1] and " ms" in heads[1]
    assert len(blocks) == 2 + 2 * 3


def test_predict_json_and_shrink(small_engines_dir, images):
    result = run_cli(
        "predict", str(small_engines_dir), str(images / "600x500.jpg"), "--oversize", "shrink", "--json", "-"
    )
    assert result.returncode == 0, result.stderr
    (prediction,) = json.loads(result.stdout)["predictions"]
    assert prediction["original"] == "600x500" and prediction["input"] == "288x240"
    assert len(prediction["top"]) == 5 and prediction["top"][0]["score"] >= prediction["top"][1]["score"]


def test_predict_oversize_error_names_the_range(small_engines_dir, images):
    result = run_cli("predict", str(small_engines_dir), str(images / "1024x768.jpg"))
    assert result.returncode == 2
    assert "outside every profile" in result.stderr and "224..288" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_without_engines_is_an_integrity_error(tmp_path, images):
    result = run_cli("predict", str(images / "224x224.jpg"), cwd=tmp_path)
    assert result.returncode == 4 and "no manifest" in result.stderr


def test_sweep_prints_accuracy_and_latency_per_size(small_engines_dir, tmp_path):
    rng = np.random.default_rng(2)
    for name in ("goldfish", "tench"):
        (tmp_path / name).mkdir()
        Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(tmp_path / name / "a.png")
    result = run_cli(
        "sweep", str(small_engines_dir), "--images", str(tmp_path), "--sizes", "224,288,320", "--json", "-"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [r["size"] for r in rows] == ["224x224", "288x288", "320x320"]
    assert rows[0]["images"] == 2 and rows[0]["latency_ms"] > 0 and rows[2]["profile"] is None
    bad = run_cli("sweep", str(small_engines_dir), "--images", str(tmp_path), "--sizes", "224,abc")
    assert bad.returncode == 2 and "--sizes" in bad.stderr


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
