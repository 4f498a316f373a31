"""Issue 7's bad-input matrix, continued: a built folder damaged (engines, ONNX, manifest, weights), outputs
that cannot be written, image folders with bad files. Rows of docs/robustness.md sections 3 to 5.
"""

# ruff: noqa: F811  (the shared fixtures are imported from test_robustness_inputs and named as arguments)

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from conftest import run_cli
from test_robustness_inputs import (  # noqa: F401 (fixtures)
    assert_clean_failure,
    assert_no_temp_files,
    damaged,
    engine_file,
    fast_engines,
    onnx_build_args,
    onnx_file,
    reference_weights,
)

# ---- a built folder, damaged -------------------------------------------------------------------------


def test_engine_missing_truncated_tampered(damaged, tmp_path):
    engine = engine_file(damaged)
    image = str(Path(__file__).parents[1] / "rsz_export" / "data" / "images" / "astronaut.jpg")
    data = engine.read_bytes()
    engine.write_bytes(data[: len(data) // 2])  # truncated
    assert_clean_failure(
        run_cli("predict", str(damaged), image, "--oversize", "shrink"), 4, "does not match the manifest"
    )
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # tampered: same size, one byte changed
    engine.write_bytes(bytes(flipped))
    assert_clean_failure(
        run_cli(
            "bench",
            str(damaged),
            "--sizes",
            "224",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--no-static",
            "--backends",
            "onnxruntime",
        ),
        4,
        "does not match the manifest",
    )
    engine.unlink()  # missing
    assert_clean_failure(
        run_cli("predict", str(damaged), image), 4, "engine file(s) listed in the manifest are missing"
    )
    result = run_cli("validate", str(damaged), "--replace-sizes", "--sizes", "224", "--random-inputs", "0")
    assert_clean_failure(result, 1)
    assert "NOT-RUN" in result.stdout and "is missing" in result.stdout, result.stdout


@pytest.mark.slow
def test_corrupt_export_then_build_rerun_exports_again(engines_copy):
    """Without --onnx, a rerun whose ONNX no longer matches the manifest exports again (about a minute)."""
    from rsz_export.manifest import load_manifest, verify_file

    model = onnx_file(engines_copy)
    model.write_bytes(model.read_bytes()[:1000])
    rerun = run_cli("build", "--min", "224", "--max", "288", "--out", str(engines_copy), "--no-verify")
    assert rerun.returncode == 0 and "exporting ResNet-50" in rerun.stderr, rerun.stderr
    repaired = load_manifest(engines_copy)
    for record in (repaired.onnx, *(e.file for e in repaired.engines)):
        verify_file(engines_copy, record)


def test_onnx_missing_or_corrupt_then_build_rerun_repairs(damaged, onnx_path, reference_weights):
    model = onnx_file(damaged)
    model.write_bytes(b"not an onnx file")
    result = run_cli("validate", str(damaged), "--replace-sizes", "--sizes", "224", "--random-inputs", "0")
    assert_clean_failure(result, 1)
    assert "NOT-RUN: export onnx" in result.stdout and "does not match the manifest" in result.stdout, result.stdout
    model.unlink()
    image = str(Path(__file__).parents[1] / "rsz_export" / "data" / "images" / "astronaut.jpg")
    served = run_cli("predict", str(damaged), image, "--oversize", "shrink")  # engines alone serve images
    assert served.returncode == 0, served.stderr
    rerun = run_cli(*onnx_build_args(onnx_path, reference_weights, damaged))
    assert rerun.returncode == 0 and rerun.stdout.startswith("built"), rerun.stderr
    from rsz_export.manifest import load_manifest, verify_file

    repaired = load_manifest(damaged)
    for record in (repaired.onnx, *(e.file for e in repaired.engines)):
        verify_file(damaged, record)


def _edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_manifest_other_schema_and_corrupt(damaged):
    _edit_manifest(damaged, lambda m: m.update(schema_version=99))
    for args in (["validate", str(damaged)], ["bench", str(damaged)], ["predict", str(damaged), "x.jpg"]):
        assert_clean_failure(run_cli(*args), 4, "manifest schema version 99")
    (damaged / "manifest.json").write_text('{"schema_version": 1, "tool_ver')
    assert_clean_failure(run_cli("validate", str(damaged)), 4, "unreadable or corrupt")


FOREIGN_TRT = {
    "tensorrt_version": "10.0.1",
    "gpu_name": "NVIDIA A100-SXM4-80GB",
    "compute_capability": "8.0",
    "hardware_compat": None,
    "version_compat": False,
}


def _add_trt_engine(data: dict) -> None:
    ort = data["engines"][0]
    data["engines"].append(
        {**ort, "name": "tensorrt-fp16", "backend": "tensorrt", "precision": "fp16", "settings": FOREIGN_TRT}
    )


def test_manifest_with_foreign_tensorrt_engine(damaged):
    """A manifest naming a TensorRT engine from another TensorRT/GPU: validate stops (exit 3) before any work
    where TensorRT is absent; predict serves from the engines that can run here; asking for TensorRT is exit 3."""
    _edit_manifest(damaged, _add_trt_engine)
    image = str(Path(__file__).parents[1] / "rsz_export" / "data" / "images" / "astronaut.jpg")
    from rsz_export.backends.trt import unavailable_reason

    if unavailable_reason() is not None:
        assert_clean_failure(run_cli("validate", str(damaged)), 3, "backend tensorrt is not usable")
        assert_clean_failure(run_cli("predict", str(damaged), image, "--backend", "tensorrt"), 3, "tensorrt")
    served = run_cli("predict", str(damaged), image, "--oversize", "shrink", "--backend", "onnxruntime")
    assert served.returncode == 0, served.stderr


def test_foreign_tensorrt_engine_is_never_deserialised(damaged, monkeypatch):
    """What a machine with TensorRT decides for that record: check_compatible names the difference, and
    validate turns the engine into not-run cases without loading it."""
    from rsz_export.backends import trt
    from rsz_export.manifest import load_manifest
    from rsz_export.validate import _engine_refusal

    _edit_manifest(damaged, _add_trt_engine)
    here = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    monkeypatch.setattr(trt, "unavailable_reason", lambda: None)
    monkeypatch.setattr(trt, "installed", lambda: here)
    manifest = load_manifest(damaged)
    engine = manifest.engines[1]  # its file is the ORT engine's, so the hash matches: only compatibility decides
    reason = _engine_refusal(manifest, engine, damaged, trt)
    assert "built by TensorRT 10.0.1 and this machine has 10.3.0" in reason
    assert "compute capability 8.0 and this GPU has 9.0" in reason


def test_reference_weights_with_pickle_payload_are_not_unpickled(damaged, tmp_path):
    """A manifest whose weights file was swapped for one carrying code (hash updated too): validate refuses it."""
    import pickle

    from rsz_export.fileio import sha256_file

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"conv1.weight": Payload()}))
    _edit_manifest(damaged, lambda m: m["weights"].update(source=str(evil), sha256=sha256_file(evil)))
    assert_clean_failure(run_cli("validate", str(damaged)), 4, "refused to load", "never unpickles code")
    assert not marker.exists()


# ---- outputs that cannot be written -------------------------------------------------------------------


def test_report_to_unwritable_or_full_target(fast_engines, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    quick = ["--replace-sizes", "--sizes", "224", "--random-inputs", "0"]
    assert_clean_failure(
        run_cli("validate", str(fast_engines), *quick, "--json", str(blocker / "r.json")), 5, "cannot write"
    )
    assert_clean_failure(
        run_cli("validate", str(fast_engines), *quick, "--junit", "/dev/full"),
        5,
        "no space left on the device while writing /dev/full",
    )
    assert Path("/dev/full").is_char_device()  # written in place, never replaced by a renamed file
    assert_no_temp_files(fast_engines)


def test_build_on_a_full_disk(tmp_path, onnx_path, reference_weights, monkeypatch):
    """ENOSPC while copying the ONNX in, then while writing the manifest: exit 5, no manifest, no temp files."""
    import errno
    import os

    from click.testing import CliRunner

    from rsz_export.cli import main

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out"
    args = onnx_build_args(onnx_path, reference_weights, out)
    for target in ("shutil.copyfile", "os.fsync"):
        with monkeypatch.context() as patch:
            patch.setattr(target, full)
            result = CliRunner().invoke(main, args)
        assert result.exit_code == 5, (result.output, result.exception)
        assert "no space left on the device" in result.stderr
        assert not (out / "manifest.json").exists()
        assert_no_temp_files(out)


# ---- image folders ------------------------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb as far as a header says)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture()
def bad_images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    sample = Path(__file__).parents[1] / "rsz_export" / "data" / "images" / "astronaut.jpg"
    shutil.copy(sample, folder / "good.jpg")
    (folder / "corrupt.jpg").write_bytes(sample.read_bytes()[:2000])
    (folder / "zero.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(_png_claiming(60000, 60000))
    (folder / "notes.txt").write_text("not an image")
    (folder / "script.eps").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    return folder


def test_image_folder_with_bad_files(fast_engines, bad_images):
    served = run_cli("predict", str(fast_engines), str(bad_images), "--oversize", "shrink")
    assert served.returncode == 0 and "Traceback" not in served.stderr, served.stderr
    assert "good.jpg" in served.stdout
    for name in ("corrupt.jpg", "zero.png", "bomb.png", "notes.txt", "script.eps"):
        assert f"skipped {bad_images / name}" in served.stderr, served.stderr
    assert_clean_failure(run_cli("predict", str(fast_engines), str(bad_images / "bomb.png")), 4, "bomb.png")
    assert_clean_failure(run_cli("predict", str(fast_engines), str(bad_images / "zero.png")), 4, "is empty (0 bytes)")
    scanned = run_cli("plan", "--images", str(bad_images))
    # a header scan cannot see a truncated body: corrupt.jpg counts as an image there
    assert scanned.returncode == 0 and "2 image(s)" in scanned.stdout and "skipped 4" in scanned.stdout, scanned.stdout
    (bad_images / "good.jpg").unlink()
    assert_clean_failure(run_cli("predict", str(fast_engines), str(bad_images)), 2, "none of the 5 file(s)")
    (bad_images / "corrupt.jpg").unlink()
    assert_clean_failure(run_cli("plan", "--images", str(bad_images)), 2, "has no readable image among its 4 file(s)")


def test_batch_and_sizes_outside_the_profiles(fast_engines):
    assert_clean_failure(
        run_cli("validate", str(fast_engines), "--batch", "4"), 2, "--batch 4 is outside every profile"
    )
    assert_clean_failure(run_cli("validate", str(fast_engines), "--sizes", "800"), 2, "--sizes 800x800 is outside")
    assert_clean_failure(
        run_cli("bench", str(fast_engines), "--batch", "4", "--sizes", "224"), 2, "no profile covers batch 4 at 224x224"
    )
