"""The shared export cache, measured: a cold build of seeded random weights (export, added to the cache), a
build of the same weights into another folder (the export taken from the cache), and one with --no-cache
(exported again); wall time of each and the disk the folders take (a hard-linked file counted once). Writes
benchmarks/results/export-cache-<machine>-<date>.json.

Run: .venv/bin/python benchmarks/export_cache.py [--min 224 --max 256]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsz_export.artifacts.export_cache import CACHE_ENV  # noqa: E402
from rsz_export.artifacts.host import host_info, library_versions  # noqa: E402


def timed_build(folder: Path, out: str, extra: list[str], size: tuple[str, str]) -> tuple[float, str]:
    args = ["build", out, "--min", size[0], "--max", size[1], "--weights", "random", *extra]
    started = time.perf_counter()
    env = {**os.environ, CACHE_ENV: str(folder / "cache"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "rsz_export", *args], capture_output=True, text=True, cwd=folder,
                            env=env)
    if result.returncode != 0:
        raise SystemExit(f"rsz-export {' '.join(args)} failed:\n{result.stderr}")
    return time.perf_counter() - started, result.stderr


def disk_mb(*folders: Path) -> float:
    """Bytes of the files under ``folders``, each inode once (hard links share theirs), in MB."""
    seen: dict[tuple[int, int], int] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                st = path.stat()
                seen[(st.st_dev, st.st_ino)] = st.st_size
    return round(sum(seen.values()) / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--min", default="224")
    parser.add_argument("--max", default="256")
    args = parser.parse_args()
    size = (args.min, args.max)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cold_s, _ = timed_build(folder, "a", [], size)
        cached_s, log = timed_build(folder, "b", [], size)
        assert "reusing the export cached in" in log, log
        no_cache_s, log = timed_build(folder, "c", ["--no-cache"], size)
        assert "exporting ResNet-50" in log, log
        onnx = {name: next((folder / name).glob("model-*.onnx")) for name in "abc"}
        entry = next((folder / "cache").glob("*.onnx"))
        record = {
            "date": dt.date.today().isoformat(),
            "host": host_info(),
            "versions": library_versions(),
            "command": f"benchmarks/export_cache.py --min {args.min} --max {args.max}",
            "cold_build_s": round(cold_s, 1),
            "build_from_cache_s": round(cached_s, 1),
            "build_no_cache_s": round(no_cache_s, 1),
            "speedup_from_cache": round(no_cache_s / cached_s, 2),
            "onnx_mb": round(onnx["a"].stat().st_size / 1e6, 1),
            "disk_mb_a": disk_mb(folder / "a"),
            "disk_mb_a_and_b": disk_mb(folder / "a", folder / "b"),
            "disk_mb_c": disk_mb(folder / "c"),
            "disk_mb_cache_and_a_and_b": disk_mb(folder / "cache", folder / "a", folder / "b"),
            "b_onnx_is_the_cache_entry": onnx["b"].stat().st_ino == entry.stat().st_ino,
        }
    out = ROOT / "benchmarks" / "results" / f"export-cache-{record['host']['hostname']}-{record['date']}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
