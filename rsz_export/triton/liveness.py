"""Whether ``serve`` is live and ready, from its processes rather than from the Triton core's word; and the metrics
endpoint (the core's metrics with ``serve``'s own after them).

Triton 2.51 behind PyTriton answers ``/v2/health/ready`` before its model is loaded (strict readiness does not
cover PyTriton's late-bound models) and keeps answering 200 after the model's Python backend process has died.
So ``Health`` says: live while the core process and, once the model is loaded, each of the model's backend
processes (``triton_python_backend_stub``, children of the core) are alive; ready when live and the core has
said the model is ready. The processes are read from ``/proc`` (Linux, where PyTriton runs).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STUB_NAME = "triton_python_b"
"""The comm name (15 characters) of Triton's Python backend stub, one process per model instance."""
READY_RECHECK_S = 0.2


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state[0] not in ("Z", "X")


def children_named(parent: int, comm: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text.rsplit(")", 1)[1].split()
        if name == comm and int(fields[1]) == parent and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return sorted(found)


class Health:
    """``check()``: (live, ready), as the module docstring says. ``model_ready`` asks the core (over loopback)."""

    def __init__(self, core_pid: int, instances: int, model_ready: Callable[[], bool]):
        self.core_pid, self.instances, self.model_ready = core_pid, instances, model_ready
        self.stubs: list[int] = []
        self._lock = threading.Lock()
        self._asked = 0.0

    def check(self) -> tuple[bool, bool]:
        if not alive(self.core_pid):
            return False, False
        with self._lock:
            if self.stubs:
                ok = all(alive(pid) for pid in self.stubs)
                return ok, ok
            if time.monotonic() - self._asked < READY_RECHECK_S:
                return True, False
            self._asked = time.monotonic()
            stubs = children_named(self.core_pid, STUB_NAME)
            if len(stubs) >= self.instances and self.model_ready():
                self.stubs = stubs
                return True, True
        return True, False

    def failure(self) -> str | None:
        """What died, once the server was ready; None while all is well."""
        if not alive(self.core_pid):
            return f"the Triton server core (pid {self.core_pid}) is gone"
        dead = [pid for pid in self.stubs if not alive(pid)]
        return f"the model's backend process (pid {dead[0]}) is gone" if dead else None


class MetricsEndpoint(ThreadingHTTPServer):
    """``GET /metrics``: the core's metrics (``core_text()``), then ``serve``'s (``own_text()``)."""

    daemon_threads = True

    def __init__(self, address, core_text: Callable[[], str], own_text: Callable[[], str]):
        self.core_text, self.own_text = core_text, own_text
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _MetricsHandler)
        threading.Thread(target=self.serve_forever, name="rsz-metrics", daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsEndpoint

    def log_message(self, format, *args) -> None:  # noqa: A002 (the stdlib's signature)
        pass

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        try:
            core = self.server.core_text()
        except OSError as exc:
            core = f"# the Triton core's metrics are unavailable: {type(exc).__name__}\n"
        body = (core.rstrip("\n") + "\n" + self.server.own_text()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
