"""benchmarks/results/int8-target-speed-amd-epyc-vnni-2c-2026-12-07.json: the default int8 engine and the
every-layer-int8 engine timed against fp32 by ``rsz-export bench --baseline`` on a quiet VNNI machine."""

from tests.doc_figures import Quote, Record, at

FILE = "benchmarks/results/int8-target-speed-amd-epyc-vnni-2c-2026-12-07.json"


def row(build: str, size: str, key: str):
    return lambda r: next(x[key] for x in at(r, f"{build}/rows") if x["size"] == size and x["variant"] != "baseline")


RECORD = Record(FILE, (
    Quote("docs/int8.md", "that default engine ran {}x fp32 at 224x224 ({} ms against {} ms) and {}x at "
          "800x800; every layer int8 {}x and {}x",
          (row("default", "224x224", "speedup"), row("default", "224x224", "p50_ms"),
           row("default", "224x224", "baseline_p50_ms"), row("default", "800x800", "speedup"),
           row("all_layers", "224x224", "speedup"), row("all_layers", "800x800", "speedup"))),
))

RECORDS = (RECORD,)
