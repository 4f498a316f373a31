"""The watchdog: SIGKILL its parent and the parent's children and shared memory go too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO


def test_the_watchdog_kills_the_tree_and_removes_shared_memory_when_its_parent_is_killed(tmp_path):
    """A parent that maps a /dev/shm file and has a child; SIGKILL it: both the child and the file go."""
    shm = Path("/dev/shm") / f"rsz-test-{os.getpid()}"
    parent = ("import mmap, os, subprocess, sys, time\n"
              "w = subprocess.Popen([sys.executable, '-m', 'rsz_export.triton.watchdog', str(os.getpid())],"
              " stdin=subprocess.PIPE, start_new_session=True)\n"
              f"f = open({str(shm)!r}, 'w+b'); f.truncate(4096); m = mmap.mmap(f.fileno(), 4096)\n"
              "c = subprocess.Popen(['sleep', '60'])\n"
              "print(c.pid, flush=True); time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        child = int(process.stdout.readline())
        time.sleep(1.5)  # the watchdog notes the tree every second
        assert shm.exists()
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 5
        while (shm.exists() or _running(child)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child) and not shm.exists()
    finally:
        process.kill()
        shm.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
