"""``build --onnx``: a user's ONNX is checked (interface, readability, external data) before anything is written."""

from __future__ import annotations

import json

import pytest

from tests.helpers import RANDOM_METADATA, assert_clean_failure, run_cli, tiny_onnx

pytestmark = pytest.mark.slow  # a CLI process per case (about 12 s of CPU in all): the full suite runs them

ONNX_CASES = [
    ("wrong input name", {"input_name": "x"}, 2, "its inputs are ['x'], expected exactly one named 'images'"),
    ("wrong rank", {"input_shape": ("batch", 3, "height")}, 2, "has rank 3"),
    ("wrong channels", {"input_shape": ("batch", 1, "height", "width")}, 2, "has 1 channels (dim 1), expected 3"),
    ("wrong dtype", {"elem": "FLOAT16"}, 2, "input 'images' is FLOAT16, expected FLOAT"),
    ("fixed size outside the plan", {"input_shape": ("batch", 3, 224, 224)}, 2, "height is fixed at 224 but the plan"),
    ("wrong output", {"output_shape": ("batch", 1000, 1)}, 2,
     "expected one 'logits' of shape [batch,classes] with a fixed class count"),
    ("no weights metadata, no --weights", {}, 2, "does not say which weights it was exported from"),
]

@pytest.mark.parametrize("case,kwargs,code,phrase", ONNX_CASES, ids=[c[0] for c in ONNX_CASES])
def test_build_from_foreign_onnx_is_refused(tmp_path, case, kwargs, code, phrase):
    kwargs = {"metadata": RANDOM_METADATA, **kwargs} if case.startswith("wrong") or "fixed" in case else kwargs
    model = tiny_onnx(tmp_path / "other.onnx", **kwargs)
    out = tmp_path / "out"
    result = run_cli("build", "--min", "224", "--max", "288", "--onnx", str(model), str(out))
    assert_clean_failure(result, code, phrase)
    assert not out.exists()

@pytest.mark.parametrize(
    "content,phrase",
    [(b"", "it has no graph"), (b"\x08\x07garbage\xff" * 50, "not a readable ONNX"), (None, "does not exist")],
    ids=["empty", "garbage", "missing"],
)
def test_build_from_unreadable_onnx(tmp_path, content, phrase):
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    result = run_cli("build", "--min", "224", "--max", "288", "--onnx", str(model), str(tmp_path / "out"))
    assert_clean_failure(result, 4, phrase)
    assert not (tmp_path / "out").exists()

def test_build_from_onnx_with_external_data_is_refused(tmp_path):
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(tiny_onnx(tmp_path / "m.onnx", metadata=RANDOM_METADATA)))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save(model, str(tmp_path / "ext.onnx"))
    result = run_cli(
        "build", "--min", "224", "--max", "288", "--onnx", str(tmp_path / "ext.onnx"), str(tmp_path / "out")
    )
    assert_clean_failure(result, 4, "external data")

def test_build_from_fitting_onnx_with_weights_validates_against_them(tmp_path, reference_weights):
    """A fixed 224x224 model fits a 224..224 plan; with --weights it builds, and validate runs it (and, being
    another model, fails parity with exit 1, not a crash)."""
    model = tiny_onnx(tmp_path / "fixed.onnx", input_shape=("batch", 3, 224, 224))
    out = tmp_path / "out"
    result = run_cli(
        "build",
        "--min",
        "224",
        "--max",
        "224",
        "--onnx",
        str(model),
        "--weights",
        str(reference_weights),
        str(out),
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"]["id"] == "file" and "--onnx" in manifest["command"]
    checked = run_cli("validate", str(out), "--replace-sizes", "--sizes", "224", "--random-inputs", "0")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
