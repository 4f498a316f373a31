"""``rsz-export bench``: latency, throughput, efficiency and memory of every engine at every size."""

from __future__ import annotations

import click

from rsz_export.cli.common import check_writable, console, emit, handles_errors, parse_or_usage
from rsz_export.cli.options import batches_option, engines_dir_argument, json_option, sizes_option, threads_option
from rsz_export.shapes import parse_batches, parse_sizes, parse_sweep


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))


@click.command()
@engines_dir_argument
@sizes_option
@click.option("--sweep", help="Square sizes START:STOP:STEP, e.g. 224:800:32 (added to --sizes).")
@batches_option
@click.option("--backends", help="Comma-separated: engines in DIR (onnxruntime, tensorrt) and torch. Default: all.")
@click.option("--warmup", default=3, show_default=True, type=int, help="Untimed calls before each point.")
@click.option("--min-time", default=1.0, show_default=True, type=float, help="Seconds to time each point at least.")
@click.option("--max-time", default=10.0, show_default=True, type=float, help="Cap per point when not stable.")
@click.option("--iters", type=int, help="Time exactly this many calls per point instead of --min-time.")
@threads_option
@click.option("--static/--no-static", default=True, show_default=True, help="Also time shape-pinned engines.")
@click.option("--baseline", "baseline_dir", type=click.Path(file_okay=False),
              help="Another build (e.g. fp32 beside an int8 DIR): its engines are timed at the same points, in "
              "alternating windows, with the speed-up of DIR's over them (instead of the shape-pinned twins).")
@json_option("every number")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write every number as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Draw latency/throughput PNG.")
@handles_errors
def bench(engines_dir, sizes, sweep, batches, backends, warmup, min_time, max_time, iters, threads, static,
          baseline_dir, json_path, csv_path, plot_path):
    """Time every engine in DIR (and PyTorch eager) at every size: latency, throughput, GFLOP/s, memory.

    Each point is timed in windows until their medians agree within 5% (or --max-time, then flagged not
    stable). Also: the share of the measured FP32 matmul peak, the dynamic engine against one with the
    shape fixed (dyn/static), and the first call after a change of shape. A JSON or CSV file is rewritten
    after every point, so an interrupted run keeps what it measured.
    """
    from rsz_export.bench import report
    from rsz_export.bench.run import BenchSpec, run_bench
    from rsz_export.bench.stats import MeasurePolicy

    chosen = list(parse_or_usage(parse_sizes, sizes, "--sizes") or [])
    chosen += parse_or_usage(parse_sweep, sweep, "--sweep") or []
    spec = BenchSpec(
        engines_dir=engines_dir,
        sizes=tuple(dict.fromkeys(chosen)),
        batches=parse_or_usage(parse_batches, batches, "--batches") if batches else (1,),
        backends=parse_or_usage(parse_names, backends, "--backends") or (),
        policy=MeasurePolicy(warmup=warmup, iters=iters, min_time_s=min_time, max_time_s=max(max_time, min_time)),
        threads=threads,
        static=static,
        json_path=json_path if json_path != "-" else None,
        csv_path=csv_path,
        baseline_dir=baseline_dir,
    )
    check_writable(json_path, csv_path, plot_path)  # fail now, not after minutes of timing
    header, rows = run_bench(spec, console().info)
    emit(report.render_table(rows), "-" if json_path == "-" else None, lambda: report.to_json(header, rows))
    if plot_path:
        report.plot(header, rows, plot_path)
        console().info(f"plot written to {plot_path}")
    unstable = sum(1 for r in rows if not r.measured.stable)
    if unstable:
        console().warn(f"{unstable} of {len(rows)} points did not settle; raise --max-time or quiet the machine")


COMMANDS = (bench,)
