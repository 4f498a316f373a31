"""The standard benchmark's targets (benchmarks/targets.py) judged from rows."""

from __future__ import annotations

import sys

import pytest

from tests.bench.test_run import _row
from tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from targets import render_targets, targets  # noqa: E402


def test_targets_verdict_from_rows():
    rows = [
        _row("onnxruntime", "dynamic", 224, 40.0, dynamic_over_static=1.02).record() | {"peak_share": 0.75},
        _row("torch", "eager-fp32", 224, 80.0).record(),
        _row("onnxruntime", "dynamic", 800, 500.0, dynamic_over_static=1.08).record()
        | {"peak_share": 0.65, "gflops_per_s": 65.0, "peak_gflops": 100.0},
        _row("torch", "eager-fp32", 800, 900.0).record(),
    ]
    found = {t.name: t for t in targets(rows, harness_overhead=0.004)}
    assert found["ORT vs torch eager at 224x224, sweep (unpaired)"].measured == pytest.approx(2.0)
    assert found["ORT vs torch eager at 224x224, sweep (unpaired)"].met
    assert found["ORT vs torch eager at 800x800, sweep (unpaired)"].measured == pytest.approx(1.8)
    assert found["ORT vs torch eager at 800x800, sweep (unpaired)"].met is False
    share = found["ORT share of matmul peak, sizes >= 224, sweep (peak measured once)"]
    assert share.measured == 0.65 and share.met is False and "800x800" in share.detail
    assert found["dynamic vs static latency (worst)"].measured == 1.08
    assert found["harness overhead vs bare InferenceSession.run at 224"].met
    page = render_targets(list(found.values()))
    assert "| 65.0% | **no** |" in page and "| 0.4% | yes |" in page
