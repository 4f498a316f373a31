"""serve as an operator exposes it: readiness polled from the process start, each request that took the bare
Triton core down (or got a 500) answered with a 4xx while the next good one is served, an oversized request
refused by its declared size, the metrics endpoint scraped, then SIGTERM with a request in flight and idle
kept-alive connections (drained, exit 0 in 10 s, nothing left), and SIGKILL (nothing left either).

Marked ``slow``: two server starts (about 15 s each on two busy cores)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton.triton", reason="the [serve] extra (nvidia-pytriton) is not installed")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="the [serve] extra (tritonclient[grpc]) is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

from tests.helpers import RANDOM_METADATA, REPO, shared_memory_of, tiny_onnx  # noqa: E402

pytestmark = pytest.mark.slow
MODEL = "resnet50"
STARTUP_S = 120
DRAIN_LIMIT_S = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> Path:
    """The real interface on a stand-in (average pool, then a seeded [3, 1000] matrix), 224..800, batch 1..4."""
    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.plan.profiles import PlanSpec, plan_profiles
    from rsz_export.shapes import BatchRange

    out = tmp_path_factory.mktemp("front-engines")
    weights = np.random.default_rng(1).normal(size=(3, 1000)).astype(np.float32)
    model = tiny_onnx(out.parent / "front.onnx", metadata=RANDOM_METADATA, weights=weights)
    build(BuildSpec(plan_profiles(PlanSpec(224, 800, batch=BatchRange(1, 4, 4))), out, backend="onnxruntime",
                    onnx=model, command="pytest front fixture"))
    return out


def live_descendants(root: int) -> list[int]:
    from rsz_export.triton.watchdog import descendants

    return list(descendants(root))


class Serve:
    """``rsz-export serve`` as a subprocess (its own session, as a service manager starts it)."""

    def __init__(self, engines: Path, log: Path, *extra: str):
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self.log, self.shm = log, set()
        command = [sys.executable, "-m", "rsz_export", "serve", str(engines), "--http-port", str(self.http),
                   "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics), "--threads", "1", *extra]
        with log.open("w") as err:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
                                            env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        self.children: set[int] = set()

    def get(self, path: str, port: int | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.http, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def poll_ready(self) -> list[tuple[float, int]]:
        """/v2/health/ready every 50 ms from the process start until 200; at the first 200 an inference must
        succeed (a ready that lies sends it to an unknown model). [(seconds, status)], 0 for no answer."""
        polls, started = [], time.monotonic()
        while time.monotonic() - started < STARTUP_S:
            try:
                status = self.get("/v2/health/ready")[0]
            except OSError:
                status = 0
            polls.append((time.monotonic() - started, status))
            if status == 200:
                assert post(self, good_body())[0] == 200, "ready, yet an inference failed"
                self.children = set(live_descendants(self.process.pid))
                self.shm = shared_memory_of({self.process.pid, *self.children})
                return polls
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.05)
        pytest.fail(f"not ready after {STARTUP_S} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


def json_body(shape, data) -> bytes:
    return json.dumps({"inputs": [{"name": "images", "shape": shape, "datatype": "FP32", "data": data}]}).encode()


def good_body() -> bytes:
    return json_body([1, 3, 224, 224], [0.25] * (3 * 224 * 224))


def post(server: Serve, body: bytes, headers: dict | None = None, conn=None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.http, timeout=60)
    try:
        conn.request("POST", f"/v2/models/{MODEL}/infer", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


@pytest.fixture(scope="module")
def server(engines, tmp_path_factory):
    running = Serve(engines, tmp_path_factory.mktemp("front-log") / "stderr.txt", "--instances", "2")
    try:
        running.polls = running.poll_ready()
        yield running
    finally:
        running.kill()


def test_ready_is_never_200_before_the_model_answers(server):
    """Polled from the process start (poll_ready): until the model answers, only refusals or 503."""
    statuses = [status for _, status in server.polls]
    assert statuses[-1] == 200 and set(statuses[:-1]) <= {0, 503}
    assert server.get(f"/v2/models/{MODEL}/ready")[0] == 200 and server.get("/v2/health/live")[0] == 200


BAD = {
    "shape [1,3,100000,100000] with one value (aborted the core)": (json_body([1, 3, 100000, 100000], [1.0]), {}),
    "a body nested 100,000 arrays deep (killed the core)": (b"[" * 100_000 + b"]" * 100_000, {}),
    "shape [1,3,2**62,4] (killed the model's process)": (json_body([1, 3, 2**62, 4], [1.0]), {}),
    "shape [1,3,0,224] (500 with a traceback)": (json_body([1, 3, 0, 224], []), {}),
    "data shorter than the shape (500)": (json_body([1, 3, 224, 224], [1.0] * 10), {}),
    "a negative dimension (500)": (json_body([1, 3, -224, 224], [1.0]), {}),
    "a 10 MB string as data (500)": (json_body([1, 3, 224, 224], "x" * 10_000_000), {}),
    "not JSON": (b"{{{", {}),
    "a gzip body": (b"\x1f\x8b" + b"\0" * 64, {"Content-Encoding": "gzip"}),
    "binary size not the shape's": (b'{"inputs":[{"name":"images","shape":[1,3,224,224],"datatype":"FP32",'
                                    b'"parameters":{"binary_data_size":8}}]}' + b"\0" * 8, {"binary": ""}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_gets_one_4xx_line_and_the_next_good_one_is_served(server, case):
    body, headers = BAD[case]
    if "binary" in headers:
        headers = {"Inference-Header-Content-Length": str(len(body) - 8)}
    status, answer = post(server, body, headers)
    assert 400 <= status < 500, answer
    message = json.loads(answer)["error"]
    assert "\n" not in message and "Traceback" not in message
    assert post(server, good_body())[0] == 200
    assert server.get("/v2/health/ready")[0] == 200
    assert set(live_descendants(server.process.pid)) >= server.children  # no model process died


@pytest.mark.parametrize("shape", [[1, 3, 100000, 100000], [1, 3, 2**62, 4], [1, 3, 0, 224], [1, 3, -224, 224]])
def test_grpc_refuses_the_same_shapes(server, shape):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
    try:
        tensor = grpcclient.InferInput("images", [1, 3, 224, 224], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 3, 224, 224), np.float32))
        tensor.set_shape(shape)
        with pytest.raises(InferenceServerException, match="outside every profile"):
            client.infer(MODEL, [tensor])
        tensor.set_shape([1, 3, 224, 224])
        assert client.infer(MODEL, [tensor]).as_numpy("logits").shape == (1, 1000)
        assert client.is_server_ready() and client.is_model_ready(MODEL)
    finally:
        client.close()


def test_an_oversized_request_is_refused_by_its_declared_size_before_its_body(server):
    """A 4000x4000 tensor declared (192 MB): 413 at once, with none of the body sent."""
    with socket.create_connection(("127.0.0.1", server.http), timeout=10) as conn:
        started = time.monotonic()
        conn.sendall((f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {4000 * 4000 * 12}\r\n"
                      "Inference-Header-Content-Length: 100\r\n\r\n").encode())
        answer = b""
        while chunk := conn.recv(4096):  # headers and body may come in separate packets; the server then closes
            answer += chunk
        assert time.monotonic() - started < 2
    answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413") and "the largest this model serves" in answer
    assert "Connection: close" in answer


def test_chunked_bodies_and_the_generate_extension_are_refused(server):
    with socket.create_connection(("127.0.0.1", server.http), timeout=10) as conn:
        conn.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n0\r\n\r\n".encode())
        assert conn.recv(4096).startswith(b"HTTP/1.1 411")
    conn = http.client.HTTPConnection("127.0.0.1", server.http, timeout=10)
    conn.request("POST", f"/v2/models/{MODEL}/generate", body=b'{"images": [1]}')
    assert conn.getresponse().status == 404
    conn.close()
    assert post(server, good_body())[0] == 200


def test_the_metrics_endpoint_has_the_cores_and_ours(server):
    assert post(server, json_body([1, 3, 300, 400], [0.0] * (3 * 300 * 400)))[0] == 200
    assert post(server, json_body([1, 3, 224, 1000], [0.0]))[0] == 400
    status, text = server.get("/metrics", server.metrics)
    text = text.decode()
    assert status == 200 and "nv_inference_request_success" in text  # the Triton core's
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line.startswith("rsz_")}
    assert counts['rsz_requests_total{profile="p1"}'] >= 1  # 300x400 runs on the 224..416 profile
    assert counts['rsz_refused_requests_total{reason="outside_profiles"}'] >= 1
    assert counts['rsz_images_resized_total{policy="native"}'] == 0


def test_sigterm_drains_a_request_in_flight_closes_idle_connections_and_exits_0_in_10_s(server):
    idle = [http.client.HTTPConnection("127.0.0.1", server.http, timeout=30) for _ in range(4)]
    for conn in idle:  # served once, then kept alive and idle, as client libraries keep them
        assert post(server, good_body(), conn=conn)[0] == 200
    body = good_body()
    busy = socket.create_connection(("127.0.0.1", server.http), timeout=30)
    busy.sendall((f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                 + body[:1000])  # the request has started: the rest of its body is on its way
    time.sleep(0.3)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(OSError):  # new connections are refused
        socket.create_connection(("127.0.0.1", server.http), timeout=2).close()
    busy.sendall(body[1000:])
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer) < answer.find(b"\r\n\r\n") + 4 + _length(answer):
        chunk = busy.recv(1 << 16)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"logits"' in answer  # the one in flight completed
    for conn in idle:  # closed by the server: nothing more to read
        conn.sock.settimeout(5)
        assert conn.sock.recv(1) == b""
    code = server.process.wait(DRAIN_LIMIT_S + 5)
    seconds = time.monotonic() - started
    assert code == 0 and seconds <= DRAIN_LIMIT_S, (code, seconds, server.log.read_text())
    _assert_nothing_left(server)


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def _assert_nothing_left(server: Serve) -> None:
    """No process of the server left, and none of the shared memory files its processes used when ready."""
    from rsz_export.triton.liveness import alive

    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in server.children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in server.children if alive(pid)]
    assert server.shm and not [path for path in server.shm if path.exists()]


def test_sigkill_leaves_no_process_and_no_shared_memory(engines, tmp_path):
    running = Serve(engines, tmp_path / "stderr.txt")
    try:
        running.poll_ready()
        assert running.children  # the core and its model's process
        running.process.send_signal(signal.SIGKILL)  # serve alone, as `kill -9 PID` does
        running.process.wait(10)
        _assert_nothing_left(running)
    finally:
        running.kill()


