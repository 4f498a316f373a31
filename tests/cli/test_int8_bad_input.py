"""``build --precision int8`` with bad calibration input or a place that cannot run int8: one clear message, the
documented exit code, nothing written. The stand-in ONNX keeps these fast (no export)."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.helpers import RANDOM_METADATA, assert_clean_failure, run_cli, tiny_onnx


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


CASES = [
    ("missing", ["--calib", "{calib}"], 2, "does not exist or is not a directory"),
    ("empty", ["--calib", "{calib}"], 2, "is empty"),
    ("no images", ["--calib", "{calib}"], 2, "holds no readable image (2 file(s) skipped"),
    ("too few", ["--calib", "{calib}", "--calib-count", "3"], 2, "--calib-count 3 but --calib"),
    ("too small", ["--calib", "{calib}"], 2, "shorter than the range minimum 224: b.png (120x320)"),
    ("cuda provider", ["--device", "cuda"], 2, "precision int8 is not available on ONNX Runtime's cuda provider"),
    ("tensorrt missing", ["--backend", "tensorrt"], 3, "tensorrt"),
    ("calib without int8", ["--precision", "fp32", "--calib-count", "4"], 2, "add --precision int8"),
]


@pytest.mark.parametrize("case, extra, code, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_int8_input(case, extra, code, phrase, tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA)
    calib = _folder(tmp_path, case)
    args = [a.format(calib=calib) for a in extra]
    precision = [] if "--precision" in args else ["--precision", "int8"]
    out = tmp_path / "out"
    result = run_cli("build", str(out), "--min", "224", "--max", "320", "--onnx", str(model), *precision, *args)
    assert_clean_failure(result, code, phrase)
    assert not out.exists()
