"""The benchmark scripts stay runnable: each one's imports resolve and its --help works (modules they share,
such as targets.py, are imported by them)."""

import subprocess
import sys

import pytest

from tests.helpers import REPO

SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if '__name__ == "__main__"' in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_help(script):
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
