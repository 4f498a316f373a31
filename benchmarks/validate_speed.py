"""Time `rsz-export validate` over the default `build --min 224 --max 800` output (target: < 3 minutes on 2 cores).

Usage:
    python benchmarks/validate_speed.py [ENGINES_DIR] [--json PATH]

ENGINES_DIR defaults to ./engines; it is built first (`rsz-export build --min 224 --max 800 --weights random`)
when it holds no manifest. The validate run is a real subprocess, timed from start to exit, with the
command's own defaults (bundled photographs + 2 random inputs, every size of the shared grid, ONNX export
check then every engine). Prints one line with the wall time, and writes a JSON record with the machine,
library versions and date when --json is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 180.0


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "rsz_export", *args], capture_output=True, text=True, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", nargs="?", default="engines")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from rsz_export.artifacts.host import provenance

    engines = Path(args.engines)
    if not (engines / "manifest.json").is_file():
        print(f"building {engines} (224..800, random weights) first ...", file=sys.stderr)
        built = _cli("build", str(engines), "--min", "224", "--max", "800", "--weights", "random")
        if built.returncode != 0:
            print(built.stderr, file=sys.stderr)
            return built.returncode
    start = time.perf_counter()
    run = _cli("validate", str(engines), "--json", str(engines / "validate-bench.json"))
    seconds = time.perf_counter() - start
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr.strip()[-400:]
    verdict = "within" if seconds < TARGET_S else "OVER"
    print(f"rsz-export validate {engines}: {seconds:.1f} s wall ({verdict} the {TARGET_S:.0f} s target), "
          f"exit {run.returncode}, {os.cpu_count()} CPU(s); {summary}")
    if args.json_path:
        record = {
            "benchmark": "validate_speed",
            "seconds": round(seconds, 2),
            "target_seconds": TARGET_S,
            "exit_code": run.returncode,
            "summary": summary,
            **provenance(),
        }
        Path(args.json_path).write_text(json.dumps(record, indent=2) + "\n")
    return 0 if run.returncode == 0 and seconds < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
