"""Bad input on the TensorRT path, through the command line, against the TensorRT test double
(``python -m tests.backends.trt_cli``, a subprocess, so Ctrl-C and exit codes are the real ones): a timing cache
from another TensorRT version or a corrupt one, an engine from another GPU, Ctrl-C or SIGTERM during a
TensorRT build, out of memory when an execution context is created. Each: a clear message, its documented exit
code, no traceback, nothing half-written (docs/robustness.md, section 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.backends.trt_double import V10
from tests.helpers import REPO, SAMPLE_IMAGE, assert_clean_failure, assert_no_temp_files

RANGE = ["--min", "64", "--max", "160", "--profiles", "2"]


def trt_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **{f"RSZ_FAKE_TRT_{k.upper()}": v for k, v in env.items()}}
    command = [sys.executable, "-m", "tests.backends.trt_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, cwd=REPO)


def build(out, onnx, *extra: str, **env: str) -> subprocess.CompletedProcess:
    return trt_cli("build", str(out), *RANGE, "--backend", "tensorrt", "--onnx", str(onnx), *extra, **env)


def _engine_files(out):
    return sorted(p.name for p in out.rglob("*.engine"))


@pytest.mark.parametrize("kind", ["corrupt", "other TensorRT version"])
def test_a_timing_cache_tensorrt_cannot_read_is_refused(kind, tmp_path, classifier_onnx):
    cache = tmp_path / "user.cache"
    if kind == "corrupt":
        cache.write_bytes(b"\x00not a timing cache")
    else:
        made = build(tmp_path / "by-10", classifier_onnx, "--timing-cache", str(cache), version=V10)
        assert made.returncode == 0, made.stderr
    before = cache.read_bytes()
    result = build(tmp_path / "out", classifier_onnx, "--timing-cache", str(cache))
    assert_clean_failure(result, 4, "cannot read the timing cache", "another TensorRT version wrote it", "delete")
    assert cache.read_bytes() == before and not (tmp_path / "out" / "manifest.json").exists()
    assert not _engine_files(tmp_path / "out")
    assert_no_temp_files(tmp_path / "out")


def test_the_folders_own_cache_after_a_tensorrt_upgrade_is_replaced(tmp_path, classifier_onnx):
    assert build(tmp_path, classifier_onnx, version=V10).returncode == 0
    result = build(tmp_path, classifier_onnx, "--force")
    assert result.returncode == 0, result.stderr
    assert f"not using timing.cache: it was written by TensorRT {V10} and this machine has 11." in result.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["engines"][0]["settings"]["timing_cache"]["reused"] is False


@pytest.mark.slow
def test_an_engine_from_another_gpu(tmp_path, classifier_onnx):
    """predict and bench stop (exit 3; validate reports it not run: tests/validate/test_trt_validate.py), and
    build rebuilds it here instead of reusing it as up to date."""
    assert build(tmp_path, classifier_onnx).returncode == 0
    a10 = {"gpu": "NVIDIA A10:8.6"}
    predicted = trt_cli("predict", str(tmp_path), str(SAMPLE_IMAGE), "--preprocess", "fit", **a10)
    assert_clean_failure(predicted, 3, "compute capability 9.0 and this GPU has 8.6", "Rebuild it on this machine")
    benched = trt_cli("bench", str(tmp_path), "--sizes", "64", "--backends", "tensorrt", "--iters", "1", **a10)
    assert_clean_failure(benched, 3, "compute capability 9.0 and this GPU has 8.6")
    rebuilt = build(tmp_path, classifier_onnx, **a10)
    assert rebuilt.returncode == 0 and "rebuilding: engine tensorrt-fp32: " in rebuilt.stderr, rebuilt.stderr
    assert "up to date" not in rebuilt.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_tensorrt_build(signum, tmp_path, classifier_onnx):
    """The signal reaches the build inside a TensorRT callback, where the binding would swallow it; the build is
    cancelled at its next step and the CLI exits 130 with nothing written."""
    result = build(tmp_path, classifier_onnx, "--engine-per-profile", signal_at_step="3", signal=str(int(signum)))
    assert_clean_failure(result, 130, "interrupted: nothing half-written was kept")
    assert "Exception caught in log()" not in result.stderr
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "timing.cache").exists()
    assert_no_temp_files(tmp_path)


def test_out_of_memory_when_a_context_is_created(tmp_path, classifier_onnx):
    assert build(tmp_path, classifier_onnx).returncode == 0
    result = trt_cli("predict", str(tmp_path), str(SAMPLE_IMAGE), "--preprocess", "fit", device_mib="1")
    assert_clean_failure(result, 3, "could not create an execution context", "could not be allocated", "free GPU")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["changed", "removed"])
def test_an_int8_engine_whose_calibration_was_changed_or_removed(damage, tmp_path, classifier_onnx):
    """bench builds the int8 engine's shape-fixed twin from its recorded Q/DQ model and calibration: a calibration
    file changed or removed after the build is an integrity error (exit 4) naming the file, not a traceback nor a
    twin built from other ranges."""
    assert build(tmp_path, classifier_onnx, "--precision", "int8", "--calib-count", "4").returncode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    calibration = tmp_path / manifest["calibration"]["file"]["file"]
    if damage == "changed":
        calibration.write_text(calibration.read_text().replace("0", "1", 1))
    else:
        calibration.unlink()
    result = trt_cli("bench", str(tmp_path), "--backends", "tensorrt", "--sizes", "64", "--iters", "1")
    phrase = "does not match the manifest" if damage == "changed" else "is missing"
    assert_clean_failure(result, 4, calibration.name, phrase)
    assert_no_temp_files(tmp_path)
