"""Writing predictions to ``--json PATH`` and ``--csv PATH`` while a run goes, so an interrupted run keeps what
it did and both files are always complete documents.

Each write replaces the whole file atomically (``artifacts.files.atomic_write_text``): a reader, or a run
killed at any instant, sees either the previous version or the new one, never half of one. Files are written
when the run starts (empty), then at most every ``interval_s`` seconds (or ``slowdown`` times as long as the last
write took, whichever is longer, which keeps large runs from spending their time rewriting), and when it ends,
interrupted or not. The JSON's ``complete`` says whether every image was attempted. The CSV is written before
the JSON, so whatever the JSON lists, the CSV lists too. ``-`` for the JSON means stdout, written once at the end.
"""

from __future__ import annotations

import csv
import io
import json
import time

CSV_FIELDS = ("source", "status", "original", "input", "preprocess", "resize", "engine", "backend", "profile",
              "batch", "top1_index", "top1_name", "top1_score", "latency_ms", "total_ms", "reason")
STDOUT = "-"


def csv_row(record: dict) -> dict:
    """One prediction or skipped image (their ``to_dict``) as a CSV row of ``CSV_FIELDS``."""
    row = {key: record.get(key, "") for key in CSV_FIELDS}
    row["status"] = "skipped" if "reason" in record else "ok"
    if record.get("top"):
        best = record["top"][0]
        row["top1_index"], row["top1_name"], row["top1_score"] = best["index"], best["name"], f"{best['score']:.6f}"
    for key in ("latency_ms", "total_ms"):
        if isinstance(row[key], float):
            row[key] = f"{row[key]:.3f}"
    return row


def to_csv(records: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_row(r) for r in records)
    return out.getvalue()


class ResultFiles:
    """The run's JSON and CSV files (either may be None), rewritten as results arrive. Use as a context manager:
    leaving it writes the final state, ``complete`` only when the block ended normally."""

    def __init__(self, json_path: str | None, csv_path: str | None, header: dict, interval_s: float = 0.5,
                 slowdown: float = 10.0):
        self.json_path, self.csv_path, self.header = json_path, csv_path, header
        self.interval_s, self.slowdown = interval_s, slowdown
        self.records: list[dict] = []  # predictions and skipped images, in the order they were done
        self._written_at, self._write_s = 0.0, 0.0

    def __enter__(self) -> ResultFiles:
        self.write(complete=False)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.write(complete=exc_type is None)

    def add(self, outcome) -> None:
        """Record a Prediction or a Skipped; rewrite the files when due."""
        self.records.append(outcome.to_dict())
        if time.monotonic() - self._written_at >= max(self.interval_s, self.slowdown * self._write_s):
            self.write(complete=False)

    def document(self, complete: bool) -> dict:
        predictions = [r for r in self.records if "reason" not in r]
        skipped = [r for r in self.records if "reason" in r]
        counts = {"classified": len(predictions), "skipped": len(skipped)}
        return {**self.header, "complete": complete, **counts, "predictions": predictions, "skipped_files": skipped}

    def write(self, complete: bool) -> None:
        from rsz_export.artifacts.files import atomic_write_text

        start = time.monotonic()
        if self.csv_path:
            atomic_write_text(self.csv_path, to_csv(self.records))
        if self.json_path and self.json_path != STDOUT:
            atomic_write_text(self.json_path, json.dumps(self.document(complete), indent=2) + "\n")
        elif self.json_path == STDOUT and complete:
            print(json.dumps(self.document(complete), indent=2), flush=True)
        self._written_at = time.monotonic()
        self._write_s = self._written_at - start
