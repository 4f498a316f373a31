"""Per-module mutation scores from the last ``make mutate`` (mutmut 3's ``mutants/**/*.meta``), as JSON.

    python benchmarks/mutation_scores.py --json benchmarks/results/mutation-<host>-<date>.json

Score = mutants killed (a test failed, or the run timed out) over mutants tested (killed + survived); mutants
that no selected test reaches ("no tests") and those not run yet are counted apart, not in the score. Each
surviving mutant is listed by name (``mutmut show NAME`` prints its diff).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KILLED, SURVIVED = {1, 3, 36, 24, -24, 152, 255}, {0}
NO_TESTS, NOT_RUN = {5, 33}, {None}


def module_scores(mutants: Path) -> dict[str, dict]:
    """Module (dotted) -> counts, score and the names of the surviving mutants."""
    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        module = str(meta.relative_to(mutants)).removesuffix(".py.meta").replace("/", ".")
        killed = sum(code in KILLED for code in codes.values())
        survived = sorted(name for name, code in codes.items() if code in SURVIVED)
        out[module] = {
            "mutants": len(codes),
            "killed": killed,
            "survived": len(survived),
            "no_tests": sum(code in NO_TESTS for code in codes.values()),
            "not_run": sum(code in NOT_RUN for code in codes.values()),
            "other": sum(code not in KILLED | SURVIVED | NO_TESTS | NOT_RUN for code in codes.values()),
            "score": round(killed / (killed + len(survived)), 4) if killed + len(survived) else None,
            "survivors": survived,
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=REPO / "mutants")
    parser.add_argument("--json", type=Path, help="write the scores here")
    args = parser.parse_args()
    scores = module_scores(args.mutants)
    if not scores:
        print(f"no mutmut results under {args.mutants}: run make mutate first", file=sys.stderr)
        return 1
    from importlib.metadata import version

    record = {"date_utc": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "python": platform.python_version(), "mutmut": version("mutmut"),
              "modules": scores}
    for module, s in scores.items():
        score = "-" if s["score"] is None else f"{100 * s['score']:.1f}%"
        print(f"{module}: {s['killed']}/{s['killed'] + s['survived']} killed ({score}), "
              f"{s['no_tests']} without tests, {s['not_run']} not run")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
