"""Shared fixtures: one real build of the quickstart range per test session, and a small one reusing its export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``rsz-export ARGS`` in a subprocess with this interpreter; returns the completed process."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rsz_export", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


def wait_for_line(process: subprocess.Popen, marker: str, timeout: float = 300) -> None:
    """Read ``process``'s stderr until a line contains ``marker``; kill it and fail the test if none does."""
    import time

    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return
    process.kill()
    pytest.fail(f"never saw {marker!r}; stderr so far: {''.join(seen)}")


def _library_build(out_dir: Path, min_size: int, max_size: int, weights: str | None = None):
    from rsz_export.build import BuildSpec, build
    from rsz_export.planning import PlanSpec, plan_profiles

    plan = plan_profiles(PlanSpec(min_size, max_size))
    return build(BuildSpec(plan, out_dir, backend="onnxruntime", weights=weights, command="pytest fixture")).manifest


@pytest.fixture(scope="session")
def engines_dir(tmp_path_factory) -> Path:
    """What `make engines` builds (224..800, default weights: random with a warning where none are cached)."""
    out = tmp_path_factory.mktemp("engines")
    _library_build(out, 224, 800)
    return out


@pytest.fixture(scope="session")
def small_engines_dir(engines_dir, tmp_path_factory) -> Path:
    """A 224..288 build; it reuses the session export (same weights), so it costs one ORT optimisation."""
    out = tmp_path_factory.mktemp("small-engines")
    manifest = json.loads((engines_dir / "manifest.json").read_text())
    shutil.copy2(engines_dir / manifest["onnx"]["file"], out / manifest["onnx"]["file"])
    shutil.copy2(engines_dir / "manifest.json", out / "manifest.json")
    _library_build(out, 224, 288)
    return out


@pytest.fixture(scope="session")
def onnx_path(engines_dir) -> Path:
    """The session's exported ONNX file."""
    manifest = json.loads((engines_dir / "manifest.json").read_text())
    return engines_dir / manifest["onnx"]["file"]


@pytest.fixture()
def engines_copy(small_engines_dir, tmp_path) -> Path:
    """A private copy of the small build, for tests that damage it."""
    target = tmp_path / "engines"
    shutil.copytree(small_engines_dir, target)
    return target
