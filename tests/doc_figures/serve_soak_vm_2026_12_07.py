"""benchmarks/results/serve-soak-vm-2026-12-07.json: serve under a long mixed load, its memory and its stop
(benchmarks/serve_soak.py)."""

from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/serve-soak-vm-2026-12-07.json"
SOAK = "soak"


def grouped(value):
    """The two ``{}`` of a figure written with a thousands comma (``2,200``): thousands, then the rest."""
    return (lambda r: round(value(r)) // 1000, lambda r: round(value(r)) % 1000)


def own_pss(point: str, process: str) -> str:
    return f"{SOAK}/pss_mib_by_process/{point}/{process}"


def table_row(label: str, cells: str, values: tuple) -> Quote:
    return Quote("docs/serving.md", f"| {label} | {cells} |", values)


RECORD = Record(FILE, (
    Quote("docs/serving.md", "while other work ran on it, load average {} before and after:",
          ("load_average_before/0",)),
    Quote("docs/serving.md", "{} warm-up requests then {},{} at concurrency {}",
          (f"{SOAK}/warm_up", *grouped(lambda r: at(r, f"{SOAK}/requests") - at(r, f"{SOAK}/warm_up")),
           f"{SOAK}/concurrency")),
    Quote("docs/serving.md", "binary tensors at {} sizes from 224x224 to 800x600 and batches 1 and 2, every {}th "
          "request a bad one", (lambda r: len(at(r, f"{SOAK}/sizes")), f"{SOAK}/bad_every")),
    table_row("errors (a good request failing, a bad one not getting 400)", "{} of {},{} | 0",
              (f"{SOAK}/errors", *grouped(lambda r: at(r, f"{SOAK}/requests")))),
    table_row("p50 / p99 latency", "{} ms / {} ms", (f"{SOAK}/p50_ms", f"{SOAK}/p99_ms")),
    table_row("PSS of serve and its processes after warm-up, after 300 more, at the end",
              "{} / {} / {} MiB | growth < {} MiB over the 300",
              (f"{SOAK}/pss_mib_after_warm_up", f"{SOAK}/pss_mib_after_300_more", f"{SOAK}/pss_mib_end",
               f"{SOAK}/growth_target_mib")),
    table_row("`serve`'s own PSS at the same points", "{} / {} / {} MiB",
              tuple(own_pss(point, "python") for point in ("200", "500", "end"))),
    table_row("SIGTERM with the four clients' connections open and idle: exit code, seconds", "{}, {} s | 0, <= {} s",
              (f"{SOAK}/sigterm_exit_code", f"{SOAK}/sigterm_seconds", f"{SOAK}/sigterm_target_s")),
    table_row("processes and `/dev/shm` files left after the stop", "{}, {}",
              (f"{SOAK}/processes_left", lambda r: len(at(r, f"{SOAK}/shm_left")))),
    Quote("docs/serving.md", "The Triton core's own memory still rises slowly ({} to {} MiB over the run above).",
          (own_pss("200", "tritonserver"), own_pss("end", "tritonserver"))),
    Quote("docs/serving.md", "The SIGTERM figure varies with the machine's load ({} to", (f"{SOAK}/sigterm_seconds",)),
))

UNCAPPED = Record("benchmarks/results/serve-soak-vm-2026-12-07-arenas-uncapped.json", (
    Quote("docs/serving.md", "arenas-uncapped.json`, load {}) saw `serve`'s own PSS go from {} to {} MiB and the\n"
          "whole tree from {} to {} MiB.", ("load_average_before/0", own_pss("200", "python"), own_pss("end", "python"),
                                           f"{SOAK}/pss_mib_after_warm_up", f"{SOAK}/pss_mib_end")),
))
"""The same soak without the malloc arena cap (serve's memory growth it shows)."""

RECORDS = (RECORD, UNCAPPED)
