"""validate interrupted (SIGINT, SIGTERM, SIGKILL) writes no partial report; two validate runs share a folder."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.helpers import SIGNALS, assert_interrupted, assert_no_temp_files, interrupt_all, start_cli


def _reports_absent_or_complete(folder: Path) -> None:
    report, junit = folder / "report.json", folder / "report.xml"
    if report.exists():
        assert json.loads(report.read_text())["cases"]
    if junit.exists():
        ET.parse(junit)

def test_validate_interrupted_writes_no_partial_report(fast_engines, tmp_path):
    processes = {}
    for sig in SIGNALS:
        folder = tmp_path / sig.name
        folder.mkdir()
        processes[sig] = start_cli(
            "validate", str(fast_engines), "--json", str(folder / "report.json"), "--junit", str(folder / "report.xml")
        )
    for sig, (code, stderr) in interrupt_all(processes, "grid point(s)", 0.5).items():
        assert_interrupted(sig, code, stderr)
        _reports_absent_or_complete(tmp_path / sig.name)
        assert not (tmp_path / sig.name / "report.json").exists()  # written only once the run is complete
    assert_no_temp_files(fast_engines)

def test_two_validate_runs_share_a_folder(fast_engines):
    quick = ["validate", str(fast_engines), "--replace-sizes", "--sizes", "224,240x256", "--random-inputs", "0"]
    first, second = start_cli(*quick), start_cli(*quick)
    for process in (first, second):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stdout + stderr
        assert "PASS" in stdout
