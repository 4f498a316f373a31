"""benchmarks/results/export-cache-vm-2026-12-07.json: a build from the per-user export cache against one without
it, and the disk the folders take (benchmarks/export_cache.py)."""

from tests.doc_figures import Quote, Record

FILE = "benchmarks/results/export-cache-vm-2026-12-07.json"

RECORD = Record(FILE, (
    Quote("README.md", "a second folder built from the cache took {} s against {} s with `--no-cache`",
          ("build_from_cache_s", "build_no_cache_s")),
    # Without the cache each folder holds its own ONNX: folder A plus folder C (built with --no-cache).
    Quote("README.md", "the two folders took {} MB together instead of {} MB (the {} MB ONNX stored once)",
          ("disk_mb_a_and_b", lambda r: r["disk_mb_a"] + r["disk_mb_c"], "onnx_mb")),
))

RECORDS = (RECORD,)
