"""``build --precision int8`` with bad calibration input or a place that cannot run int8: one clear message, the
documented exit code, nothing written. The stand-in ONNX keeps these fast (no export); the folder cases run the
library's build in-process (the same checks the CLI reaches, without a process start each), the others the CLI."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from tests.helpers import RANDOM_METADATA, assert_clean_failure, make_plan, run_cli, tiny_onnx


def _folder(tmp_path, case):
    folder = tmp_path / "calib"
    if case == "missing":
        return folder
    folder.mkdir()
    if case == "no images":
        (folder / "readme.txt").write_text("no pictures here")
        (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    if case in ("too few", "too small"):
        Image.new("RGB", (320, 240), (200, 40, 40)).save(folder / "a.png")
        Image.new("RGB", (320, 120 if case == "too small" else 240), (40, 40, 200)).save(folder / "b.png")
    return folder


FOLDER_CASES = [
    ("missing", None, "does not exist or is not a directory"),
    ("empty", None, "is empty"),
    ("no images", None, "holds no readable image (2 file(s) skipped"),
    ("too few", 3, "--calib-count 3 but --calib"),
    ("too small", None, "shorter than the range minimum 224: b.png (120x320)"),
]


@pytest.mark.parametrize("case, count, phrase", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_bad_calibration_folder(case, count, phrase, tmp_path):
    from rsz_export.backends.base import BuildOptions
    from rsz_export.errors import EXIT_USAGE, UsageError
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.pipeline.run import BuildSpec, build

    model = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA)
    out = tmp_path / "out"
    spec = BuildSpec(make_plan(224, 320), out, backend="onnxruntime", onnx=model,
                     options=BuildOptions(precision="int8"), calibration=CalibSpec(_folder(tmp_path, case), count))
    with pytest.raises(UsageError, match=re.escape(phrase)) as error:
        build(spec)
    assert error.value.exit_code == EXIT_USAGE and not out.exists()


def _holdout(tmp_path, case):
    """(calibration folder, held-out folder) for a bad --holdout case."""
    calib, held = tmp_path / "calib", tmp_path / "held"
    calib.mkdir()
    for k in range(3):
        Image.new("RGB", (320, 240), (60 * k, 40, 200)).save(calib / f"{k}.png")
    if case != "missing":
        held.mkdir()
    if case == "unreadable":
        (held / "photo.jpg").write_bytes(b"\xff\xd8 cut short")
    if case == "overlap":
        Image.new("RGB", (320, 240), (60, 40, 200)).save(held / "same-as-1.png")
    return calib, held


HOLDOUT_CASES = [
    ("missing", "--holdout {} does not exist"),
    ("empty", "holds no readable image (0 file(s) skipped)"),
    ("unreadable", "holds no readable image (1 file(s) skipped)"),
    ("overlap", "1 --holdout image(s) are also calibration images (same contents): same-as-1.png"),
]


@pytest.mark.parametrize("case, phrase", HOLDOUT_CASES, ids=[c[0] for c in HOLDOUT_CASES])
def test_bad_holdout_folder(case, phrase, tmp_path):
    from rsz_export.backends.base import BuildOptions
    from rsz_export.errors import EXIT_USAGE, UsageError
    from rsz_export.model.calibration_set import CalibSpec
    from rsz_export.pipeline.run import BuildSpec, build

    calib, held = _holdout(tmp_path, case)
    out = tmp_path / "out"
    model = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA)
    spec = BuildSpec(make_plan(224, 320), out, backend="onnxruntime", onnx=model,
                     options=BuildOptions(precision="int8"), calibration=CalibSpec(calib, holdout_dir=held))
    with pytest.raises(UsageError, match=re.escape(phrase.format(held))) as error:
        build(spec)
    assert error.value.exit_code == EXIT_USAGE and not out.exists()


def test_a_single_calibration_image_leaves_none_to_hold_out(tmp_path):
    from rsz_export.errors import UsageError
    from rsz_export.model.calibration_set import CalibSpec, resolve_calibration_set

    folder = tmp_path / "calib"
    folder.mkdir()
    Image.new("RGB", (320, 240), (200, 40, 40)).save(folder / "only.png")
    with pytest.raises(UsageError, match="holds a single readable image: none is left to hold out") as error:
        resolve_calibration_set(CalibSpec(folder), make_plan(224, 320))
    assert "--holdout DIR" in error.value.hint


CASES = [
    ("missing folder", ["--calib", "{calib}"], 2, "does not exist or is not a directory"),
    ("target not a number", ["--int8-target", "high"], 2, "--int8-target must be a cosine such as 0.99, or off"),
    ("target above 1", ["--int8-target", "1.5"], 2, "--int8-target must be a finite number in 0..0.9999, got 1.5"),
    ("target below 0", ["--int8-target", "-0.2"], 2, "--int8-target must be a finite number in 0..0.9999"),
    ("target without int8", ["--precision", "fp32", "--int8-target", "0.99"], 2, "add --precision int8"),
    ("cuda provider", ["--device", "cuda"], 2,
     "precision int8 is not available on backend onnxruntime with --device cuda"),
    ("tensorrt missing", ["--backend", "tensorrt"], 3, "tensorrt"),
    ("calib without int8", ["--precision", "fp32", "--calib-count", "4"], 2, "add --precision int8"),
]


@pytest.mark.parametrize("case, extra, code, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_int8_input_through_the_cli(case, extra, code, phrase, tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA)
    calib = _folder(tmp_path, "missing")
    args = [a.format(calib=calib) for a in extra]
    precision = [] if "--precision" in args else ["--precision", "int8"]
    out = tmp_path / "out"
    result = run_cli("build", str(out), "--min", "224", "--max", "320", "--onnx", str(model), *precision, *args)
    assert_clean_failure(result, code, phrase)
    assert not out.exists()


def test_an_unknown_cpu_int8_model_is_refused_before_anything_is_written(tmp_path):
    from rsz_export.model.quantization import CPU_INT8_ENV

    model, out = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA), tmp_path / "out"
    result = run_cli("build", str(out), "--min", "224", "--max", "320", "--onnx", str(model), "--precision", "int8",
                     env={CPU_INT8_ENV: "8bit"})
    assert_clean_failure(result, 2, f"{CPU_INT8_ENV} must be portable or vnni; got '8bit'")
    assert not out.exists()
