"""Validation results: the data model, its renderings (table, JSON, JUnit XML) and the exit code. Pure."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from rsz_export.errors import EXIT_CHECK_FAILED, EXIT_OK
from rsz_export.parity import ParityStats
from rsz_export.shapes import Resolution
from rsz_export.validate.tolerance import TolerancePolicy

# --------------------------------------------------------------------------------------------------
# Validation results
# --------------------------------------------------------------------------------------------------

STAGES = ("export", "engine")
STATUSES = ("passed", "failed", "not-run")


@dataclass(frozen=True)
class InputResult:
    """One input's comparison inside a case."""

    name: str
    stats: ParityStats


@dataclass(frozen=True)
class CaseResult:
    """One checked (or refused) combination: stage x engine x profiles x size x batch, over every input.

    ``profiles`` lists every plan profile the case stands for: more than one when one engine serves
    several profiles with the same graph (ONNX Runtime), so the size was run once for all of them.
    """

    stage: str
    engine: str
    backend: str
    precision: str
    profiles: tuple[int, ...]
    size: Resolution
    batch: int
    status: str
    stats: ParityStats | None = None
    inputs: tuple[InputResult, ...] = ()
    policy: TolerancePolicy | None = None
    failures: tuple[str, ...] = ()
    seconds: float = 0.0
    output: str = "logits"
    """The output judged: ``logits``, or one feature map of a backbone (each map is a case of its own)."""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def label(self) -> str:
        """A short name that identifies the case in messages, e.g. ``engine ort-fp32 p0,1 225x301 b1``."""
        profiles = ",".join(str(p) for p in self.profiles)
        output = "" if self.output == "logits" else f" {self.output}"
        return f"{self.stage} {self.engine} p{profiles} {self.size} b{self.batch}{output}"


@dataclass(frozen=True)
class ValidationReport:
    """Everything one validate run found, in the order it was checked."""

    directory: str
    cases: tuple[CaseResult, ...]
    inputs: tuple[str, ...] = ()
    skipped_inputs: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    environment: dict = field(default_factory=dict)
    inputs_per_size: int | None = None
    """How many of ``inputs`` each size ran, in turn (None: all of them)."""

    @property
    def failed(self) -> tuple[CaseResult, ...]:
        return tuple(c for c in self.cases if not c.passed)


def severity(case: CaseResult) -> float:
    """How close a case is to (or how far beyond) its tolerance: >1 fails. Not-run cases rank first."""
    if case.status == "not-run" or case.stats is None:
        return math.inf
    s, p = case.stats, case.policy
    if s.nonfinite:
        return math.inf
    if p is None:
        return s.rel_l2
    ratios = [s.rel_l2 / p.rtol if p.rtol else (math.inf if s.rel_l2 else 0.0)]
    if p.atol is not None:
        ratios.append(s.max_abs / p.atol if p.atol else (math.inf if s.max_abs else 0.0))
    for value, bound in ((s.top1, p.min_top1), (s.cosine, p.min_cosine), (s.top1_in_top5, p.min_top5)):
        if value < bound:
            ratios.append(1.0 + (bound - value))
    return max(ratios)


def worst_first(cases: tuple[CaseResult, ...] | list[CaseResult]) -> list[CaseResult]:
    """Failures before passes; within each, the case nearest to (or furthest beyond) its tolerance first."""
    return sorted(cases, key=lambda c: (c.passed, -severity(c)))


# --------------------------------------------------------------------------------------------------
# Validation renderers
# --------------------------------------------------------------------------------------------------

_COLUMNS = ("status", "stage", "engine", "prec", "profiles", "size", "b", "n", "max_abs", "mean_abs", "rel_l2",
            "cos_min", "top1", "top5", "nan", "x_tol")


def _fmt(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2e}"


def _row(case: CaseResult) -> list[str]:
    head = [case.status.upper() if not case.passed else "ok", case.stage, case.engine, case.precision,
            ",".join(str(p) for p in case.profiles), str(case.size), str(case.batch)]
    s = case.stats
    if s is None:
        return head + ["0"] + ["-"] * (len(_COLUMNS) - len(head) - 1)
    return head + [str(s.rows), _fmt(s.max_abs), _fmt(s.mean_abs), _fmt(s.rel_l2), f"{s.cosine:.6f}",
                   f"{s.top1:.2f}", f"{s.top5:.2f}", str(s.nonfinite), f"{severity(case):.2g}"]


def render_table(report: ValidationReport, limit: int | None = None) -> str:
    """A fixed-width table, worst cases first, then each failure's reasons and a one-line summary."""
    cases = worst_first(report.cases)
    shown = cases if limit is None else cases[:limit]
    rows = [list(_COLUMNS)] + [_row(c) for c in shown]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if len(shown) < len(cases):
        lines.append(f"... {len(cases) - len(shown)} more passing case(s) in the JSON report")
    for case in report.failed:
        lines.append(f"{case.status.upper()}: {case.label}: {'; '.join(case.failures)}")
    lines.append(summary_line(report))
    return "\n".join(lines)


def summary_line(report: ValidationReport) -> str:
    passed = sum(c.passed for c in report.cases)
    not_run = sum(c.status == "not-run" for c in report.cases)
    failed = len(report.cases) - passed - not_run
    verdict = "PASS" if not report.failed else "FAIL"
    skipped = f", {len(report.skipped_inputs)} input file(s) skipped" if report.skipped_inputs else ""
    checks = profile_checks(report)
    junit = (f" ({checks} in a JUnit report, which counts a size once per profile that covers it)"
             if checks != len(report.cases) else "")
    count = len(report.inputs)
    per_size = (f"{count} input(s) per size" if report.inputs_per_size is None
                else f"{min(report.inputs_per_size, count)} of {count} input(s) per size, in turn")
    return (f"{verdict}: {passed} passed, {failed} failed, {not_run} not run{junit}, {per_size}{skipped}, "
            f"{report.seconds:.1f} s")


def profile_checks(report: ValidationReport) -> int:
    """Engine x profile x size checks: a case run once for several profiles (one engine, or the export, serving
    them all) counts once per profile. The JUnit report has one test case per check."""
    return sum(len(c.profiles) for c in report.cases)


def _json_number(value: float) -> float | str:
    """JSON has no infinity: non-finite numbers are written as the strings "inf", "-inf" or "nan"."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _stats_dict(stats: ParityStats | None) -> dict | None:
    if stats is None:
        return None
    data = stats.to_dict()
    data["needed"] = {k: _json_number(v) for k, v in data["needed"].items()}
    return {k: (_json_number(v) if isinstance(v, float) else v) for k, v in data.items()}


def case_dict(case: CaseResult) -> dict:
    """Every field and statistic of a case, JSON-ready (infinities written as the string "inf")."""
    return {
        "label": case.label,
        "stage": case.stage,
        "engine": case.engine,
        "backend": case.backend,
        "precision": case.precision,
        "profiles": list(case.profiles),
        "size": [case.size.h, case.size.w],
        "batch": case.batch,
        "output": case.output,
        "status": case.status,
        "failures": list(case.failures),
        "policy": case.policy.to_dict() if case.policy else None,
        "stats": _stats_dict(case.stats),
        "seconds": round(case.seconds, 3),
        "inputs": [{"name": i.name, "stats": _stats_dict(i.stats)} for i in case.inputs],
    }


def render_json(report: ValidationReport) -> str:
    """The whole report as JSON: summary, inputs, and every case with every statistic, worst first."""
    data = {
        "directory": report.directory,
        "passed": not report.failed,
        "summary": summary_line(report),
        "seconds": round(report.seconds, 3),
        "environment": report.environment,
        "inputs": list(report.inputs),
        "inputs_per_size": report.inputs_per_size,
        "skipped_inputs": [{"path": p, "reason": r} for p, r in report.skipped_inputs],
        "warnings": list(report.warnings),
        "cases": [case_dict(c) for c in worst_first(report.cases)],
    }
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _numbers(case: CaseResult) -> str:
    s = case.stats
    if s is None:
        return "not run"
    return (f"rows={s.rows} max_abs={_fmt(s.max_abs)} mean_abs={_fmt(s.mean_abs)} rel_l2={_fmt(s.rel_l2)} "
            f"cosine_min={s.cosine:.6f} top1={s.top1:.3f} top5={s.top5:.3f} nonfinite={s.nonfinite} "
            f"needed: rtol>={_fmt(s.needed_rtol)} atol>={_fmt(s.needed_atol)}"
            + (f" policy: {case.policy}" if case.policy else ""))


def _per_input(case: CaseResult) -> str:
    return "\n".join(f"  {i.name}: rel_l2={_fmt(i.stats.rel_l2)} max_abs={_fmt(i.stats.max_abs)} "
                     f"top1={i.stats.top1:.2f} nonfinite={i.stats.nonfinite}" for i in case.inputs)


def render_junit(report: ValidationReport) -> str:
    """JUnit XML: one testsuite per stage/engine, one testcase per engine x profile x size (x batch).

    A case run once for several profiles (one shared graph) appears once per profile, with the same numbers.
    Failures carry the statistics in the message attribute and per-input numbers in the body.
    """
    suites: dict[str, list[tuple[CaseResult, int]]] = {}
    for case in report.cases:
        key = "onnx-export" if case.stage == "export" else f"engine.{case.engine}"
        suites.setdefault(key, []).extend((case, p) for p in case.profiles)
    root = ET.Element("testsuites", name="rsz-export validate", tests=str(profile_checks(report)),
                      failures=str(sum(1 for v in suites.values() for c, _ in v if c.status == "failed")),
                      errors=str(sum(1 for v in suites.values() for c, _ in v if c.status == "not-run")),
                      time=f"{report.seconds:.3f}")
    for name, entries in suites.items():
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(entries)),
                              failures=str(sum(c.status == "failed" for c, _ in entries)),
                              errors=str(sum(c.status == "not-run" for c, _ in entries)), skipped="0",
                              time=f"{sum(c.seconds for c in dict.fromkeys(c for c, _ in entries)):.3f}")
        for case, profile in entries:
            _junit_case(suite, name, case, profile)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _junit_case(suite: ET.Element, suite_name: str, case: CaseResult, profile: int) -> None:
    element = ET.SubElement(suite, "testcase", classname=f"rsz_export.validate.{suite_name}",
                            name=f"profile{profile} {case.size} batch{case.batch}"
                            + ("" if case.output == "logits" else f" output {case.output}"))
    element.set("time", f"{case.seconds:.3f}")
    if case.status == "failed":
        failure = ET.SubElement(element, "failure", message="; ".join(case.failures) + " | " + _numbers(case),
                                type="ParityFailure")
        failure.text = _numbers(case) + "\n" + _per_input(case)
    elif case.status == "not-run":
        error = ET.SubElement(element, "error", message="; ".join(case.failures), type="NotRun")
        error.text = "; ".join(case.failures)
    else:
        ET.SubElement(element, "system-out").text = _numbers(case)


# --------------------------------------------------------------------------------------------------
# Exit codes
# --------------------------------------------------------------------------------------------------


def exit_code(report: ValidationReport) -> int:
    """0 when every case passed; 1 when any case failed or could not be run (tampered, incompatible).

    Usage errors (2) and a missing backend or GPU (3) stop a run before there is a report: they come
    from the RszError raised (see rsz_export.errors).
    """
    return EXIT_OK if not report.failed else EXIT_CHECK_FAILED
