"""report: table order, JSON completeness, JUnit validity and escaping, exit-code policy."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import replace

from rsz_export.errors import EXIT_CHECK_FAILED, EXIT_OK
from rsz_export.parity import ParityStats
from rsz_export.shapes import Resolution
from rsz_export.validate.report import (
    CaseResult,
    InputResult,
    ValidationReport,
    exit_code,
    render_json,
    render_junit,
    render_table,
    worst_first,
)
from rsz_export.validate.tolerance import PRESETS, judge


def _stats(rel: float, max_abs: float, top1: float = 1.0, nonfinite: int = 0) -> ParityStats:
    return ParityStats(rows=2, max_abs=max_abs, mean_abs=max_abs / 10, rel_l2=rel, cosine=1 - rel, top1=top1,
                       top5=1.0, nonfinite=nonfinite)


def _case(engine: str, rel: float, max_abs: float, profiles=(0,), size=(224, 224), precision="fp32", **kw):
    stats = _stats(rel, max_abs, **kw)
    policy = PRESETS[precision]
    verdict = judge(stats, policy)
    return CaseResult("engine", engine, "onnxruntime", precision, tuple(profiles), Resolution(*size), 1,
                      "passed" if verdict.passed else "failed", stats,
                      (InputResult("astronaut", stats), InputResult("random0", stats)), policy, verdict.failures, 0.25)


def _report(*cases: CaseResult, skipped=()) -> ValidationReport:
    return ValidationReport("engines", tuple(cases), ("astronaut", "random0"), tuple(skipped), seconds=1.5)


def test_worst_first_puts_failures_and_closest_calls_on_top():
    near = _case("a", 9e-5, 1e-5)
    far_below = _case("b", 1e-7, 1e-6)
    failing = _case("c", 2e-3, 1e-2)
    refused = CaseResult("engine", "d", "tensorrt", "fp16", (1,), Resolution(300, 300), 1, "not-run",
                         failures=("not run: built for another GPU",))
    assert [c.engine for c in worst_first([far_below, near, failing, refused])] == ["d", "c", "a", "b"]


def test_table_names_failing_cases_and_summary():
    text = render_table(_report(_case("ort", 1e-6, 1e-5, profiles=(0, 1)), _case("ort", 3e-2, 0.5, size=(225, 301))))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["status", "stage", "engine"]
    assert lines[1].startswith("FAILED") and "225x301" in lines[1]
    assert "FAILED: engine ort p0 225x301 b1: relative L2 error 0.03 > rtol 0.0001" in text
    assert lines[-1].startswith("FAIL: 1 passed, 1 failed, 0 not run (3 in a JUnit report, which counts a size "
                                "once per profile that covers it)")


def test_the_summary_count_agrees_with_the_junit_report():
    report = _report(_case("ort", 1e-6, 1e-5, profiles=(0, 1)), _case("ort", 1e-6, 1e-5, size=(225, 301)))
    tests = ET.fromstring(render_junit(report)).get("tests")
    assert f"0 not run ({tests} in a JUnit report" in render_table(report).splitlines()[-1]
    single = _report(_case("ort", 1e-6, 1e-5))
    assert render_table(single).splitlines()[-1].startswith("PASS: 1 passed, 0 failed, 0 not run, 2 input(s)")
    in_turn = replace(single, inputs_per_size=1)  # a backbone's default: one input per size
    assert ", 1 of 2 input(s) per size, in turn, 1.5 s" in render_table(in_turn).splitlines()[-1]
    assert json.loads(render_json(in_turn))["inputs_per_size"] == 1
    assert json.loads(render_json(single))["inputs_per_size"] is None


def test_json_carries_every_statistic_and_infinity_as_text():
    bad = _case("ort", math.inf, math.inf, nonfinite=3, top1=0.0)
    data = json.loads(render_json(_report(bad, _case("ort", 1e-6, 1e-5), skipped=[("x.jpg", "0 bytes")])))
    case = data["cases"][0]
    assert case["stats"]["rel_l2"] == "inf" and case["stats"]["nonfinite"] == 3
    assert set(case["stats"]) >= {"max_abs", "mean_abs", "rel_l2", "cosine", "top1", "top5", "nonfinite", "needed"}
    assert case["inputs"][0]["name"] == "astronaut" and case["policy"]["precision"] == "fp32"
    assert data["passed"] is False and data["skipped_inputs"] == [{"path": "x.jpg", "reason": "0 bytes"}]


def test_junit_has_one_case_per_profile_and_escapes_text():
    shared = _case("ort<&>\"", 1e-6, 1e-5, profiles=(0, 1, 2))
    failing = _case("ort<&>\"", 5e-2, 0.9, profiles=(1,), size=(225, 301))
    refused = CaseResult("engine", "trt", "tensorrt", "fp16", (0,), Resolution(224, 224), 1, "not-run",
                         failures=("not run: engine <file> & manifest differ",))
    root = ET.fromstring(render_junit(_report(shared, failing, refused)))
    cases = root.findall(".//testcase")
    assert len(cases) == 5 and root.get("tests") == "5"
    assert root.get("failures") == "1" and root.get("errors") == "1"
    names = sorted(c.get("name") for c in cases if c.get("classname").endswith('ort<&>"'))
    assert names == ["profile0 224x224 batch1", "profile1 224x224 batch1", "profile1 225x301 batch1",
                     "profile2 224x224 batch1"]
    failure = root.find(".//failure")
    assert "relative L2 error 0.05 > rtol 0.0001" in failure.get("message") and "rel_l2=5.00e-02" in failure.text
    assert root.find(".//error").get("message") == "not run: engine <file> & manifest differ"


def test_exit_code_policy():
    assert exit_code(_report(_case("ort", 1e-6, 1e-5))) == EXIT_OK
    assert exit_code(_report(_case("ort", 1e-6, 1e-5), _case("ort", 1.0, 5.0))) == EXIT_CHECK_FAILED
    refused = CaseResult("engine", "trt", "tensorrt", "fp16", (0,), Resolution(224, 224), 1, "not-run",
                         failures=("not run",))
    assert exit_code(_report(refused)) == EXIT_CHECK_FAILED
