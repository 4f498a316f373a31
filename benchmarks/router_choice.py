"""Is the router's choice the fastest profile? For each size, time every (engine, profile) that covers it.

    PYTHONPATH=. python benchmarks/router_choice.py engines --sizes 224,256,300x400,512,640x480,800 \
        [--backend onnxruntime] [--repeats 7] [--out benchmarks/results/router_choice-ort-cpu.json]

Writes JSON (machine, versions, per-size timings) and prints a table; the target is that the routed profile
is within 10% of the best covering profile at every size. Timings are medians of ``--repeats`` batch-1
calls per profile after one warm-up call, interleaved across profiles, on seeded random input (latency
does not depend on pixel values).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsz_export.images.preprocess import random_input  # noqa: E402
from rsz_export.plan.profiles import route  # noqa: E402
from rsz_export.plan.routing import Route  # noqa: E402
from rsz_export.serve.session import Session  # noqa: E402
from rsz_export.shapes import parse_sizes  # noqa: E402

TARGET = 1.10


def measure(session: Session, size, repeats: int) -> dict:
    """Median ms per covering (engine, profile); calls are interleaved round-robin so load drift hits all alike."""
    feed = random_input(size, seed=0, batch=session.batch)
    covering = [c for c in session.candidates if c.shape.covers(session.batch, size.h, size.w)]
    routes = {
        f"{session.engine_name(c.engine)[0]}/profile {c.profile}": Route(c.engine, c.profile, size, False)
        for c in covering
    }
    samples: dict[str, list[float]] = {name: [] for name in routes}
    for chosen in routes.values():
        session.run(feed, chosen)  # warm-up: the first call per shape allocates
    for _ in range(repeats):
        for name, chosen in routes.items():
            samples[name].append(session.run(feed, chosen)[1])
    timings = {name: statistics.median(values) for name, values in samples.items()}
    chosen = session.route(size.h, size.w)
    choice = f"{session.engine_name(chosen.engine)[0]}/profile {chosen.profile}"
    best = min(timings, key=timings.get)
    return {
        "size": str(size),
        "timings_ms": timings,
        "router": choice,
        "best": best,
        "ratio": timings[choice] / timings[best],
        "covering": len(covering),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines")
    parser.add_argument("--sizes", default="224,256,300x400,384,512,640x480,800")
    parser.add_argument("--backend")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = []
    with Session(args.engines, backend=args.backend, threads=args.threads) as session:
        for size in parse_sizes(args.sizes):
            if route([c.shape for c in session.candidates], session.batch, size.h, size.w) is None:
                print(f"{size}: outside every profile, skipped")
                continue
            rows.append(measure(session, size, args.repeats))
            r = rows[-1]
            print(
                f"{r['size']:>9}: router {r['router']} {r['timings_ms'][r['router']]:.1f} ms, best {r['best']} "
                f"{r['timings_ms'][r['best']]:.1f} ms, ratio {r['ratio']:.3f} ({r['covering']} covering)"
            )
        manifest = session.manifest
    worst = max(r["ratio"] for r in rows)
    print(f"worst ratio {worst:.3f}: {'within' if worst <= TARGET else 'NOT within'} {TARGET - 1:.0%} of the best")
    record = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "versions": manifest.versions,
        "engines": [e.name for e in manifest.engines],
        "backends": sorted({e.backend for e in manifest.engines}),
        "plan": manifest.plan.to_dict(),
        "repeats": args.repeats,
        "threads": args.threads,
        "rows": rows,
        "worst_ratio": worst,
        "target": TARGET,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
