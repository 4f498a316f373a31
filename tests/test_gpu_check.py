"""``benchmarks/gpu_check.py`` (``make test-gpu``) over the TensorRT test double on the CPU: its code paths run
(build, rebuild, validate and bench through the CLI, the record rewritten after each step, the time budget), so
a short loan of a GPU machine can run it unchanged. Nothing here ran on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow
def test_the_gpu_check_runs_over_the_double_and_records_every_step(tmp_path, classifier_onnx):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RSZ_FAKE_TRT_REFERENCE": str(classifier_onnx)}
    record = tmp_path / "check.json"
    args = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "out"), "--json",
            str(record), "--cli-module", "tests.backends.trt_cli", "--onnx", str(classifier_onnx), "--min", "64",
            "--max", "128", "--precisions", "fp32", "--iters", "2", "--no-pytest"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    data = json.loads(record.read_text())
    names = [s["name"] for s in data["steps"]]
    assert names == ["build fp32", "rebuild fp32 (timing cache)", "validate fp32", "bench fp32"]
    assert data["passed"] and all(s["exit_code"] == 0 for s in data["steps"])
    build, rebuild, validate, bench = (s["facts"] for s in data["steps"])
    assert build["engines"][0]["timing_cache"]["reused"] is False and rebuild["engines"][0]["timing_cache"]["reused"]
    assert validate["passed"] and validate["engine_cases"] > 0
    assert {r["variant"] for r in bench["rows"]} == {"dynamic", "static"}
    budget = subprocess.run([*args[:-1], "--budget-s", "0"], capture_output=True, text=True, env=env, cwd=REPO)
    assert budget.returncode == 1 and {s["status"] for s in json.loads(record.read_text())["steps"]} == {"skipped"}
