"""benchmarks/results/mutation-vm-2026-12-07*.json: mutation scores per module (make mutate, then
benchmarks/mutation_scores.py): the first pass, the run after the tests added for its survivors, the final run
(every mutant of the measured modules, survivors re-run after the tests written for them) and run 4 (every
mutant of every listed module, likewise). Besides each run's table rows, docs/testing.md's counts of surviving
mutants, per module and per function, are checked against the survivors each file names."""

import json
from collections.abc import Callable
from pathlib import Path

from tests.doc_figures import Quote, Record, at

REPO = Path(__file__).parents[2]
FINAL = "benchmarks/results/mutation-vm-2026-12-07-final.json"
RUN4 = "benchmarks/results/mutation-vm-2026-12-07-run4.json"


def row(run: int, module: str) -> Quote:
    base = f"modules/{module}"
    return Quote("docs/testing.md", f"| {run} | `{module}` | {{}} | {{}} | {{}}% | {{}} | {{}} |",
                 (f"{base}/killed", lambda r: at(r, f"{base}/killed") + at(r, f"{base}/survived"),
                  lambda r: 100 * at(r, f"{base}/score"), f"{base}/no_tests", f"{base}/not_run"))


def survived(module: str, function: str = "") -> str | Callable[[dict], int]:
    """How many of ``module``'s mutants survived (those of one function when ``function`` is given: ``_kl``,
    ``TensorStats``)."""
    if not function:
        return f"modules/rsz_export.{module}/survived"
    return lambda r: sum(f"x{function}" in name or f"ǁ{function}ǁ" in name
                         for name in at(r, f"modules/rsz_export.{module}/survivors"))


def survivors(text: str, *values) -> Quote:
    return Quote("docs/testing.md", text, values)


def record(run: int, file: str, *quotes: Quote) -> Record:
    modules = json.loads((REPO / file).read_text())["modules"]
    return Record(file, tuple(row(run, m) for m, s in modules.items() if s["score"] is not None) + quotes)


RECORDS = (
    record(1, "benchmarks/results/mutation-vm-2026-12-07-first-pass.json"),
    record(2, "benchmarks/results/mutation-vm-2026-12-07.json"),
    record(3, FINAL,
           survivors("* `plan/routing` ({}): `_wanted`'s", survived("plan.routing")),
           survivors("* `model/calibration` ({}):\n  * `_kl`'s", survived("model.calibration")),
           survivors("* `artifacts/manifest` ({}): `save_manifest`'s", survived("artifacts.manifest")),
           survivors("* `plan/profiles` ({}): `default_profile_count`'s", survived("plan.profiles")),
           survivors("`artifacts/manifest` (12): run 3's {} above", survived("artifacts.manifest"))),
    record(4, RUN4,
           survivors("* `images/preprocess` ({}): `to_rgb`'s", survived("images.preprocess")),
           survivors("* `artifacts/manifest` ({}): run 3's", survived("artifacts.manifest")),
           survivors("* `model/calibration` ({}): run 3's above but the session's, now killed (`_kl` {}, `calibrate`'s "
                     "histogram for `minmax` {}, `calibration_tensors` {}, `entropy_bins` {}, `read_ranges` {}, "
                     "`write_ranges` {}, `TensorStats` {}),",
                     survived("model.calibration"), survived("model.calibration", "__kl__"),
                     survived("model.calibration", "_calibrate__"),
                     survived("model.calibration", "_calibration_tensors__"),
                     survived("model.calibration", "_entropy_bins__"), survived("model.calibration", "_read_ranges__"),
                     survived("model.calibration", "_write_ranges__"), survived("model.calibration", "TensorStats")),
           survivors("* `parity` ({}): those named for run 1", survived("parity")),
           survivors("* `plan/profiles` ({}) and `plan/routing` ({}): run 3's", survived("plan.profiles"),
                     survived("plan.routing"))),
)
