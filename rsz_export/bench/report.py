"""Bench results -> JSON document, CSV, a readable table, the targets verdict and a Markdown page. Pure,
except ``plot``, which draws latency and throughput against resolution with matplotlib (imported lazily).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SCHEMA = "rsz-export-bench/1"

TABLE_COLUMNS = (
    ("size", "size", "{}"),
    ("batch", "batch", "{}"),
    ("backend", "backend", "{}"),
    ("variant", "variant", "{}"),
    ("profile", "prof", "{}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p90_ms", "p90 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("mean_ms", "mean ms", "{:.2f}"),
    ("std_ms", "std ms", "{:.2f}"),
    ("throughput_ips", "img/s", "{:.1f}"),
    ("gflops_per_s", "GFLOP/s", "{:.1f}"),
    ("peak_share", "of peak", "{:.0%}"),
    ("dynamic_over_static", "dyn/static", "{:.3f}"),
    ("first_call_after_shape_change_ms", "1st call ms", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("device_peak_mib", "GPU MiB", "{:.0f}"),
    ("stable", "stable", "{}"),
)


def to_json(header: dict, rows: Sequence[dict]) -> str:
    """The whole run as one JSON document: the header (machine, versions, date, plan, peaks) and every row."""
    return json.dumps({**header, "rows": list(rows)}, indent=1, allow_nan=True) + "\n"


def _flatten(row: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "blas_env":
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, dict)):
            flat[name] = json.dumps(value, sort_keys=True)
        else:
            flat[name] = value
    return flat


def to_csv(rows: Iterable[dict]) -> str:
    """Every field of every row; nested machine/versions become dotted columns, lists JSON text."""
    flat = [_flatten(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return fmt.format(value)


def render_table(rows: Sequence[dict], markdown: bool = False) -> str:
    """The rows as an aligned text table (or a Markdown table); columns no row fills are left out."""
    columns = [c for c in TABLE_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    body = [[_cell(r.get(key), fmt) for key, _, fmt in columns] for r in rows]
    titles = [title for _, title, _ in columns]
    if markdown:
        lines = ["| " + " | ".join(titles) + " |", "|" + "|".join("---:" for _ in titles) + "|"]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(t), *(len(b[i]) for b in body)) if body else len(t) for i, t in enumerate(titles)]
    lines = ["  ".join(t.rjust(w) for t, w in zip(titles, widths, strict=True))]
    return "\n".join(lines + ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in body])


def progress_line(row: dict) -> str:
    """One line per finished point, for stderr while the run goes on."""
    note = "" if row.get("stable") else "  (not stable)"
    return (
        f"{row['backend']}/{row['variant']} batch {row['batch']} {row['size']}: p50 {row['p50_ms']:.2f} ms, "
        f"{row['throughput_ips']:.1f} img/s, {row['gflops_per_s']:.1f} GFLOP/s{note}"
    )


@dataclass(frozen=True)
class Target:
    """One of the issue's performance targets, as measured."""

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
    """The issue's targets (FP32, batch 1) as met / missed / not measured, with the numbers behind each.

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


def render_markdown(header: dict, rows: Sequence[dict], plot_name: str | None = None, overhead=None) -> str:
    """A results page: machine, versions, peaks, the targets verdict, the full table and the plot."""
    m, v = header["machine"], header["versions"]
    peaks = ", ".join(f"{k} {p:.1f} GFLOP/s" for k, p in header["peak_gflops"].items() if p)
    parts = [
        f"# rsz-export bench, {header['date_utc']}",
        f"Machine: {m['cpu']}, {m['cpu_count']} usable of {m['cores_online']} cores, {m.get('memory_gib')} GiB, "
        f"GPU {m.get('gpu') or 'none'}; {header['threads']} threads; BLAS/OpenMP env {m.get('blas_env') or '{}'}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        f"Measured FP32 matmul peak: {peaks or '-'}. Weights: {header['weights']}. "
        f"Profile boundaries (max side): {header['profile_boundaries']}.",
        "## Targets (FP32, batch 1)",
        render_targets(targets(rows, overhead, header.get("paired", ()))),
        "## All points",
        render_table(rows, markdown=True),
    ]
    if plot_name:
        parts.append(f"![latency and throughput against resolution]({plot_name})")
    return "\n\n".join(parts) + "\n"


def plot(header: dict, rows: Sequence[dict], path: str) -> None:
    """Latency and throughput against side length (square sizes), one line per backend/variant/batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_ips) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict = {}
    for r in rows:
        if r["h"] == r["w"]:
            series.setdefault(f"{r['backend']} {r['variant']} b{r['batch']}", []).append(r)
    for label, points in sorted(series.items()):
        points.sort(key=lambda r: r["h"])
        sides = [r["h"] for r in points]
        ax_lat.plot(sides, [r["p50_ms"] for r in points], marker="o", ms=3, label=label)
        ax_ips.plot(sides, [r["throughput_ips"] for r in points], marker="o", ms=3, label=label)
    for ax, title in ((ax_lat, "p50 latency (ms, log scale)"), (ax_ips, "throughput (images/s)")):
        for edge in header["profile_boundaries"]:
            ax.axvline(edge, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("image side (px); dotted: profile boundaries")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_lat.set_yscale("log")  # cost grows with pixels: a log axis keeps 224 and 800 both readable
    ax_lat.legend(fontsize=8)
    fig.suptitle(f"ResNet-50 on {header['machine']['cpu']}, {header['threads']} threads")
    fig.tight_layout()
    from rsz_export.fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
