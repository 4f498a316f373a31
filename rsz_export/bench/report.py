"""Bench rows -> JSON document, CSV, a readable table and a Markdown page. Pure, except ``plot``, which draws
latency and throughput against resolution with matplotlib (imported lazily).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence

from rsz_export.bench.rows import BenchRow

SCHEMA = "rsz-export-bench/1"

TABLE_COLUMNS = (
    ("size", "size", "{}"),
    ("batch", "batch", "{}"),
    ("backend", "backend", "{}"),
    ("variant", "variant", "{}"),
    ("precision", "prec", "{}"),
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
    ("speedup", "speed-up", "{:.2f}x"),
    ("first_call_after_shape_change_ms", "1st call ms", "{:.1f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("device_peak_mib", "GPU MiB", "{:.0f}"),
    ("gpu_compute_p50_ms", "GPU ms", "{:.2f}"),
    ("trt_activation_mib", "act MiB", "{:.0f}"),
    ("stable", "stable", "{}"),
)


def to_json(header: dict, rows: Sequence[BenchRow]) -> str:
    """The whole run as one JSON document: the header (machine, versions, date, plan, peaks) and every row."""
    return json.dumps({**header, "rows": [r.record() for r in rows]}, indent=1, allow_nan=True) + "\n"


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


def to_csv(rows: Iterable[BenchRow]) -> str:
    """Every field of every row; nested machine/versions become dotted columns, lists JSON text."""
    flat = [_flatten(r.record()) for r in rows]
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


def render_table(rows: Sequence[BenchRow], markdown: bool = False) -> str:
    """The rows as an aligned text table (or a Markdown table); columns no row fills are left out."""
    records = [r.record() for r in rows]
    columns = [c for c in TABLE_COLUMNS if any(r.get(c[0]) is not None for r in records)]
    body = [[_cell(r.get(key), fmt) for key, _, fmt in columns] for r in records]
    titles = [title for _, title, _ in columns]
    if markdown:
        lines = ["| " + " | ".join(titles) + " |", "|" + "|".join("---:" for _ in titles) + "|"]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(t), *(len(b[i]) for b in body)) if body else len(t) for i, t in enumerate(titles)]
    lines = ["  ".join(t.rjust(w) for t, w in zip(titles, widths, strict=True))]
    return "\n".join(lines + ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in body])


def progress_line(row: BenchRow) -> str:
    """One line per finished point, for stderr while the run goes on."""
    r = row.record()
    note = "" if r["stable"] else "  (not stable)"
    return (
        f"{r['backend']}/{r['variant']} batch {r['batch']} {r['size']}: p50 {r['p50_ms']:.2f} ms, "
        f"{r['throughput_ips']:.1f} img/s, {r['gflops_per_s']:.1f} GFLOP/s{note}"
    )


def render_markdown(
    header: dict, rows: Sequence[BenchRow], plot_name: str | None = None, sections: Sequence[tuple[str, str]] = ()
) -> str:
    """A results page: machine, versions, peaks, any extra ``(title, markdown)`` sections, the table and the plot."""
    m, v = header["machine"], header["versions"]
    peaks = ", ".join(f"{k} {p:.1f} GFLOP/s" for k, p in header["peak_gflops"].items() if p)
    parts = [
        f"# rsz-export bench, {header['date_utc']}",
        f"Machine: {m['cpu']}, {m['cpu_count']} usable of {m['cores_online']} cores, {m.get('memory_gib')} GiB, "
        f"GPU {m.get('gpu') or 'none'}; {header['threads']} threads; BLAS/OpenMP env {m.get('blas_env') or '{}'}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        f"Measured FP32 matmul peak: {peaks or '-'}. Weights: {header['weights']}. "
        f"Profile boundaries (max side): {header['profile_boundaries']}.",
        *(part for title, body in sections for part in (f"## {title}", body)),
        "## All points",
        render_table(rows, markdown=True),
    ]
    if plot_name:
        parts.append(f"![latency and throughput against resolution]({plot_name})")
    return "\n\n".join(parts) + "\n"


def plot(header: dict, rows: Sequence[BenchRow], path: str) -> None:
    """Latency and throughput against side length (square sizes), one line per backend/variant/batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_ips) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict = {}
    for r in (row.record() for row in rows):
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
    from rsz_export.artifacts.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
