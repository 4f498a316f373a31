"""What a new user meets in the first hour: a build that fell back to random weights says so wherever predictions
or accuracies appear, a mistyped folder or class name gets the close one suggested, -v/-q go after the subcommand
too, and predict over folders says what it did."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.errors import IntegrityError, UsageError
from rsz_export.serve.predict import split_arguments
from rsz_export.sweep.accuracy import load_labeled
from tests.cli.test_predict_folders import run_on_a_terminal
from tests.helpers import RANDOM_METADATA, REPO, assert_clean_failure, run_cli, tiny_onnx

FALLBACK = ("default weights imagenet1k-v2 unavailable (no network); built with seeded random weights (seed 0): "
            "outputs are NOT ImageNet predictions. Put resnet50-11ad3fa6.pth in the torch hub cache and rebuild "
            "with --force for real weights")
"""The warning ``model.weights.default_weights`` gives, as a build records it in the manifest."""


def fallback_copy(build: Path, target: Path) -> Path:
    """A copy of ``build`` whose manifest records the random-weights fallback, as a build without cached
    pretrained weights writes it."""
    shutil.copytree(build, target)
    data = json.loads((target / "manifest.json").read_text())
    data["weights"]["warning"] = FALLBACK
    data["warnings"] = [FALLBACK]
    (target / "manifest.json").write_text(json.dumps(data))
    return target


def red_folder(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (240 + 16 * i, 240), (220, 30, 30)).save(folder / f"{i}.png")
    return folder


def test_random_weights_fallback_is_said_by_predict_and_sweep(colour_engines, tmp_path):
    build = fallback_copy(colour_engines, tmp_path / "engines")
    assert load_manifest(build).random_weights_warning == FALLBACK
    assert load_manifest(colour_engines).random_weights_warning is None  # asked-for weights: nothing to say
    photos = red_folder(tmp_path / "photos")
    out_json, out_csv = tmp_path / "p.json", tmp_path / "p.csv"
    result = run_cli("predict", str(build), str(photos), "--json", str(out_json), "--csv", str(out_csv))
    assert result.returncode == 0, result.stderr
    assert f"warning: {FALLBACK}" in result.stderr
    assert json.loads(out_json.read_text())["weights_warning"] == FALLBACK
    with open(out_csv, newline="") as handle:
        assert {row["weights_warning"] for row in csv.DictReader(handle)} == {FALLBACK}
    red_folder(tmp_path / "labeled" / "tench", 1)
    sweep_json = tmp_path / "s.json"
    result = run_cli("sweep", str(build), "--images", str(tmp_path / "labeled"), "--sizes", "224",
                     "--json", str(sweep_json))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"warning: {FALLBACK}\n") and f"warning: {FALLBACK}" in result.stderr
    assert json.loads(sweep_json.read_text())["weights_warning"] == FALLBACK
    plain = run_cli("predict", str(colour_engines), str(photos / "0.png"), "--json", "-")
    assert "warning" not in plain.stderr and json.loads(plain.stdout)["weights_warning"] is None


def test_a_mistyped_build_folder_is_named_never_replaced_by_engines(colour_engines, tmp_path):
    shutil.copytree(colour_engines, tmp_path / "engines")
    shutil.copytree(colour_engines, tmp_path / "e-b")
    photo = red_folder(tmp_path / "photos", 1) / "0.png"
    result = run_cli("predict", "e-bb", str(photo), cwd=tmp_path)
    assert_clean_failure(result, 4, "e-bb is neither a build folder", "did you mean e-b/?")
    assert result.stdout == ""  # nothing answered from ./engines
    result = run_cli("bench", "engine", cwd=tmp_path)
    assert_clean_failure(result, 4, "no manifest at engine/manifest.json", "did you mean engines/?")
    assert "rsz-export build engine " not in result.stderr
    with pytest.raises(IntegrityError, match="build engines first"):  # nothing close: how to build
        load_manifest(tmp_path / "zzz")
    missing = str(tmp_path / "photos" / "1.png")  # a missing image is still one skipped image, as before
    assert split_arguments([missing, str(photo)]).images[0] == Path(missing)


def test_an_unknown_class_folder_gets_the_close_class_name(tmp_path):
    red_folder(tmp_path / "tabbby", 1)
    red_folder(tmp_path / "goldfish", 1)
    with pytest.raises(UsageError, match=r"knows: 'tabbby' \(did you mean 'tabby'( or '\w+')*\?\)"):
        load_labeled(tmp_path)


@pytest.mark.slow  # five CLI runs: the full suite runs it, make check stays under a minute
def test_verbosity_after_the_subcommand_and_a_sweep_progress_bar(colour_engines, tmp_path):
    labeled = tmp_path / "labeled"
    red_folder(labeled / "tench", 3)
    sweep = ("sweep", str(colour_engines), "--images", str(labeled), "--sizes", "224")
    verbose = run_cli(*sweep, "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert f"[3/3] {labeled / 'tench' / '2.png'}" in verbose.stderr
    quiet = run_cli(*sweep[:2], "-q", *sweep[2:])
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "-v, --verbose" in run_cli("sweep", "--help").stdout
    shown = run_on_a_terminal(*sweep)
    assert "images  [" in shown and "3/3" in shown
    assert "images  [" not in run_on_a_terminal(*sweep, "-q")


def test_predict_over_folders_ends_with_a_count_and_an_empty_folder_says_so(colour_engines, tmp_path):
    photos = red_folder(tmp_path / "photos", 2)
    (photos / "notes.txt").write_text("not an image")
    result = run_cli("predict", str(colour_engines), str(photos), "--csv", str(tmp_path / "p.csv"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == f"2 image(s) classified, 1 skipped; written: {tmp_path / 'p.csv'}"
    (tmp_path / "empty").mkdir()
    result = run_cli("predict", str(colour_engines), str(tmp_path / "empty"))
    assert_clean_failure(result, 2, f"no files to classify: {tmp_path / 'empty'} hold(s) no files")
    assert "see above" not in result.stderr


@pytest.mark.slow  # a build: the full suite runs it, make check stays under a minute
def test_a_shipped_fp16_profile_on_the_cpu_names_the_fix_and_fp32_overrides_it(tmp_path):
    edge = str(REPO / "profiles" / "edge.toml")
    shown = run_cli("plan", "--profile-file", edge)
    assert shown.returncode == 0 and f"precision fp16 (from {edge}; build --precision overrides it)" in shown.stdout
    model = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA)
    build = ("build", str(tmp_path / "engines"), "--profile-file", edge, "--onnx", str(model))
    assert_clean_failure(run_cli(*build), 2, "precision fp16 is not available on backend onnxruntime with --device cpu",
                         "--precision fp32 (it overrides a profile file's precision)", "fp16 builds with --backend "
                         "tensorrt")
    assert not (tmp_path / "engines").exists()
    result = run_cli(*build, "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path / "engines")
    assert manifest.precision == "fp32" and (manifest.plan.min_size, manifest.plan.max_size) == (224, 512)
