"""benchmarks/results/serve-memory-vm-2026-12-07.json: serve's memory by the number of Triton model instances, with
the engines shared by the instances (now) and one session per instance (before) (benchmarks/serve_soak.py
--memory-only)."""

from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/serve-memory-vm-2026-12-07.json"


def cell(instances: int, shared: bool, field: str) -> str:
    return f"memory_per_instance[instances={instances},engines_shared={shared}]/{field}"


def grouped(path: str):
    """The two ``{}`` of a figure written with a thousands comma (``1,202``): thousands, then the rest."""
    return (lambda r: round(at(r, path)) // 1000, lambda r: round(at(r, path)) % 1000)


def row(label: str, shared: bool, field: str) -> tuple[str, tuple]:
    """A row of the table: 1, 2 and 4 instances; one session per instance, 4 instances take over 1,000 MiB,
    written with a thousands comma."""
    four = cell(4, shared, field)
    comma = not shared
    return (f"| {label} | {{}} MiB | {{}} MiB | {'{},{}' if comma else '{}'} MiB |",
            (cell(1, shared, field), cell(2, shared, field), *(grouped(four) if comma else (four,))))


def rows(label: str, field: str) -> Quote:
    """A measure's two rows, engines shared then one session per instance (labelled "the same, ..."), as one quote:
    the second row's label alone is the same in both measures."""
    (now, now_values), (before, before_values) = (row(label, True, field),
                                                  row("the same, one session per instance (before)", False, field))
    return Quote("docs/serving.md", f"{now} {before}", now_values + before_values)


RECORD = Record(FILE, (
    rows("`serve`'s resident memory, engines shared (now)", "serve_rss_mib"),
    rows("PSS of `serve` and its processes, shared (now)", "tree_pss_mib"),
    # What a second copy of the engine cost: one session per instance, 4 instances against 1, per added instance.
    Quote("docs/serving.md", "instead of a second copy of the engine (about {} MiB for ResNet-50 fp32)",
          (lambda r: (at(r, cell(4, False, "serve_rss_mib")) - at(r, cell(1, False, "serve_rss_mib"))) / 3,)),
))

RECORDS = (RECORD,)
