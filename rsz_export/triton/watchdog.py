"""The clean-up process ``serve`` starts beside itself, so that even a SIGKILL of ``serve`` leaves no process and no
shared memory behind.

``python -m rsz_export.triton.watchdog PID`` (started by ``serve`` with a pipe on its stdin, in a session of its own
so that signals to ``serve``'s group do not reach it) notes every second the processes descended from PID (the
Triton core, its Python backend stubs, multiprocessing helpers) and the ``/dev/shm`` files they map. When the pipe
closes without ``done`` written on it (``serve`` ended without stopping in order: SIGKILL, the OOM killer), it
kills the noted processes that still run (each checked by its start time, so a reused pid is left alone) and
removes the noted shared-memory files. An orderly stop writes ``done`` and the watchdog exits at once.

The Triton core also gets SIGTERM when ``serve`` dies (PyTriton sets the parent-death signal), but it would wait
for its requests and its stubs follow only later; the watchdog makes the end certain and immediate. A supervisor
that kills every process of the unit at once (systemd's ``KillMode=control-group``, a container's end) kills the
watchdog too: there the whole cgroup or container goes, its ``/dev/shm`` with it in a container.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

POLL_S = 1.0
DONE = "done"
KILL_WAIT_S = 3.0


def _stat(pid: str) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[1]), fields[19]) if fields[0] not in ("Z", "X") else None


def descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every live process below ``root``."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (facts := _stat(entry)) is not None:
            parents.setdefault(facts[0], []).append((int(entry), facts[1]))
    found, todo = {}, [root]
    while todo:
        for pid, started in parents.get(todo.pop(), []):
            if pid not in found:
                found[pid] = started
                todo.append(pid)
    return found


def shared_memory_of(pids) -> set[str]:
    """The ``/dev/shm`` files the processes map."""
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as maps:
                for line in maps:
                    at = line.find("/dev/shm/")
                    if at >= 0:
                        found.add(line[at:].rstrip("\n").removesuffix(" (deleted)"))
        except OSError:
            continue
    return found


def clean_up(processes: dict[int, str], shm: set[str]) -> None:
    """SIGKILL the noted processes still running (same start time), then remove the noted shared memory."""
    for pid, started in processes.items():
        facts = _stat(str(pid))
        if facts is not None and facts[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline and running(processes):
        time.sleep(0.05)  # the processes let go of their mappings before the files go
    remove_files(shm)


def remove_files(paths) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def running(processes: dict[int, str]) -> dict[int, str]:
    """The noted processes still running (same pid and start time)."""
    return {pid: started for pid, started in processes.items() if (_stat(str(pid)) or (0, ""))[1] == started}


def finish(processes: dict[int, str], grace_s: float) -> int:
    """Give the noted processes ``grace_s`` to exit, then SIGKILL those left; how many were killed."""
    deadline = time.monotonic() + grace_s
    while running(processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = running(processes)
    if left:
        clean_up(left, set())
    return len(left)


def watch(root: int, stream) -> int:
    """Watch ``root`` until ``stream`` closes; clean up unless ``done`` came first."""
    processes: dict[int, str] = {}
    shm: set[str] = set()
    while True:
        processes.update(descendants(root))
        processes.pop(os.getpid(), None)  # the watchdog is one of them
        shm |= shared_memory_of([root, *processes])
        readable, _, _ = select.select([stream], [], [], POLL_S)
        if readable:
            line = stream.readline()
            if line.strip() == DONE:
                return 0
            if not line:
                shm |= shared_memory_of(running(processes))  # blocks made since the last look, still mapped
                clean_up(processes, shm)
                return 0


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # only the pipe ends it
    return watch(int(argv[0]), sys.stdin)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
