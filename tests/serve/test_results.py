"""serve.results: --json/--csv files that are complete documents at every moment of a run."""

from __future__ import annotations

import csv
import json

import pytest

from rsz_export.errors import IntegrityError
from rsz_export.serve.predict import Skipped
from rsz_export.serve.results import CSV_FIELDS, ResultFiles
from rsz_export.serve.session import Label, Prediction
from rsz_export.shapes import Resolution


def prediction(name: str) -> Prediction:
    return Prediction(source=name, original=(3000, 4000), input=Resolution(600, 800), engine="ort",
                      backend="onnxruntime", profile=3, top=(Label(2, "great white shark", 0.5),), latency_ms=1.25,
                      total_ms=40.0, preprocess="fit", resize="shrink", batch=2)


def read(json_path, csv_path):
    document = json.loads(json_path.read_text())
    with open(csv_path, newline="") as handle:
        return document, list(csv.DictReader(handle))


def test_files_are_valid_from_the_start_and_follow_the_run(tmp_path):
    json_path, csv_path = tmp_path / "out" / "p.json", tmp_path / "p.csv"
    with ResultFiles(str(json_path), str(csv_path), {"engines": "e", "images": 3}, 0, 0) as files:
        document, rows = read(json_path, csv_path)
        assert (document["complete"], document["predictions"], rows) == (False, [], [])
        files.add(prediction("a.jpg"))
        files.add(Skipped("b.png", "cannot read image b.png", False, IntegrityError("cannot read image b.png")))
        document, rows = read(json_path, csv_path)
        assert not document["complete"] and (document["classified"], document["skipped"]) == (1, 1)
        assert [r["source"] for r in rows] == ["a.jpg", "b.png"] and list(rows[0]) == list(CSV_FIELDS)
    document, rows = read(json_path, csv_path)
    assert document["complete"] and document["engines"] == "e" and document["skipped_files"][0]["source"] == "b.png"
    assert document["predictions"][0]["input"] == "600x800" and document["predictions"][0]["resize"] == "shrink"
    assert rows[0]["top1_name"] == "great white shark" and rows[0]["original"] == "3000x4000"
    assert (rows[1]["status"], rows[1]["reason"], rows[1]["input"]) == ("skipped", "cannot read image b.png", "")


def test_an_interrupted_run_keeps_what_it_did_and_says_it_is_incomplete(tmp_path):
    json_path, csv_path = tmp_path / "p.json", tmp_path / "p.csv"
    with pytest.raises(KeyboardInterrupt), ResultFiles(str(json_path), str(csv_path), {}, interval_s=3600) as files:
        files.add(prediction("a.jpg"))  # not yet written: the interval has not passed
        assert json.loads(json_path.read_text())["predictions"] == []
        files.add(prediction("b.jpg"))
        raise KeyboardInterrupt
    document, rows = read(json_path, csv_path)
    assert not document["complete"] and [p["source"] for p in document["predictions"]] == ["a.jpg", "b.jpg"]
    assert len(rows) == 2 and not list(tmp_path.glob("*.tmp"))


def test_json_to_stdout_is_written_once_at_the_end(capsys):
    with ResultFiles("-", None, {"images": 1}) as files:
        files.add(prediction("a.jpg"))
        assert capsys.readouterr().out == ""
    assert json.loads(capsys.readouterr().out)["predictions"][0]["source"] == "a.jpg"
