"""benchmarks/results/mutation-vm-2026-12-07*.json: mutation scores per module (make mutate, then
benchmarks/mutation_scores.py): the first pass, the run after the tests added for its survivors, and the final
run (every mutant of the measured modules, survivors re-run after the tests written for them)."""

import json
from pathlib import Path

from tests.doc_figures import Quote, Record, at

REPO = Path(__file__).parents[2]


def row(run: int, module: str) -> Quote:
    base = f"modules/{module}"
    return Quote("docs/testing.md", f"| {run} | `{module}` | {{}} | {{}} | {{}}% | {{}} | {{}} |",
                 (f"{base}/killed", lambda r: at(r, f"{base}/killed") + at(r, f"{base}/survived"),
                  lambda r: 100 * at(r, f"{base}/score"), f"{base}/no_tests", f"{base}/not_run"))


def record(run: int, file: str) -> Record:
    modules = json.loads((REPO / file).read_text())["modules"]
    return Record(file, tuple(row(run, m) for m, s in modules.items() if s["score"] is not None))


RECORDS = (record(1, "benchmarks/results/mutation-vm-2026-12-07-first-pass.json"),
           record(2, "benchmarks/results/mutation-vm-2026-12-07.json"),
           record(3, "benchmarks/results/mutation-vm-2026-12-07-final.json"))
