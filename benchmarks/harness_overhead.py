"""How much the bench harness adds over a bare ``InferenceSession.run`` loop (target: <= 2% at 224x224).

Usage:
    python benchmarks/harness_overhead.py [ENGINES_DIR] [--iters 30] [--rounds 5] [--threads N] [--json PATH]

Both loops run the same ONNX Runtime session of the engine in ENGINES_DIR (default ./engines), on the same
input, in alternating rounds so machine noise falls on both alike. The harness side is exactly what
``rsz-export bench`` times: ``bench.measure`` over ``bench.wall_timer(runner.infer)`` (routing, the feed
check, the window bookkeeping). The bare side is ``time.perf_counter()`` around ``session.run``.
Overhead = the median over rounds of (harness round median / bare round median) - 1: each round pair
shares one moment of the machine, so a slow spell does not pass for overhead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET = 0.02


def harness_overhead(engines_dir: str, size: int = 224, iters: int = 10, rounds: int = 15, threads=None) -> dict:
    """Alternate harness and bare rounds on one session; return both medians and the overhead."""
    import numpy as np

    from rsz_export.artifacts.host import usable_cpus
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.backends import require_backend
    from rsz_export.backends.base import RunnerOptions
    from rsz_export.bench.loop import measure, wall_timer
    from rsz_export.bench.stats import MeasurePolicy, paired_ratio
    from rsz_export.interface import INPUT_NAME

    manifest = load_manifest(engines_dir)
    ort = require_backend("onnxruntime")
    engine = ort.engines_of(manifest)[0]
    threads = threads or usable_cpus()
    feed = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    policy = MeasurePolicy(warmup=2, iters=iters)
    harness, bare, harness_rounds, bare_rounds = [], [], [], []
    with ort.open_runner(manifest, engine, engines_dir, RunnerOptions(threads=threads)) as runner:
        session = runner.session
        for _ in range(rounds):
            samples = measure((wall_timer(lambda: runner.infer(feed)),), policy, (0.0,))[0].samples_ms
            harness += samples
            harness_rounds.append(statistics.median(samples))
            for _ in range(policy.warmup):
                session.run(None, {INPUT_NAME: feed})
            own = []
            for _ in range(iters):
                start = time.perf_counter()
                session.run(None, {INPUT_NAME: feed})
                own.append((time.perf_counter() - start) * 1000.0)
            bare += own
            bare_rounds.append(statistics.median(own))
    h, b = statistics.median(harness), statistics.median(bare)
    return {"size": size, "threads": threads, "iters": len(bare), "rounds": rounds, "harness_p50_ms": h,
            "bare_p50_ms": b, "overhead": paired_ratio(harness_rounds, bare_rounds) - 1, "target": TARGET}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines_dir", nargs="?", default="engines")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = harness_overhead(args.engines_dir, iters=args.iters, rounds=args.rounds, threads=args.threads)
    print(f"harness p50 {result['harness_p50_ms']:.2f} ms, bare session.run p50 {result['bare_p50_ms']:.2f} ms: "
          f"overhead {result['overhead']:+.2%} (target <= {TARGET:.0%})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
