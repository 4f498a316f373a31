"""bench interrupted keeps every complete row, in the JSON and the CSV alike."""

from __future__ import annotations

import csv
import json
import signal

from tests.helpers import assert_no_temp_files, start_cli, wait_for_line


def test_bench_interrupted_keeps_complete_rows(tiny_engines, tmp_path):
    """Ctrl-C after the first of four points (each takes seconds): exit 130, and the JSON and CSV hold the points
    that finished, not all four (a run that ignored the signal would finish them all and exit 0)."""
    out_json, out_csv = tmp_path / "bench.json", tmp_path / "bench.csv"
    sizes = ["224", "256", "288", "320"]
    process = start_cli("bench", str(tiny_engines), "--sizes", ",".join(sizes), "--backends", "onnxruntime",
                        "--no-static", "--iters", "20000", "--warmup", "0", "--json", str(out_json),
                        "--csv", str(out_csv))
    wait_for_line(process, "onnxruntime/dynamic batch 1 224x224")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert "interrupted" in stderr
    rows = json.loads(out_json.read_text())["rows"]
    with open(out_csv, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert 1 <= len(rows) < len(sizes) and len(table) == len(rows)
    assert rows[0]["size"] == "224x224"
    assert all(r["p50_ms"] > 0 for r in rows) and all(float(r["p50_ms"]) > 0 for r in table)
    assert_no_temp_files(tmp_path)
