"""benchmarks/results/serve-latency-vm-2026-12-02.json: serve against in-process (benchmarks/serve_latency.py)."""

from tests.doc_figures import Quote, Record

FILE = "benchmarks/results/serve-latency-vm-2026-12-02.json"


def latency(protocol: str, name: str) -> Quote:
    item = f"latency[protocol={protocol}]"
    return Quote("docs/serving.md", f"| p50 latency, concurrency 1, {name} | {{}} ms | {{}} ms | {{}} | <= {{}} |",
                 tuple(f"{item}/{k}" for k in ("in_process_p50_ms", "served_p50_ms", "ratio", "target")))


def throughput(protocol: str, name: str) -> Quote:
    item = f"throughput[protocol={protocol}]"
    return Quote("docs/serving.md", f"| throughput, concurrency 4, {name} | {{}} /s | {{}} /s | {{}} | >= {{}} |",
                 tuple(f"{item}/{k}" for k in ("in_process_ips", "served_ips", "ratio", "target")))


RECORD = Record(FILE, (
    latency("http", "HTTP"), latency("grpc", "gRPC"), throughput("http", "HTTP"), throughput("grpc", "gRPC"),
    Quote("docs/serving.md", "on a quiet machine (load average {} before the run)", ("load_average_before/0",)),
    Quote("README.md", "p50 latency at concurrency 1 is {}x (HTTP) and {}x (gRPC) the in-process one, throughput at "
          "concurrency 4 {}x and {}x", ("latency[protocol=http]/ratio", "latency[protocol=grpc]/ratio",
                                        "throughput[protocol=http]/ratio", "throughput[protocol=grpc]/ratio")),
))

RECORDS = (RECORD,)
