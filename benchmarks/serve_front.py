"""What ``serve``'s checking front costs per request: the same requests sent through the front and straight to the
loopback Triton core behind it, alternately, at concurrency 1.

Usage:
    PYTHONPATH=. python benchmarks/serve_front.py [ENGINES_DIR] [--sizes 224,480,800] [--rounds 7] [--calls 20]
        [--json benchmarks/results/serve-front-<host>-<date>.json]

Without ENGINES_DIR a stand-in build (the real interface, 224..800, batch 1..4, a model that costs next to
nothing) is made in a temporary folder, so the front's own cost is most of what differs. The server runs in a
child process (``LocalServer`` as ``serve`` runs it) that reports its core's port; the client here sends binary
tensors with tritonclient over HTTP (kept-alive connections) and, at the first size, a JSON body (the front
parses and counts a JSON body's values). Each round times ``--calls`` calls through the front, then as many
straight to the core; the added cost is the median over rounds of the per-round difference of medians.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = "resnet50"


def stand_in_engines(folder: Path) -> Path:
    """The tests' stand-in (tests/helpers.tiny_onnx): average pool, then a seeded [3, 1000] matrix."""
    import numpy as np

    from rsz_export.pipeline.run import BuildSpec, build
    from rsz_export.plan.profiles import PlanSpec, plan_profiles
    from rsz_export.shapes import BatchRange
    from tests.helpers import RANDOM_METADATA, tiny_onnx

    weights = np.random.default_rng(0).normal(size=(3, 1000)).astype(np.float32)
    model = tiny_onnx(folder / "stand-in.onnx", metadata=RANDOM_METADATA, weights=weights)
    build(BuildSpec(plan_profiles(PlanSpec(224, 800, batch=BatchRange(1, 4, 4))), folder / "engines",
                    backend="onnxruntime", onnx=model, command="benchmarks/serve_front.py stand-in"))
    return folder / "engines"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_child(engines: str, instances: int) -> None:
    from rsz_export.triton.server import LocalServer
    from rsz_export.triton.spec import ServeSpec

    spec = ServeSpec(Path(engines), http_port=free_port(), grpc_port=free_port(), instances=instances, threads=1)
    with LocalServer(spec, log=lambda _m: None) as server:
        while not server.exposed.health.check()[1]:
            time.sleep(0.1)
        print(json.dumps({"front": spec.http_port, "core": server._core_ports["http"], "pid": os.getpid()}),
              flush=True)
        sys.stdin.read()


class Child:
    """The child server for a ``with`` block: ``ports`` {front, core}."""

    def __init__(self, engines: str, instances: int = 1):
        self.process = subprocess.Popen([sys.executable, __file__, engines, "--child", str(instances)], cwd=REPO,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": str(REPO)})
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the server did not start (exit {self.process.wait()})")
        self.ports = json.loads(line)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()  # the child stops in order
        self.process.wait(60)


def binary_caller(port: int, feed):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")

    def call():
        tensor = httpclient.InferInput("images", list(feed.shape), "FP32")
        tensor.set_data_from_numpy(feed)
        client.infer(MODEL, [tensor])

    return call


def json_caller(port: int, feed):
    body = json.dumps({"inputs": [{"name": "images", "shape": list(feed.shape), "datatype": "FP32",
                                   "data": feed.ravel().tolist()}]}).encode()  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call():
        conn.request("POST", f"/v2/models/{MODEL}/infer", body=body)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status

    return call


def timed(call, calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def compare(ports: dict, make, feed, rounds: int, calls: int) -> dict:
    front, core = make(ports["front"], feed), make(ports["core"], feed)
    timed(front, 3), timed(core, 3)
    fronts, cores = [], []
    for _ in range(rounds):
        fronts.append(timed(front, calls))
        cores.append(timed(core, calls))
    added = statistics.median(f - c for f, c in zip(fronts, cores))
    return {"front_p50_ms": statistics.median(fronts), "core_p50_ms": statistics.median(cores),
            "added_ms": added, "rounds": rounds, "calls_per_round": calls}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engines", nargs="?")
    parser.add_argument("--sizes", default="224,480,800")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.engines, args.child)
        return 0
    import numpy as np

    from benchmarks.serve_latency import serving_versions
    from rsz_export.artifacts.host import provenance

    with tempfile.TemporaryDirectory() as tmp:
        engines = args.engines or str(stand_in_engines(Path(tmp)))
        rows = []
        with Child(engines) as server:
            for i, size in enumerate(int(s) for s in args.sizes.split(",")):
                feed = np.random.default_rng(size).normal(size=(1, 3, size, size)).astype(np.float32)
                kinds = [("binary", binary_caller)] + ([("json", json_caller)] if i == 0 else [])
                for kind, make in kinds:
                    row = {"size": size, "body": kind} | compare(server.ports, make, feed, args.rounds, args.calls)
                    print(f"{size}x{size} {kind}: front {row['front_p50_ms']:.2f} ms, core {row['core_p50_ms']:.2f}"
                          f" ms, added {row['added_ms']:.2f} ms")
                    rows.append(row)
    result = {"provenance": provenance(), "serving_versions": serving_versions(),
              "engines": args.engines or "stand-in (benchmarks/serve_front.py)", "load_average_before":
              os.getloadavg(), "machine_shared": True, "rows": rows}  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
