"""A soak of ``rsz-export serve``: many requests at mixed sizes over kept-alive connections, bad ones among them,
then SIGTERM with the clients' connections still open; and the memory each model instance adds.

Usage:
    PYTHONPATH=. python benchmarks/serve_soak.py [ENGINES_DIR] [--requests 2000] [--concurrency 4]
        [--instances 2] [--memory-instances 1,2,4] [--json benchmarks/results/serve-soak-<host>-<date>.json]

Without ENGINES_DIR the stand-in build of ``serve_front.py`` is used (the real interface, 224..800, batch 1..4,
a model that costs next to nothing), so the soak exercises the server, not the network. The server runs as a user
runs it (``rsz-export serve`` in its own process, ``--instances`` model instances, one thread each); each client
thread has its own tritonclient HTTP client (binary tensors, kept-alive connection). Every 50th request is a bad
one (shape [1,3,2**62,4]) that must get a 400; any other outcome, and any error on a good request, counts as an
error. Memory is the proportional set (PSS) of ``serve`` and every process below it (the Triton core, the model's
backend processes), after a warm-up of 200 requests, after 300 more, and at the end. Targets (the serving issue's): no
error, growth under 64 MiB over the 300 requests after warm-up, SIGTERM to exit 0 within 10 s with nothing left.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = "resnet50"
SIZES = [(224, 224), (320, 256), (300, 416), (480, 640), (576, 576), (800, 600), (233, 799), (640, 480)]
BAD_EVERY = 50
WARM_UP = 200
GROWTH_WINDOW = 300
GROWTH_TARGET_MIB = 64
STOP_TARGET_S = 10


def tree_pss_mib(root: int) -> float:
    """Proportional memory (PSS: shared pages split among their users, so the tensors PyTriton passes through
    shared memory count once) of ``root`` and every process below it, MiB."""
    from rsz_export.triton.watchdog import descendants

    total = 0
    for pid in [root, *descendants(root)]:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def pss_by_process(root: int) -> dict[str, float]:
    """PSS per process name (summed over processes of the same name), MiB."""
    from rsz_export.triton.watchdog import descendants

    found: dict[str, float] = {}
    for pid in [root, *descendants(root)]:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            pss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                       if line.startswith("Pss:"))  # fmt: skip
        except (OSError, StopIteration):
            continue
        found[name] = round(found.get(name, 0.0) + pss / 1024, 1)
    return found


def own_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


UNSHARED = ("import sys; from rsz_export.backends.ort import OrtRunner; "
            "OrtRunner.thread_safe = property(lambda self: False); "
            "from rsz_export.cli import main; main(sys.argv[1:], prog_name='rsz-export')")
"""``rsz-export`` with every worker opening its own ONNX Runtime session, as before they were shared: the
comparison's other side (a change made here only, for the measurement)."""


class Serve:
    def __init__(self, engines: str, instances: int, unshared: bool = False):
        from benchmarks.serve_front import free_port
        from benchmarks.serve_latency import start_serve

        self.http, self.grpc = free_port(), free_port()
        start = ["-c", UNSHARED] if unshared else ["-m", "rsz_export"]
        self.process = start_serve(start, engines, (self.http, self.grpc), instances, 1,
                                   lambda probe: probe.is_server_ready())

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = -9
        return code, time.monotonic() - started


def make_requests(count: int):
    import numpy as np

    feeds = [np.random.default_rng(i).normal(size=(1 + i % 2, 3, h, w)).astype(np.float32)
             for i, (h, w) in enumerate(SIZES)]  # fmt: skip
    return [None if (i + 1) % BAD_EVERY == 0 else feeds[i % len(feeds)] for i in range(count)]


def client_loop(port: int, requests: list, offset: int, step: int, latencies: list, errors: list, done) -> None:
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    for i in range(offset, len(requests), step):
        feed = requests[i]
        tensor = httpclient.InferInput("images", [1, 3, 224, 224] if feed is None else list(feed.shape), "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float32) if feed is None else feed)
        if feed is None:
            tensor.set_shape([1, 3, 2**62, 4])
        started = time.perf_counter()
        try:
            logits = client.infer(MODEL, [tensor]).as_numpy("logits")
            if feed is None or logits.shape != (len(feed), 1000):
                errors.append(f"request {i}: an answer of shape {logits.shape}")
            else:
                latencies.append((time.perf_counter() - started) * 1000)
        except InferenceServerException as exc:
            if feed is not None or "400" not in str(exc.status()):
                errors.append(f"request {i}: {exc.status()} {str(exc)[:120]}")
        done(i)
    return client  # kept open: its connection stays alive and idle for the SIGTERM that follows


def soak(engines: str, requests: int, concurrency: int, instances: int) -> dict:
    server = Serve(engines, instances)
    pid = server.process.pid
    work = make_requests(WARM_UP + requests)
    marks, by_process, lock, finished = {}, {}, threading.Lock(), [0]

    def done(_i):
        with lock:
            finished[0] += 1
            if finished[0] in (WARM_UP, WARM_UP + GROWTH_WINDOW):
                marks[finished[0]] = tree_pss_mib(pid)
                by_process[finished[0]] = pss_by_process(pid)

    latencies, errors = [], []
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        clients = list(pool.map(lambda k: client_loop(server.http, work, k, concurrency, latencies, errors, done),
                                range(concurrency)))  # fmt: skip
    elapsed = time.perf_counter() - started
    end_mib = tree_pss_mib(pid)
    by_process["end"] = pss_by_process(pid)
    from rsz_export.triton.watchdog import descendants

    children = list(descendants(pid))
    shm_before = set(os.listdir("/dev/shm"))
    code, stop_s = server.stop()  # the clients' kept-alive connections are still open here
    time.sleep(1)
    from rsz_export.triton.liveness import alive

    left = [p for p in children if alive(p)]
    del clients
    latencies.sort()
    growth = marks.get(WARM_UP + GROWTH_WINDOW, end_mib) - marks.get(WARM_UP, end_mib)
    return {
        "requests": len(work), "warm_up": WARM_UP, "concurrency": concurrency, "instances": instances,
        "bad_every": BAD_EVERY, "sizes": SIZES, "seconds": elapsed, "errors": len(errors), "error_samples": errors[:5],
        "p50_ms": statistics.median(latencies), "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
        "pss_mib_after_warm_up": marks.get(WARM_UP),
        f"pss_mib_after_{GROWTH_WINDOW}_more": marks.get(WARM_UP + GROWTH_WINDOW),
        "pss_mib_end": end_mib, "growth_mib_over_300": growth, "growth_target_mib": GROWTH_TARGET_MIB,
        "pss_mib_by_process": by_process,
        "sigterm_exit_code": code, "sigterm_seconds": stop_s, "sigterm_target_s": STOP_TARGET_S,
        "processes_left": len(left), "shm_left": sorted(set(os.listdir("/dev/shm")) - shm_before),
        "met": not errors and growth < GROWTH_TARGET_MIB and code == 0 and stop_s <= STOP_TARGET_S and not left,
    }  # fmt: skip


def memory_per_instance(engines: str, counts: list[int]) -> list[dict]:
    """Resident memory of ``serve`` itself (which holds the engines) and PSS of its whole tree, per instance
    count, after 20 requests at 224x224 and 288x256 (inside any plan from 224), with the engines shared by the
    instances (as ``serve`` runs) and each instance opening its own (as before)."""
    import numpy as np

    feeds = [np.zeros((1, 3, 224, 224), np.float32), np.zeros((1, 3, 288, 256), np.float32)] * 10
    rows = []
    for unshared in (False, True):
        for count in counts:
            server = Serve(engines, count, unshared)
            client_loop(server.http, feeds, 0, 1, [], [], lambda _i: None)
            rows.append({"instances": count, "engines_shared": not unshared,
                         "serve_rss_mib": own_rss_mib(server.process.pid),
                         "tree_pss_mib": tree_pss_mib(server.process.pid)})  # fmt: skip
            server.stop()
    return rows


def _facts(engines: str | None) -> dict | str:
    if engines is None:
        return "stand-in (benchmarks/serve_front.py)"
    from benchmarks.serve_latency import engines_facts

    return {"dir": engines} | engines_facts(engines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engines", nargs="?")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--memory-instances", default="1,2,4")
    parser.add_argument("--memory-engines", help="measure memory per instance on this build (default: the soak's)")
    parser.add_argument("--memory-only", action="store_true", help="only the memory per instance")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    from benchmarks.serve_front import stand_in_engines
    from benchmarks.serve_latency import serving_versions
    from rsz_export.artifacts.host import provenance

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        engines = args.engines or str(stand_in_engines(Path(tmp)))
        result = None if args.memory_only else soak(engines, args.requests, args.concurrency, args.instances)
        print(json.dumps(result, indent=1))
        counts = [int(c) for c in args.memory_instances.split(",") if c]
        memory = memory_per_instance(args.memory_engines or engines, counts) if counts else []
        print(json.dumps(memory, indent=1))
    record = {"provenance": provenance(), "serving_versions": serving_versions(), "machine_shared": True,
              "engines": args.engines or "stand-in (benchmarks/serve_front.py)", "load_average_before": load_before,
              "memory_engines": _facts(args.memory_engines or args.engines),
              "load_average_after": os.getloadavg(), "soak": result, "memory_per_instance": memory}  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0 if result is None or result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
