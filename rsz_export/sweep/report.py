"""Sweep rows as a side-by-side table (one block of columns per preprocessing policy), a JSON document and a
plot. Pure, except ``plot``, which draws with matplotlib (imported lazily, from the ``plot`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from rsz_export.errors import EnvironmentProblem
from rsz_export.sweep.accuracy import LabeledSet, SweepRow

BLOCK = 40
"""Characters per policy block: top-1, top-5, p50 ms, MPix, images run, the Pareto mark."""
MEANING = {"crop": "crop: centre S x S of the image resized to S/ratio",
           "fit": "fit: whole image, shorter side S, aspect kept",
           "native": "native: each image at its own size"}


def _policies(rows: Sequence[SweepRow]) -> list[str]:
    return list(dict.fromkeys(r.preprocess for r in rows))


def _block(row: SweepRow | None) -> str:
    if row is None:
        return " " * BLOCK
    if not row.covered:
        return f"{'outside every profile':^{BLOCK}}"
    if row.top1 is None:
        return f"{f'no image ran ({row.skipped} skipped)':^{BLOCK}}"
    mark = "*" if row.pareto else " "
    return f"{row.top1:>7.1%} {row.top5:>7.1%} {row.latency_ms:>8.2f} {row.megapixels:>6.3f} {row.images:>5} {mark}  "


def render_sweep(rows: Sequence[SweepRow], labeled: LabeledSet) -> str:
    """The sweep as a table: a row per engine and size, a block of columns per policy; ``*`` marks the Pareto
    front (no other engine, policy and size is both at least as accurate and at least as fast)."""
    policies = _policies(rows)
    cells = {(r.engine, r.size, r.preprocess): r for r in rows}
    keys = list(dict.fromkeys((r.engine, r.size) for r in rows))
    titles = "".join(f"{p:^{BLOCK}}" for p in policies)
    columns = f"{'top-1':>7} {'top-5':>7} {'p50 ms':>8} {'MPix':>6} {'run':>5} P  " * len(policies)
    lines = [
        f"{len(labeled.items)} image(s) in {len(labeled.classes)} class(es) from {labeled.root}"
        + (f"; skipped {len(labeled.skipped)} unreadable file(s)" if labeled.skipped else ""),
        f"{'':<18} {'':<10} {titles}",
        f"{'engine':<18} {'size':<10} {columns}",
    ]
    for engine, size in keys:
        blocks = "".join(_block(cells.get((engine, size, p))) for p in policies)
        lines.append(f"{engine:<18} {size:<10} {blocks}".rstrip())
    lines += [f"  {MEANING[p]}" for p in policies]
    lines.append("P *: the Pareto front: no other engine/policy/size is both at least as accurate (top-1) and at "
                 "least as fast (p50 ms); MPix: mean input megapixels; run: images run (skipped: none fit)")
    return "\n".join(lines)


def rows_to_json(rows: Sequence[SweepRow], labeled: LabeledSet) -> dict:
    return {
        "images": len(labeled.items),
        "classes": len(labeled.classes),
        "skipped": len(labeled.skipped),
        "preprocess": _policies(rows),
        "rows": [asdict(r) for r in rows],
    }


def check_plot_available() -> None:
    """EnvironmentProblem now, before a long sweep, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EnvironmentProblem("--plot needs matplotlib, which is not installed",
                                 hint='pip install "rsz-export[plot]"') from None


def plot(rows: Sequence[SweepRow], path: str, title: str = "") -> None:
    """Two panels: top-1 against side length per policy, and top-1 against latency with the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_size, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (engine, policy), points in _series(rows).items():
        label = f"{policy} ({engine})"
        sized = [r for r in points if r.size != "native"]
        if sized:
            sides = [int(r.size.split("x")[0]) for r in sized]
            ax_size.plot(sides, [100 * r.top1 for r in sized], marker="o", label=label)
        line, = ax_lat.plot([r.latency_ms for r in points], [100 * r.top1 for r in points], marker="o", label=label)
        for r in points:
            ax_lat.annotate(r.size.split("x")[0], (r.latency_ms, 100 * r.top1), fontsize=7, color=line.get_color(),
                            xytext=(3, 3), textcoords="offset points")
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.latency_ms)
    ax_lat.plot([r.latency_ms for r in front], [100 * r.top1 for r in front], "k--", lw=1, label="Pareto front")
    ax_size.set(xlabel="size S (px)", ylabel="top-1 (%)", title="accuracy against size")
    ax_lat.set(xlabel="p50 latency per image (ms)", ylabel="top-1 (%)", title="accuracy against latency")
    for ax in (ax_size, ax_lat):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "sweep: preprocessing policy and input size")
    fig.tight_layout()
    from rsz_export.artifacts.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _series(rows: Sequence[SweepRow]) -> dict:
    series: dict = {}
    for r in rows:
        if r.top1 is not None:
            series.setdefault((r.engine, r.preprocess), []).append(r)
    return series
