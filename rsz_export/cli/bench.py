"""``rsz-export bench``: latency, throughput, efficiency and memory of every engine at every size."""

from __future__ import annotations

import click

from rsz_export.cli.common import console, handles_errors, out_dir_argument, parse_or_usage
from rsz_export.errors import UsageError
from rsz_export.shapes import parse_sizes, parse_sweep


def parse_int_list(text: str) -> tuple[int, ...]:
    """``1,8`` -> (1, 8); UsageError naming the bad part."""
    values = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        if not part.isdigit():
            raise UsageError(f"cannot read {part!r} in {text!r}: write whole numbers separated by commas, e.g. 1,8")
        values.append(int(part))
    if not values:
        raise UsageError(f"no numbers in {text!r}: write e.g. 1 or 1,8")
    return tuple(dict.fromkeys(values))


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))


def bench_spec(engines_dir, sizes, sweep, batch, backends, warmup, min_time, max_time, iters, threads, static,
               json_path, csv_path):
    """Options -> a BenchSpec (every value checked by the library's dataclasses)."""
    from rsz_export.bench import BenchSpec
    from rsz_export.benchstats import MeasurePolicy

    chosen = list(parse_or_usage(parse_sizes, sizes, "--sizes") or [])
    chosen += parse_or_usage(parse_sweep, sweep, "--sweep") or []
    policy = MeasurePolicy(warmup=warmup, iters=iters, min_time_s=min_time, max_time_s=max(max_time, min_time))
    return BenchSpec(
        engines_dir=engines_dir,
        sizes=tuple(dict.fromkeys(chosen)),
        batches=parse_or_usage(parse_int_list, batch, "--batch"),
        backends=parse_or_usage(parse_names, backends, "--backends") or (),
        policy=policy,
        threads=threads,
        static=static,
        json_path=json_path,
        csv_path=csv_path,
    )


@click.command()
@out_dir_argument
@click.option("--sizes", help="Sizes to time, e.g. 224,227x341,800. Default: the plan's shared size grid.")
@click.option("--sweep", help="Square sizes START:STOP:STEP, e.g. 224:800:32 (added to --sizes).")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, comma-separated, e.g. 1,8.")
@click.option("--backends", help="Comma-separated: engines in DIR (onnxruntime, tensorrt) and torch. Default: all.")
@click.option("--warmup", default=3, show_default=True, type=int, help="Untimed calls before each point.")
@click.option("--min-time", default=1.0, show_default=True, type=float, help="Seconds to time each point at least.")
@click.option("--max-time", default=10.0, show_default=True, type=float, help="Cap per point when not stable.")
@click.option("--iters", type=int, help="Time exactly this many calls per point instead of --min-time.")
@click.option("--threads", type=int, help="CPU threads for ONNX Runtime and torch. Default: usable cores.")
@click.option("--static/--no-static", default=True, show_default=True, help="Also time shape-pinned engines.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every number as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write every number as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Draw latency/throughput PNG.")
@handles_errors
def bench(out_dir, sizes, sweep, batch, backends, warmup, min_time, max_time, iters, threads, static, json_path,
          csv_path, plot_path):
    """Time every engine in DIR (and PyTorch eager) at every size: latency, throughput, GFLOP/s, memory.

    Each point is timed in windows until their medians agree within 5% (or --max-time, then flagged not
    stable). Also: the share of the measured FP32 matmul peak, the dynamic engine against one with the
    shape fixed (dyn/static), and the first call after a change of shape. JSON/CSV are rewritten after
    every point, so an interrupted run keeps what it measured.
    """
    from rsz_export import benchreport
    from rsz_export.bench import run_bench

    spec = bench_spec(out_dir, sizes, sweep, batch, backends, warmup, min_time, max_time, iters, threads, static,
                      json_path, csv_path)
    from rsz_export.fileio import check_output_target

    for path in (json_path, csv_path, plot_path):  # fail now, not after minutes of timing
        if path:
            check_output_target(path)
    header, rows = run_bench(spec, console().info)
    click.echo(benchreport.render_table(rows))
    if plot_path:
        benchreport.plot(header, rows, plot_path)
        console().info(f"plot written to {plot_path}")
    unstable = sum(1 for r in rows if not r["stable"])
    if unstable:
        console().warn(f"{unstable} of {len(rows)} points did not settle; raise --max-time or quiet the machine")


COMMANDS = (bench,)
