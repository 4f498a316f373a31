"""Readiness from the processes: not ready until the model is loaded, neither live nor ready once the model's
backend process is gone (over a stand-in process named as Triton's stub is)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from rsz_export.triton.liveness import STUB_NAME, Health


def stand_in_stub() -> subprocess.Popen:
    """A child of this process named as Triton's Python backend stub is (prctl PR_SET_NAME)."""
    code = (f"import ctypes, time; ctypes.CDLL(None).prctl(15, b'{STUB_NAME}', 0, 0, 0); print('named', flush=True); "
            "time.sleep(60)")
    stub = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert stub.stdout.readline().strip() == "named"
    return stub


def test_readiness_waits_for_the_model_and_ends_with_its_process():
    loaded = []
    stub = stand_in_stub()
    try:
        health = Health(os.getpid(), 1, lambda: bool(loaded))
        assert health.check() == (True, False)  # the core is up, its model not yet
        loaded.append(True)
        time.sleep(0.25)
        assert health.check() == (True, True)
        assert health.failure() is None
        stub.kill()
        stub.wait()
        assert health.check() == (False, False)  # a dead model process: neither live nor ready
        assert "backend process" in health.failure()
    finally:
        stub.kill()
