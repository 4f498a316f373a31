"""The goals the standard benchmark (run_standard.py) judges its results against, and their verdict table.

The goals are this project's own (ONNX Runtime against PyTorch eager, share of the measured matmul peak,
dynamic against static shapes, harness overhead), so they live beside the scripts, not in the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One of the standard benchmark's targets, as measured."""

    name: str
    goal: str
    measured: float | None
    met: bool | None
    detail: str


def _p50(rows, backend: str, variant: str, side: int, batch: int = 1) -> float | None:
    for r in rows:
        if (r["backend"], r["variant"], r["batch"], r["h"], r["w"]) == (backend, variant, batch, side, side):
            return r["p50_ms"]
    return None


def _speedup(rows, side: int, goal: float) -> Target:
    ort_ms, torch_ms = _p50(rows, "onnxruntime", "dynamic", side), _p50(rows, "torch", "eager-fp32", side)
    value = torch_ms / ort_ms if ort_ms and torch_ms else None
    detail = f"torch eager {torch_ms:.1f} ms / ORT {ort_ms:.1f} ms" if value else f"no ORT and torch rows at {side}"
    met = None if value is None else value >= goal
    return Target(f"ORT vs torch eager at {side}x{side}, sweep (unpaired)", f">= {goal}x", value, met, detail)


def _paired(paired: Sequence[dict]) -> list[Target]:
    found = []
    for p in paired:
        goal = 1.5 if p["side"] < 800 else 2.0
        found.append(Target(
            f"ORT vs torch eager at {p['side']}x{p['side']}, paired windows", f">= {goal}x", p["speedup"],
            p["speedup"] >= goal, f"torch {p['torch_p50_ms']:.1f} ms / ORT {p['ort_p50_ms']:.1f} ms",
        ))
        found.append(Target(
            f"ORT share of matmul peak at {p['side']}x{p['side']}, paired windows", ">= 70%", p["peak_share"],
            p["peak_share"] >= 0.70, f"{p['ort_gflops']:.1f} of {p['matmul_gflops']:.1f} GFLOP/s",
        ))
    return found


def targets(rows: Sequence[dict], harness_overhead: float | None = None, paired: Sequence[dict] = ()) -> list[Target]:
    """The targets (FP32, batch 1) as met / missed / not measured, with the numbers behind each, from row records
    (``BenchRow.record()``).

    ``paired``: ORT, torch and the matmul timed in alternating windows at one size (benchmarks/run_standard.py),
    which keeps the ratios meaningful on a machine whose load changes during the sweep.
    """
    found = [_speedup(rows, 224, 1.5), _speedup(rows, 800, 2.0), *_paired(paired)]
    shares = [
        r for r in rows
        if (r["backend"], r["variant"], r["batch"]) == ("onnxruntime", "dynamic", 1)
        and min(r["h"], r["w"]) >= 224 and r.get("peak_share") is not None
    ]
    worst = min(shares, key=lambda r: r["peak_share"], default=None)
    found.append(Target(
        "ORT share of matmul peak, sizes >= 224, sweep (peak measured once)", ">= 70% (lowest)",
        worst and worst["peak_share"],
        None if worst is None else worst["peak_share"] >= 0.70,
        f"lowest at {worst['size']}: {worst['gflops_per_s']:.1f} of {worst['peak_gflops']:.1f} GFLOP/s"
        if worst else "-",
    ))
    ratios = [r for r in rows if r.get("dynamic_over_static") is not None and r["batch"] == 1]
    bad = max(ratios, key=lambda r: r["dynamic_over_static"], default=None)
    found.append(Target(
        "dynamic vs static latency (worst)", "<= 1.05", bad and bad["dynamic_over_static"],
        None if bad is None else bad["dynamic_over_static"] <= 1.05,
        f"worst at {bad['size']} ({bad['backend']})" if bad else "-",
    ))
    found.append(Target(
        "harness overhead vs bare InferenceSession.run at 224", "<= 2%", harness_overhead,
        None if harness_overhead is None else harness_overhead <= 0.02, "benchmarks/harness_overhead.py",
    ))
    return found


def render_targets(found: Sequence[Target]) -> str:
    """The targets as a Markdown table."""
    lines = ["| target | goal | measured | met | detail |", "|---|---|---:|---|---|"]
    for t in found:
        value = "-" if t.measured is None else (f"{t.measured:.1%}" if "%" in t.goal else f"{t.measured:.3f}")
        met = {True: "yes", False: "**no**", None: "not measured"}[t.met]
        lines.append(f"| {t.name} | {t.goal} | {value} | {met} | {t.detail} |")
    return "\n".join(lines)
