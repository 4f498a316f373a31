"""serve: ``rsz-export serve`` started once for the module (the CLI in its own process group, as from a terminal),
called with tritonclient over HTTP and gRPC: interface, logits against the in-process Session at every profile,
a bounded load run, bad requests, and an orderly stop on Ctrl-C (checked when the module's server is torn down).
Then the library's ``LocalServer`` in this process on the real ResNet-50 build.

Marked ``slow``: each server start and stop costs about 15 s (the Triton server core and its Python backend), so
the full suite (``make test``, CI) runs these and ``make check`` does not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton.triton", reason="the [serve] extra (nvidia-pytriton) is not installed")
httpclient = pytest.importorskip("tritonclient.http", reason="the [serve] extra (tritonclient[http]) is not installed")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="the [serve] extra (tritonclient[grpc]) is not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

from rsz_export.interface import SERVED_MODEL_NAME  # noqa: E402
from rsz_export.serve.preprocess_policy import ModelInput  # noqa: E402
from rsz_export.serve.session import Session  # noqa: E402
from tests.helpers import RANDOM_METADATA, make_plan, shared_memory_of, tiny_onnx  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MAX_BATCH = 4
SIZES = [(224, 224), (320, 256), (300, 416), (416, 352), (500, 350), (576, 576), (800, 600), (233, 799)]
"""Square and not; each of the plan's four profiles (bands up to 320, 416, 576, 800) gets at least one."""
STARTUP_S, STOP_S = 120, 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served_engines(tmp_path_factory) -> Path:
    """A real-interface stand-in (average pool, then a seeded [3, 1000] matrix: every class its own logit) built
    with ONNX Runtime over 224..800 (4 profiles) with batches of 1..4."""
    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.shapes import BatchRange

    out = tmp_path_factory.mktemp("served-engines")
    weights = np.random.default_rng(0).normal(size=(3, 1000)).astype(np.float32)
    model = tiny_onnx(out.parent / "served.onnx", metadata=RANDOM_METADATA, weights=weights)
    plan = make_plan(224, 800, batch=BatchRange(1, MAX_BATCH, MAX_BATCH))
    build(BuildSpec(plan, out, backend="onnxruntime", onnx=model, command="pytest serve fixture"))
    return out


@pytest.fixture(scope="module")
def session(served_engines):
    with Session(served_engines, threads=1) as opened:
        yield opened


def group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes of a process group."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(stat.parent.name)
    return found


class Server:
    def __init__(self, engines: Path, log: Path):
        self.http, self.grpc, self.log = free_port(), free_port(), log
        command = [sys.executable, "-m", "rsz_export", "serve", str(engines), "--http-port", str(self.http),
                   "--grpc-port", str(self.grpc), "--instances", "2", "--threads", "1"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with log.open("w") as err:  # its own process group: the terminal's Ctrl-C reaches it and its children
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT,
                                            start_new_session=True)

    def wait_serving(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while "serving" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"serve did not start (exit {self.process.poll()}):\n{self.log.read_text()}")
            time.sleep(0.2)

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C as a terminal sends it (to the whole process group): (exit code, seconds to stop)."""
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            pytest.fail(f"serve did not stop within {STOP_S} s:\n{self.log.read_text()}")
        return code, time.monotonic() - started

    def http_client(self):
        return httpclient.InferenceServerClient(f"127.0.0.1:{self.http}")

    def grpc_client(self):
        return grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc}")


@pytest.fixture(scope="module")
def server(served_engines, tmp_path_factory):
    """``rsz-export serve`` on free ports; on teardown, Ctrl-C must stop it in order: exit 0, no traceback, no
    process of its group left, no shared memory left."""
    running = Server(served_engines, tmp_path_factory.mktemp("serve-log") / "stderr.txt")
    running.wait_serving()
    yield running
    shm = shared_memory_of(group_members(running.process.pid))  # the files its processes use, to be removed
    code, seconds = running.interrupt()
    stderr = running.log.read_text()
    assert code == 0, stderr
    assert "stopped" in stderr and "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 10  # the python backend's stubs exit just after the server core
    while group_members(running.process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_members(running.process.pid)
    assert shm and not [path for path in shm if path.exists()]
    assert seconds < 30


def infer(client, module, images: np.ndarray, name: str = "images", datatype: str = "FP32"):
    tensor = module.InferInput(name, list(images.shape), datatype)
    tensor.set_data_from_numpy(images)
    return client.infer(SERVED_MODEL_NAME, [tensor]).as_numpy("logits")


def reference(session: Session, images: np.ndarray) -> np.ndarray:
    """The in-process logits: the Session's route for the size, the batch run as predict runs it."""
    chosen = session.route(*images.shape[2:])
    return session.infer([ModelInput(images.shape[2:], chosen, "none", images[i : i + 1])
                          for i in range(len(images))])[0]


def random_images(batch: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, h, w)).astype(np.float32)


def test_metadata_and_config_give_the_repository_names_and_shapes(server):
    with server.http_client() as http:
        assert http.is_server_live() and http.is_model_ready(SERVED_MODEL_NAME)
        meta = http.get_model_metadata(SERVED_MODEL_NAME)
        config = http.get_model_config(SERVED_MODEL_NAME)
        stats = http.get_inference_statistics(SERVED_MODEL_NAME)  # the statistics extension is open to clients
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000]}]
    assert config["max_batch_size"] == MAX_BATCH and "dynamic_batching" in config
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [("images", "TYPE_FP32", [3, -1, -1])]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [("logits", "TYPE_FP32", [1000])]
    assert stats["model_stats"][0]["name"] == SERVED_MODEL_NAME
    grpc = server.grpc_client()
    try:
        grpc_meta = grpc.get_model_metadata(SERVED_MODEL_NAME, as_json=True)
        assert grpc.get_model_config(SERVED_MODEL_NAME, as_json=True)["config"]["max_batch_size"] == MAX_BATCH
    finally:
        grpc.close()
    assert [(t["name"], t["shape"]) for t in grpc_meta["inputs"]] == [("images", ["-1", "3", "-1", "-1"])]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_logits_match_the_session_at_mixed_sizes_on_every_profile(server, session, protocol):
    module = httpclient if protocol == "http" else grpcclient
    client = server.http_client() if protocol == "http" else server.grpc_client()
    profiles = set()
    try:
        for i, (h, w) in enumerate(SIZES):
            images = random_images(1 + i % MAX_BATCH, h, w, seed=i)
            np.testing.assert_allclose(infer(client, module, images), reference(session, images),
                                       rtol=1e-5, atol=1e-5)
            profiles.add(session.route(h, w).profile)
    finally:
        client.close()
    assert profiles == {0, 1, 2, 3}


def test_logits_of_a_photo_match_predicts(server, session):
    """A bundled photograph prepared as predict prepares it (native policy), sent as a tensor."""
    from rsz_export.images.loading import load_rgb

    photo = ROOT / "rsz_export" / "data" / "images" / "chelsea.jpg"
    prepared = session.prepare(load_rgb(photo))
    with server.http_client() as http:
        served = infer(http, httpclient, prepared.array)
    np.testing.assert_allclose(served, session.infer([prepared])[0], rtol=1e-5, atol=1e-5)


def test_a_load_run_of_200_requests_at_concurrency_4_has_no_errors(server, session):
    inputs = [random_images(1 + i % 2, *SIZES[i % 4], seed=100 + i) for i in range(8)]
    expected = [reference(session, images) for images in inputs]

    def worker(offset: int) -> int:
        wrong = 0
        with server.http_client() as http:
            for i in range(offset, 200, 4):
                wrong += not np.allclose(infer(http, httpclient, inputs[i % 8]), expected[i % 8], 1e-5, 1e-5)
        return wrong

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(worker, range(4))) == 0  # an error response would raise in its worker
    with server.http_client() as http:
        stats = http.get_inference_statistics(SERVED_MODEL_NAME)["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] >= 200


def raw_request(client, module, shape, datatype, data: np.ndarray, name="images"):
    """A request whose declared shape and data may disagree (tritonclient checks them; the server must too)."""
    tensor = module.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    tensor.set_shape(list(shape))
    return client.infer(SERVED_MODEL_NAME, [tensor])


BAD_REQUESTS = {
    "float64": (lambda: np.zeros((1, 3, 224, 224), np.float64), "FP64", None, "data-type"),
    "1 channel": (lambda: np.zeros((1, 1, 224, 224), np.float32), "FP32", None, "unexpected shape"),
    "4 channels": (lambda: np.zeros((1, 4, 224, 224), np.float32), "FP32", None, "unexpected shape"),
    "too small": (lambda: np.zeros((1, 3, 200, 224), np.float32), "FP32", None, "outside every profile"),
    "too long": (lambda: np.zeros((1, 3, 224, 1000), np.float32), "FP32", None, "outside every profile"),
    "oversized payload": (lambda: np.zeros((1, 3, 1500, 1500), np.float32), "FP32", None, "outside every profile"),
    "more bytes than the shape": (lambda: np.zeros((1, 3, 224, 260), np.float32), "FP32", (1, 3, 224, 224), "size"),
    "batch over the max": (lambda: np.zeros((MAX_BATCH + 1, 3, 224, 224), np.float32), "FP32", None, "batch-size"),
    "unknown input": (lambda: np.zeros((1, 3, 224, 224), np.float32), "FP32", None, "unexpected inference input"),
}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_errors_and_the_server_keeps_serving(server, session, protocol):
    module = httpclient if protocol == "http" else grpcclient
    client = server.http_client() if protocol == "http" else server.grpc_client()
    good = random_images(1, 256, 288, seed=7)
    try:
        for case, (make, datatype, shape, message) in BAD_REQUESTS.items():
            data = make()
            name = "pixels" if case == "unknown input" else "images"
            with pytest.raises(InferenceServerException, match=message):
                raw_request(client, module, shape or data.shape, datatype, data, name)
            np.testing.assert_allclose(infer(client, module, good), reference(session, good), rtol=1e-5, atol=1e-5)
        with pytest.raises(InferenceServerException, match="expected 1 inputs but got 0"):
            client.infer(SERVED_MODEL_NAME, [])  # the input missing altogether
        assert client.is_model_ready(SERVED_MODEL_NAME)
    finally:
        client.close()
    assert "refused a request" in server.log.read_text()  # one line per refused request, no traceback


def test_the_real_network_served_in_process_matches_the_session(small_engines_dir):
    """The library server on the 224..288 ResNet-50 build (batch 1: the batch is part of the request, [1,3,-1,-1])."""
    from rsz_export.triton.server import LocalServer
    from rsz_export.triton.spec import ServeSpec

    spec = ServeSpec(small_engines_dir, http_port=free_port(), grpc_port=free_port(), threads=2)
    refused = []
    with Session(small_engines_dir, threads=2) as in_process, LocalServer(spec, log=refused.append) as server:
        assert "no Triton batching" in server.describe()[1]
        http = httpclient.InferenceServerClient(f"127.0.0.1:{spec.http_port}")
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{spec.grpc_port}")
        try:
            config = http.get_model_config(SERVED_MODEL_NAME)
            assert (config["max_batch_size"], config["input"][0]["dims"]) == (0, [1, 3, -1, -1])
            for (h, w), client, module in [((224, 224), http, httpclient), ((288, 240), grpc, grpcclient)]:
                images = random_images(1, h, w, seed=h)
                np.testing.assert_allclose(infer(client, module, images), reference(in_process, images),
                                           rtol=1e-4, atol=1e-4)
            with pytest.raises(InferenceServerException, match="outside every profile"):
                infer(http, httpclient, random_images(1, 224, 320, seed=0))
        finally:
            http.close()
            grpc.close()
    assert len(refused) == 1
