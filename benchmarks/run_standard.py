"""The standard bench on this machine: writes benchmarks/results/<machine>-<date>.{json,md,png}.

Usage:
    python benchmarks/run_standard.py [ENGINES_DIR] [--sweep 224:800:32] [--min-time 1.0] [--threads N]

ENGINES_DIR (default ./engines) must hold `rsz-export build --min 224 --max 800` output (`make engines`).
Runs ONNX Runtime (dynamic and shape-pinned) and PyTorch eager FP32 at batch 1 over the sweep, then the
harness-overhead check at 224x224, and writes: the JSON (rewritten after every point, so an interrupted
run keeps its points), a Markdown page with the targets verdict (targets.py) and the full table, and the plot.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

RESULTS = REPO / "benchmarks" / "results"


def machine_slug(cpu: str, cores: int) -> str:
    """``AMD EPYC 7B13``, 2 cores -> ``amd-epyc-7b13-2c``: a file-name-safe machine name."""
    return f"{re.sub(r'[^a-z0-9]+', '-', cpu.lower()).strip('-') or 'cpu'}-{cores}c"


def paired_checks(engines_dir: str, threads: int, sides=(224, 800), min_time_s: float = 3.0, n: int = 2048) -> list:
    """ORT, torch eager and the ORT matmul, timed in alternating windows at each side: ratios from one moment.

    The sweep times each backend at its own time; on a shared machine whose load changes, the ratios the
    targets ask for (ORT / torch, achieved / peak) are only trustworthy when both sides share the moment.
    """
    from functools import partial

    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.backends import require_backend
    from rsz_export.backends.base import RunnerOptions
    from rsz_export.backends.ort import cpu_matmul
    from rsz_export.bench.flops import resnet50_flop
    from rsz_export.bench.loop import image_maker, measure, wall_timer
    from rsz_export.bench.runners import variants
    from rsz_export.bench.stats import MeasurePolicy, gflops_per_s, latency_stats, paired_ratio
    from rsz_export.shapes import Resolution

    manifest = load_manifest(engines_dir)
    ort = require_backend("onnxruntime")
    engine = ort.engines_of(manifest)[0]
    ((_, torch_opener),) = variants("torch", manifest, engines_dir, threads, "cpu")
    policy = MeasurePolicy(warmup=1, min_time_s=min_time_s, max_time_s=20 * min_time_s)
    images, found = image_maker(), []
    ort_runner = ort.open_runner(manifest, engine, engines_dir, RunnerOptions(threads=threads))
    with ort_runner, torch_opener(None) as torch_runner:
        for side in sides:
            feed = images(1, Resolution(side, side))
            calls = [wall_timer(partial(ort_runner.infer, feed)), wall_timer(partial(torch_runner.infer, feed)),
                     wall_timer(cpu_matmul(n, threads))]
            firsts = [call() for call in calls]
            ort_m, torch_m, mm_m = measure(calls, policy, firsts)
            ort_ms, torch_ms, mm_ms = (latency_stats(m.samples_ms).p50_ms for m in (ort_m, torch_m, mm_m))
            ort_gflops, mm_gflops = gflops_per_s(resnet50_flop(1, side, side), ort_ms), gflops_per_s(2 * n**3, mm_ms)
            flop_ratio = resnet50_flop(1, side, side) / (2 * n**3)  # share = flop ratio x (matmul ms / ORT ms)
            found.append({
                "side": side, "ort_p50_ms": ort_ms, "torch_p50_ms": torch_ms, "matmul_p50_ms": mm_ms,
                "speedup": paired_ratio(torch_m.medians_ms, ort_m.medians_ms), "ort_gflops": ort_gflops,
                "matmul_gflops": mm_gflops, "peak_share": flop_ratio * paired_ratio(mm_m.medians_ms, ort_m.medians_ms),
                "windows": len(ort_m.medians_ms),
                "stable": ort_m.stable and torch_m.stable and mm_m.stable,
            })
            print(f"paired at {side}: {found[-1]}", file=sys.stderr, flush=True)
    return found


def main() -> int:
    from harness_overhead import harness_overhead
    from targets import render_targets, targets

    from rsz_export.artifacts.files import atomic_write_text
    from rsz_export.bench import report
    from rsz_export.bench.probes import machine_info
    from rsz_export.bench.run import BenchSpec, run_bench
    from rsz_export.bench.stats import MeasurePolicy
    from rsz_export.shapes import parse_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines_dir", nargs="?", default="engines")
    parser.add_argument("--sweep", default="224:800:32")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--max-time", type=float, default=8.0)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()

    info = machine_info()
    stem = f"{machine_slug(info['cpu'], info['cpu_count'])}-{datetime.now(UTC):%Y-%m-%d}"
    json_path, md_path, png_path = (RESULTS / f"{stem}.{ext}" for ext in ("json", "md", "png"))
    spec = BenchSpec(
        args.engines_dir,
        sizes=tuple(parse_sweep(args.sweep)),
        backends=("onnxruntime", "torch"),
        policy=MeasurePolicy(warmup=args.warmup, min_time_s=args.min_time, max_time_s=args.max_time),
        threads=args.threads,
        json_path=str(json_path),
    )
    header, rows = run_bench(spec, lambda line: print(line, file=sys.stderr, flush=True))
    header["paired"] = paired_checks(args.engines_dir, header["threads"])
    overhead = harness_overhead(args.engines_dir, threads=header["threads"])
    header["harness_overhead"] = overhead
    atomic_write_text(json_path, report.to_json(header, rows))
    report.plot(header, rows, str(png_path))
    verdict = render_targets(targets([r.record() for r in rows], overhead["overhead"], header["paired"]))
    page = report.render_markdown(header, rows, png_path.name, [("Targets (FP32, batch 1)", verdict)])
    atomic_write_text(md_path, page)
    print(verdict)
    print(f"wrote {json_path}, {md_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
