"""``serve``'s HTTP front: the address clients reach, in this process, in front of a Triton core that listens on
loopback only.

Every inference request is checked (``request_check``) before the core sees it, and refused with a 4xx and one
line (``{"error": "..."}``) when the build does not serve it: the body's declared length first (413 before a byte
of it is read when it is over the largest request the build serves), then, for a request with binary tensors,
its JSON header (read alone, so a wrong shape or byte count is refused before the tensor is read), then a JSON
body's values. Health answers come from here: live while the core and the model's processes are alive, ready
only when the model is loaded too (``health``). Everything else (metadata, config, statistics) is passed on.

Stopping (``drain``): the listening socket closes (new connections are refused), idle kept-alive connections are
closed, a request that arrives on an open connection gets 503 and ``Connection: close``, and requests in flight
are answered before it returns.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rsz_export.triton.metrics import ServeMetrics
from rsz_export.triton.request_check import (
    MAX_HEADER_BYTES,
    Refused,
    RequestLimits,
    as_binary,
    check_header,
    check_json_data,
)

IDLE_TIMEOUT_S = 60
"""An idle kept-alive connection is closed after this long (and a client that stalls mid-request too)."""
CORE_TIMEOUT_S = 120
MAX_SMALL_BODY = 64 * 1024
"""Bodies of requests other than inference (Triton's restricted endpoints): small, passed on to be refused."""
HEADER_LENGTH = "Inference-Header-Content-Length"
PASSED_RESPONSE_HEADERS = ("Content-Type", HEADER_LENGTH)


def address_family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class CorePool:
    """Kept-alive HTTP connections to the loopback core, one per concurrent request."""

    def __init__(self, port: int):
        self.port = port
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body) of the core's answer; one retry on a connection the core had closed."""
        for attempt in (1, 2):
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CORE_TIMEOUT_S)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
                conn.close()
                if attempt == 2:
                    raise
                continue
            if response.will_close:
                conn.close()
            else:
                self._idle.put(conn)
            return response.status, {k: response.getheader(k) for k in PASSED_RESPONSE_HEADERS}, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class Front(ThreadingHTTPServer):
    """The listening HTTP front; ``serve_in_thread`` starts it, ``drain`` stops it (module docstring)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], limits: RequestLimits, core: CorePool,
                 health: Callable[[], tuple[bool, bool]], metrics: ServeMetrics, log: Callable[[str], None]):
        self.limits, self.core, self.health, self.metrics, self.log = limits, core, health, metrics, log
        self.draining = False
        self._lock = threading.Lock()
        self._idle: set[socket.socket] = set()
        self._busy = 0
        self._thread: threading.Thread | None = None
        name = re.escape(limits.name)
        self.infer_path = re.compile(rf"^/v2/models/{name}(/versions/1)?/infer$")
        self.model_path = re.compile(r"^/v2/models/([^/]+)(/versions/([^/]+))?(/.*)?$")
        self.address_family = address_family(address[0])
        super().__init__(address, FrontHandler)

    def serve_in_thread(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="rsz-http-front", daemon=True)
        self._thread.start()

    def connection_idle(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.add(sock)

    def connection_busy(self, sock: socket.socket) -> bool:
        """Mark a connection as answering a request; False when the front is draining (refuse it)."""
        with self._lock:
            self._idle.discard(sock)
            if self.draining:
                return False
            self._busy += 1
            return True

    def request_done(self) -> None:
        with self._lock:
            self._busy -= 1

    def connection_gone(self, sock: socket.socket) -> None:
        with self._lock:
            self._idle.discard(sock)

    def drain(self, timeout_s: float) -> bool:
        """Stop accepting, close idle connections, wait up to ``timeout_s`` for requests in flight; True when
        every one was answered."""
        with self._lock:
            self.draining = True
            idle = list(self._idle)
        self.shutdown()  # the accept loop ends ...
        self.server_close()  # ... and the listening socket closes: new connections are refused
        for sock in idle:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # its handler, waiting for a next request, reads EOF and ends
            except OSError:
                pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._busy:
                    return True
            time.sleep(0.02)
        return False


class FrontHandler(BaseHTTPRequestHandler):
    """One client connection: requests answered one after another (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    disable_nagle_algorithm = True  # the head and the body go out in two writes: no 40 ms wait for an ACK
    server: Front

    def handle_one_request(self) -> None:
        self.server.connection_idle(self.connection)
        try:
            first = self.rfile.peek(1)  # waits for the next request (or EOF) while counted as idle
        except (OSError, ValueError):
            first = b""
        if not first:
            self.server.connection_gone(self.connection)
            self.close_connection = True
            return
        if not self.server.connection_busy(self.connection):
            self.close_connection = True
            self.server.metrics.refuse("draining")
            self._refuse_raw(503, "the server is stopping")
            return
        try:
            super().handle_one_request()
        finally:
            self.server.request_done()

    def _refuse_raw(self, status: int, message: str) -> None:
        """Answer without parsing the request (the front is stopping)."""
        body = json.dumps({"error": message}).encode()
        head = (f"HTTP/1.1 {status} {http.client.responses.get(status, '')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        try:
            self.wfile.write(head + body)
        except OSError:
            pass

    def log_message(self, format, *args) -> None:  # noqa: A002 (the stdlib's signature): no line per request
        pass

    def send_error(self, code, message=None, explain=None) -> None:
        """The stdlib's own refusals (a malformed request line or headers) in the KServe error form."""
        self.close_connection = True
        self._answer(code, json.dumps({"error": message or http.client.responses.get(code, "")}).encode(),
                     {"Content-Type": "application/json"})

    def _answer(self, status: int, body: bytes, headers: dict) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if value is not None:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection or self.server.draining:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, refused: Refused, body_unread: bool) -> None:
        self.server.metrics.refuse(refused.reason)
        self.server.log(f"refused a request ({refused.status}): {refused.message}")
        if body_unread:
            self.close_connection = True  # the rest of its body is never read
        self._answer(refused.status, json.dumps({"error": refused.message}).encode(),
                     {"Content-Type": "application/json"})

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
        live, ready = self.server.health()
        path = self.path.split("?", 1)[0]
        if path == "/v2/health/live":
            return self._answer(200 if live else 503, b"", {})
        if path == "/v2/health/ready":
            return self._answer(200 if ready else 503, b"", {})
        model = self.server.model_path.match(path)
        if model and model.group(4) == "/ready":
            known = model.group(1) == self.server.limits.name and model.group(3) in (None, "1")
            return self._answer(200 if known and ready else 503 if known else 404, b"", {})
        self._pass_on("GET", None, {})

    def do_POST(self) -> None:  # noqa: N802
        try:
            if self.server.infer_path.match(self.path):
                self._infer()
            else:
                self._small_post()
        except Refused as refused:
            self._refuse(refused, body_unread=True)

    def _content_length(self, limit: int) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise Refused(411, "malformed", "send the body with a Content-Length (chunked bodies are not accepted)")
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise Refused(415, "unsupported", "compressed request bodies are not accepted; send it uncompressed")
        try:
            length = int(self.headers["Content-Length"])
        except (TypeError, ValueError):
            raise Refused(411, "malformed", "the request needs a Content-Length") from None
        if length < 0:
            raise Refused(400, "malformed", "a negative Content-Length")
        if length > limit:
            raise Refused(413, "too_large", f"the request declares {length} bytes; the largest this model serves "
                                            f"is {limit} bytes")  # fmt: skip
        return length

    def _small_post(self) -> None:
        if self.server.model_path.match(self.path) and self.path.endswith(("/generate", "/generate_stream")):
            raise Refused(404, "unsupported", "the generate extension is not offered; use /infer")
        length = self._content_length(MAX_SMALL_BODY)
        self._pass_on("POST", self.rfile.read(length), {"Content-Type": self.headers.get("Content-Type")})

    def _infer(self) -> None:
        limits = self.server.limits
        header_length = self.headers.get(HEADER_LENGTH)
        length = self._content_length(limits.max_binary_bytes if header_length else limits.max_json_bytes)
        if header_length is not None:
            if not header_length.isdigit() or not 0 < int(header_length) <= min(length, MAX_HEADER_BYTES):
                raise Refused(400, "malformed", f"{HEADER_LENGTH} must be 1..{MAX_HEADER_BYTES} and within the body")
            head = self.rfile.read(int(header_length))
            _, shape = check_header(_parse_json(head), limits, length - len(head))
            body = head + self.rfile.read(length - len(head))
            if len(body) != length:
                self.close_connection = True
                return
        else:
            body = self.rfile.read(length)
            header = _parse_json(body)
            tensor, shape = check_header(header, limits, 0)
            try:
                body, header_length = as_binary(header, check_json_data(tensor["data"], shape))
            except Refused as refused:
                return self._refuse(refused, body_unread=False)
        headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(header_length)}
        self.server.metrics.started()
        try:
            status = self._pass_on("POST", body, headers)
        finally:
            self.server.metrics.started(-1)
        if status == 200:
            self.server.metrics.answered(limits.profile_of(shape[2], shape[3]), shape[0])

    def _pass_on(self, method: str, body: bytes | None, headers: dict) -> int:
        try:
            status, answer_headers, data = self.server.core.request(method, self.path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.server.log(f"the server core did not answer: {type(exc).__name__}: {exc}")
            status, answer_headers = 503, {"Content-Type": "application/json"}
            data = json.dumps({"error": "the server core is not answering"}).encode()
        self._answer(status, data, answer_headers)
        return status


def _parse_json(data: bytes):
    try:
        return json.loads(data)
    except RecursionError:
        raise Refused(400, "malformed", "the request's JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, "malformed", f"the request is not valid JSON ({str(exc)[:120]})") from None
