"""``rsz-export serve`` against the in-process runtime on the same engine: latency at concurrency 1, throughput at 4.

Usage:
    PYTHONPATH=. python benchmarks/serve_latency.py [ENGINES_DIR] [--size 224] [--rounds 7] [--calls 15]
        [--requests 40] [--json benchmarks/results/serve-latency-<host>-<date>.json]

Targets: at concurrency 1 and 224x224, serve's p50 latency seen by tritonclient within 15% of the in-process
runtime's (``Session.infer``: what ``predict`` runs once an image is a tensor); at concurrency 4, serve's
throughput at least 0.95x the in-process runtime's with the same engines and threads.

How it is fair: the server runs as a user runs it (``rsz-export serve`` in its own process, the client here); the
in-process side is a ``Session`` on the same engine files in this process. Each comparison uses one setting for
both sides: latency, one engine instance (``--instances 1`` / ``workers=1``) with every usable core as ONNX Runtime
threads; throughput, ``--instances W`` / ``workers=W`` engines with ``T`` threads each (default: one engine per
core, one thread each), driven by 4 client threads. The two sides alternate in rounds (each round: the
in-process window, then the served one) while the other side is idle, and the ratio is the median of the per-round
ratios, so a slow spell of the machine falls on both. The served time includes tritonclient's encoding, the
HTTP/gRPC transport, Triton's queue and PyTriton's hand-over to this process's runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LATENCY_TARGET = 1.15
THROUGHPUT_TARGET = 0.95
CONCURRENCY = 4
MODEL = "resnet50"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_serve(start: list[str], engines: str, ports: tuple[int, int], instances: int, threads: int,
                ready) -> subprocess.Popen:
    """``rsz-export serve`` (``python START ...``) in a session of its own on the (HTTP, gRPC) ``ports``, returned
    once ``ready(client)`` holds for an HTTP client; SystemExit when it exits or is not ready within 180 s."""
    import tritonclient.http as http

    command = [sys.executable, *start, "-q", "serve", engines, "--http-port", str(ports[0]), "--grpc-port",
               str(ports[1]), "--instances", str(instances), "--threads", str(threads)]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               start_new_session=True)
    deadline = time.monotonic() + 180
    with http.InferenceServerClient(f"127.0.0.1:{ports[0]}") as probe:
        while True:
            try:
                if ready(probe):
                    return process
            except Exception:  # not listening yet
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start (exit {process.poll()})")
            time.sleep(0.2)


class Served:
    """``rsz-export serve`` in a subprocess for the life of a ``with`` block; clients made per thread."""

    def __init__(self, engines: str, instances: int, threads: int, protocol: str):
        self.engines, self.instances, self.threads, self.protocol = engines, instances, threads, protocol
        self.http, self.grpc = free_port(), free_port()

    def __enter__(self) -> Served:
        import tritonclient.http as http

        self.process = start_serve(["-m", "rsz_export"], self.engines, (self.http, self.grpc), self.instances,
                                   self.threads, lambda probe: probe.is_model_ready(MODEL))
        with http.InferenceServerClient(f"127.0.0.1:{self.http}") as probe:
            self.server_version = probe.get_server_metadata()["version"]
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(120)

    def caller(self):
        """A function feed -> logits over one client of its own (tritonclient clients are not shared)."""
        if self.protocol == "grpc":
            import tritonclient.grpc as module

            client = module.InferenceServerClient(f"127.0.0.1:{self.grpc}")
        else:
            import tritonclient.http as module

            client = module.InferenceServerClient(f"127.0.0.1:{self.http}")

        def call(feed):
            tensor = module.InferInput("images", list(feed.shape), "FP32")
            tensor.set_data_from_numpy(feed)
            return client.infer(MODEL, [tensor]).as_numpy("logits")

        return call


def in_process_caller(session, size: int):
    from rsz_export.serve.preprocess_policy import ModelInput

    chosen = session.route(size, size)
    return lambda feed: session.infer([ModelInput((size, size), chosen, "none", feed)])[0]


def timed_calls(call, feed, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call(feed)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def throughput(make_call, feed, requests: int) -> float:
    """Requests per second with CONCURRENCY threads sharing ``requests``, each with a caller made in its own thread
    (tritonclient's HTTP client belongs to the thread that made it), warmed, then started together."""
    each = requests // CONCURRENCY
    ready = threading.Barrier(CONCURRENCY + 1)

    def worker(_) -> None:
        call = make_call()
        call(feed)  # warm: connection open, shape seen
        ready.wait()
        timed_calls(call, feed, each)

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        running = [pool.submit(worker, i) for i in range(CONCURRENCY)]
        ready.wait()
        start = time.perf_counter()
        for future in running:
            future.result()
    return each * CONCURRENCY / (time.perf_counter() - start)


def latency_rounds(engines, size, threads, rounds, calls, protocol) -> dict:
    from rsz_export.serve.session import Session

    feed = _feed(size)
    local_rounds, served_rounds, local_all, served_all = [], [], [], []
    with Session(engines, threads=threads) as session, Served(engines, 1, threads, protocol) as served:
        local, remote = in_process_caller(session, size), served.caller()
        timed_calls(local, feed, 3), timed_calls(remote, feed, 3)
        for _ in range(rounds):
            own, theirs = timed_calls(local, feed, calls), timed_calls(remote, feed, calls)
            local_all += own
            served_all += theirs
            local_rounds.append(statistics.median(own))
            served_rounds.append(statistics.median(theirs))
    from rsz_export.bench.stats import paired_ratio

    ratio = paired_ratio(served_rounds, local_rounds)
    return {"protocol": protocol, "tritonserver": served.server_version, "size": size, "instances": 1,
            "threads": threads, "calls": len(local_all),
            "in_process_p50_ms": statistics.median(local_all), "served_p50_ms": statistics.median(served_all),
            "ratio": ratio, "target": LATENCY_TARGET, "met": ratio <= LATENCY_TARGET}


def throughput_rounds(engines, size, instances, threads, rounds, requests, protocol) -> dict:
    from rsz_export.bench.stats import paired_ratio
    from rsz_export.serve.session import Session

    feed = _feed(size)
    local_rounds, served_rounds = [], []
    with Session(engines, threads=threads, workers=instances) as session, \
            Served(engines, instances, threads, protocol) as served:
        for _ in range(rounds):
            local_rounds.append(throughput(lambda: in_process_caller(session, size), feed, requests))
            served_rounds.append(throughput(served.caller, feed, requests))
    ratio = paired_ratio(served_rounds, local_rounds)
    return {"protocol": protocol, "size": size, "concurrency": CONCURRENCY, "instances": instances,
            "threads": threads, "requests_per_round": requests, "rounds": rounds,
            "in_process_ips": statistics.median(local_rounds), "served_ips": statistics.median(served_rounds),
            "ratio": ratio, "target": THROUGHPUT_TARGET, "met": ratio >= THROUGHPUT_TARGET}


def _feed(size: int):
    from rsz_export.images.preprocess import random_input
    from rsz_export.shapes import Resolution

    return random_input(Resolution(size, size), seed=0, batch=1)


def serving_versions() -> dict:
    """PyTriton and tritonclient, which ``provenance()`` does not list (the server core's version is in each
latency row)."""
    from importlib.metadata import version

    return {"nvidia-pytriton": version("nvidia-pytriton"), "tritonclient": version("tritonclient")}


def engines_facts(engines: str) -> dict:
    """How the engines served were built (the manifest's command, backend, weights)."""
    from rsz_export.artifacts.manifest import load_manifest

    manifest = load_manifest(engines)
    return {"command": manifest.command, "backend": manifest.backend, "weights": manifest.weights.id,
            "engines": [e.name for e in manifest.engines]}


def main() -> int:
    from rsz_export.artifacts.host import usable_cpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines_dir", nargs="?", default="engines")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=15, help="Calls per side per latency round.")
    parser.add_argument("--requests", type=int, default=40, help="Requests per side per throughput round.")
    parser.add_argument("--instances", type=int, help="Throughput: engines (workers). Default: usable cores.")
    parser.add_argument("--protocols", default="http,grpc")
    parser.add_argument("--json")
    args = parser.parse_args()
    from rsz_export.artifacts.host import provenance

    cores = usable_cpus()
    instances = args.instances or cores
    threads_each = max(1, cores // instances)
    result = {"provenance": provenance(), "serving_versions": serving_versions(),
              "engines": {"dir": args.engines_dir, **engines_facts(args.engines_dir)},
              "load_average_before": os.getloadavg(), "latency": [], "throughput": []}
    for protocol in args.protocols.split(","):
        row = latency_rounds(args.engines_dir, args.size, cores, args.rounds, args.calls, protocol)
        result["latency"].append(row)
        print(f"{protocol} concurrency 1, {args.size}x{args.size}, {cores} threads: in-process p50 "
              f"{row['in_process_p50_ms']:.2f} ms, served p50 {row['served_p50_ms']:.2f} ms, ratio {row['ratio']:.3f} "
              f"(target <= {LATENCY_TARGET})", flush=True)
        row = throughput_rounds(args.engines_dir, args.size, instances, threads_each, args.rounds, args.requests,
                                protocol)
        result["throughput"].append(row)
        print(f"{protocol} concurrency {CONCURRENCY}, {instances} engine(s) x {threads_each} thread(s): in-process "
              f"{row['in_process_ips']:.2f}/s, served {row['served_ips']:.2f}/s, ratio {row['ratio']:.3f} "
              f"(target >= {THROUGHPUT_TARGET})", flush=True)
    result["load_average_after"] = os.getloadavg()  # other users of a shared machine slow both sides alike
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
