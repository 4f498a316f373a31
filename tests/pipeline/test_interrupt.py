"""Real subprocesses interrupted (SIGINT, SIGTERM, SIGKILL) at several points of a build, and a second writer.

The previous manifest and its files must stay intact and readable, and the next run must finish, reusing
the work that was finished before the interruption.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rsz_export.artifacts.manifest import load_manifest, verify_file
from tests.helpers import (
    REPO,
    SIGNALS,
    assert_interrupted,
    assert_no_temp_files,
    interrupt_all,
    run_cli,
    start_cli,
    wait_for_line,
)


def _start_build(out, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "rsz_export", "build", "--min", "224", "--max", "288", str(out), *extra]
    return subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _assert_intact(out, manifest_text):
    assert (out / "manifest.json").read_text() == manifest_text
    manifest = load_manifest(out)
    for record in [manifest.onnx, *(e.file for e in manifest.engines)]:
        verify_file(out, record)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_during_export_keeps_previous_build(engines_copy, sig):
    before = (engines_copy / "manifest.json").read_text()
    process = _start_build(engines_copy, "--force", "--seed", "1")
    wait_for_line(process, "exporting ResNet-50")
    time.sleep(1.0)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert not list(engines_copy.rglob("*.tmp"))  # cleaned on the way out
    _assert_intact(engines_copy, before)
    rerun = run_cli("build", "--min", "224", "--max", "288", str(engines_copy))
    assert rerun.returncode == 0 and rerun.stdout.startswith("reused"), rerun.stderr
    assert not list(engines_copy.rglob("*.tmp"))  # a killed run's leftovers are removed by the next writer


def test_kill_after_export_then_rerun_reuses_it(engines_copy):
    process = _start_build(engines_copy, "--force", "--seed", "2")
    wait_for_line(process, "[2/3]")
    process.kill()
    process.communicate(timeout=60)
    current = load_manifest(engines_copy)  # old or new: either way complete and verifiable
    for record in [current.onnx, *(e.file for e in current.engines)]:
        verify_file(engines_copy, record)
    rerun = run_cli("build", "--min", "224", "--max", "288", str(engines_copy), "--seed", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert "exporting ResNet-50" not in rerun.stderr  # the finished export was reused, not redone
    manifest = json.loads((engines_copy / "manifest.json").read_text())
    assert manifest["weights"]["seed"] == 2


def test_second_writer_is_refused_while_first_builds(engines_copy):
    first = _start_build(engines_copy, "--force", "--seed", "3")
    wait_for_line(first, "[1/3]")
    second = run_cli("build", "--min", "224", "--max", "288", str(engines_copy))
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=120)
    assert second.returncode == 5 and "another rsz-export build is writing" in second.stderr, second.stderr


def test_export_interrupted_leaves_previous_file(tmp_path, reference_weights):
    """Three exports over an earlier file, each killed with another signal mid-export: the earlier file is
    untouched; SIGINT/SIGTERM remove their temp file, SIGKILL can only leave it beside, never under the name."""
    processes, before = {}, b"an earlier export"
    for sig in SIGNALS:
        target = tmp_path / sig.name / "resnet50.onnx"
        target.parent.mkdir()
        target.write_bytes(before)
        processes[sig] = start_cli("export", "--weights", str(reference_weights), "-o", str(target))
    for sig, (code, stderr) in interrupt_all(processes, "exporting ResNet-50", 1.0).items():
        assert_interrupted(sig, code, stderr)
        folder = tmp_path / sig.name
        assert (folder / "resnet50.onnx").read_bytes() == before
        if sig != signal.SIGKILL:
            assert_no_temp_files(folder)
