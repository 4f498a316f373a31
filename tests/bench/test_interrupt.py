"""bench interrupted keeps every complete row, in the JSON and the CSV alike."""

from __future__ import annotations

import csv
import json
import signal

from tests.helpers import assert_no_temp_files, start_cli, wait_for_line


def test_bench_interrupted_keeps_complete_rows(fast_engines, tmp_path):
    out_json, out_csv = tmp_path / "bench.json", tmp_path / "bench.csv"
    process = start_cli(
        "bench",
        str(fast_engines),
        "--sizes",
        "224,256",
        "--backends",
        "onnxruntime",
        "--no-static",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--json",
        str(out_json),
        "--csv",
        str(out_csv),
    )
    wait_for_line(process, "onnxruntime/dynamic batch 1 224x224")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (0, 130) and "Traceback" not in stderr, stderr  # 0: it finished first
    rows = json.loads(out_json.read_text())["rows"]
    with open(out_csv, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert rows and len(table) == len(rows)
    assert all(r["p50_ms"] > 0 for r in rows) and all(float(r["p50_ms"]) > 0 for r in table)
    assert_no_temp_files(tmp_path)
