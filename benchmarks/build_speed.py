"""Build speed targets on this machine: `rsz-export --help` < 0.5 s, cold `build --min 224 --max 800` < 60 s,
a rerun that reuses everything < 3 s. Writes benchmarks/results/build-speed-<machine>-<date>.json.

Run: .venv/bin/python benchmarks/build_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsz_export.artifacts.host import host_info, library_versions  # noqa: E402


def timed(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rsz_export", *args], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"rsz-export {' '.join(args)} failed:\n{result.stderr}")
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    help_s = [timed(["--help"])[0] for _ in range(args.repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "engines")
        cold_s, _ = timed(["build", out, "--min", "224", "--max", "800"])
        rerun = [timed(["build", out, "--min", "224", "--max", "800"]) for _ in range(args.repeats)]
    assert all(r.stdout.startswith("reused") for _, r in rerun)
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "host": host_info(),
        "versions": library_versions(),
        "help_s_median": round(statistics.median(help_s), 3),
        "cold_build_s": round(cold_s, 1),
        "rerun_s_median": round(statistics.median(t for t, _ in rerun), 3),
        "targets": {"help_s": 0.5, "cold_build_s": 60, "rerun_s": 3},
    }
    name = f"build-speed-{record['host']['hostname']}-{record['date']}.json"
    (ROOT / "benchmarks" / "results" / name).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("help_s_median", "cold_build_s", "rerun_s_median")}))


if __name__ == "__main__":
    main()
