"""benchmarks/results/serve-front-vm-2026-12-07.json: what serve's request-checking front adds to a request, against
the core behind it (benchmarks/serve_front.py)."""

from tests.doc_figures import Quote, Record

FILE = "benchmarks/results/serve-front-vm-2026-12-07.json"


def row(size: int, body: str, field: str) -> str:
    return f"rows[size={size},body={body}]/{field}"


RECORD = Record(FILE, (
    Quote("docs/serving.md", "({} rounds of {} calls a side, concurrency 1",
          (row(224, "binary", "rounds"), row(224, "binary", "calls_per_round"))),
    Quote("docs/serving.md", "while other work ran on it (load average {} before the run, so the figures are noisy;",
          ("load_average_before/0",)),
    Quote("docs/serving.md", "at 224x224 a binary request's p50 was {} ms through the front against {} ms straight to "
          "the core (the median of the per-round differences: +{} ms), +{} ms at 480x480 and {} ms at 800x800",
          (row(224, "binary", "front_p50_ms"), row(224, "binary", "core_p50_ms"), row(224, "binary", "added_ms"),
           row(480, "binary", "added_ms"), row(800, "binary", "added_ms"))),
    Quote("docs/serving.md", "A JSON body costs more: at 224x224, {} ms against {} ms (+{} ms)",
          (row(224, "json", "front_p50_ms"), row(224, "json", "core_p50_ms"), row(224, "json", "added_ms"))),
))

RECORDS = (RECORD,)
