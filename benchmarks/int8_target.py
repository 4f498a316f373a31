"""INT8 to an accuracy target on photographs calibration never saw: what the default build keeps in float, what
that costs in speed against an all-int8 build of the same calibration, and how close to fp32 it stays at every
grid size.

Usage:
    python benchmarks/int8_target.py --unseen DIR [--onnx PATH] [--min 224] [--max 800] [--speed-sizes 224,800]
                                     [--seconds 20] [--json PATH]

Three ONNX Runtime builds from the same export: fp32, int8 with the defaults (``--int8-target`` 0.996, the
bundled calibration photographs with two held out), and int8 with ``--int8-target off`` (every layer int8, as
builds were before the target existed). Then:

* build: wall seconds of each int8 build, the calibration file's facts (seconds, peak memory), the coverage
  report and the layers kept in float with their sensitivity;
* speed: fp32, all-int8 and default int8 engines timed at each --speed-sizes size in alternating windows
  (paired median ratios over fp32, one run);
* accuracy: every grid size, against the fp32 ONNX run by ONNX Runtime: the default build's CPU model (as its
  engine runs it), its TensorRT Q/DQ model with exact Q/DQ arithmetic, and the all-int8 CPU model, on the
  unseen photographs: every image of --unseen (each whole through the evaluation crop, and its centre half),
  and the default build's own two held-out bundled photographs. Cosine (median and worst), relative L2
  (worst), top-1 agreement and top-5 containment; seeded random weights have flat logits, so top-1 understates
  what trained weights keep.

Writes benchmarks/results/int8-target-<machine>-<date>.json (or --json) with the machine, versions and date.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("int8_bench", Path(__file__).with_name("int8.py"))
int8_bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(int8_bench)  # the shared helpers: builds through the CLI, engine runners, statistics
REPO = int8_bench.REPO


def cpu_flags() -> list[str]:
    """The CPU features that decide int8 and bf16 speed (/proc/cpuinfo), as the machine reports them."""
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [flag for flag in wanted if flag in line.split()]


def _unseen(folder: Path, held: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """(name, RGB image): each --unseen image whole and its centre half, then the build's held-out photographs."""
    from rsz_export.images.loading import load_photos

    photos, _ = load_photos(folder)
    images = []
    for name, image in photos:
        w, h = image.size
        images += [(name, image), (f"{name} (centre half)", image.crop((w // 4, h // 4, w - w // 4, h - h // 4)))]
    return images + held


def _held_out(folder: Path) -> list[tuple[str, object]]:
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.images.loading import SAMPLE_DIR, load_rgb

    holdout = load_manifest(folder).calibration.report["coverage"]["holdout"]
    return [(f"bundled {i['file']} (held out)", load_rgb(SAMPLE_DIR / i["file"])) for i in holdout["images"]]


def _models(default_dir: Path, off_dir: Path, onnx: Path, work: Path, threads: int) -> dict:
    """Sessions: fp32 ONNX, default CPU model, its TensorRT model (exact Q/DQ), all-int8 CPU model."""
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.model.calibration import read_placement, read_ranges
    from rsz_export.model.quantization import CPU_QDQ, TENSORRT_QDQ, _session, qdq_model

    def cpu_model(folder):
        engine = load_manifest(folder).engines[0]
        (qdq,) = [f for f in engine.extra_files if f.file.endswith("model.int8-cpu.onnx")]
        return _session(folder / qdq.file, threads, CPU_QDQ.check_level)

    calibration = default_dir / load_manifest(default_dir).calibration.file.file
    trt = qdq_model(onnx, read_ranges(calibration), TENSORRT_QDQ, work / "trt.onnx", read_placement(calibration)[0])
    return {"fp32": _session(onnx, threads), "cpu_int8_default": cpu_model(default_dir),
            "tensorrt_qdq_default": _session(trt, threads, TENSORRT_QDQ.check_level),
            "cpu_int8_all_layers": cpu_model(off_dir)}


def accuracy(models: dict, images, plan) -> list[dict]:
    import numpy as np

    from rsz_export.images.preprocess import crop_input
    from rsz_export.plan.grid import size_grid

    sizes = sorted(dict.fromkeys(p.size for p in size_grid(plan)), key=lambda s: s.pixels)
    rows = []
    for size in sizes:
        feeds = [crop_input(image, size) for _, image in images]
        outputs = {name: np.concatenate([s.run(None, {"images": x})[0] for x in feeds]) for name, s in models.items()}
        row = {"size": str(size)}
        for name in ("cpu_int8_default", "tensorrt_qdq_default", "cpu_int8_all_layers"):
            row[name] = int8_bench._stats(outputs["fp32"], outputs[name])
            row[name]["cosine_per_image"] = [round(float(c), 5) for c in _cosines(outputs["fp32"], outputs[name])]
        rows.append(row)
        d = row["cpu_int8_default"]
        print(f"accuracy {size}: default cpu median {d['cosine_median']:.4f} worst {d['cosine_worst']:.4f}; "
              f"all-int8 worst {row['cpu_int8_all_layers']['cosine_worst']:.4f}", flush=True)
    return rows


def _cosines(a, b):
    import numpy as np

    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def speed(dirs: dict, sizes, seconds: float, threads: int) -> list[dict]:
    """p50 per engine and paired speed-ups over fp32 per size, alternating windows (one run)."""
    import functools

    from rsz_export.bench.loop import image_maker, measure, wall_timer
    from rsz_export.bench.stats import MeasurePolicy, latency_stats, paired_ratio

    images, rows = image_maker(), []
    policy = MeasurePolicy(warmup=3, min_time_s=seconds, max_time_s=seconds * 3)
    runners = {name: int8_bench._runner(folder, threads) for name, folder in dirs.items()}
    opened = {name: r.__enter__() for name, r in runners.items()}
    try:
        for size in sizes:
            feed = images(1, size)
            calls = [wall_timer(functools.partial(r.infer, feed)) for r in opened.values()]
            measured = dict(zip(opened, measure(calls, policy, [c() for c in calls])))
            row = {"size": str(size)}
            row.update({f"{n}_p50_ms": latency_stats(m.samples_ms).p50_ms for n, m in measured.items()})
            for name in ("int8_all_layers", "int8_default"):
                row[f"{name}_speedup"] = paired_ratio(measured["fp32"].medians_ms, measured[name].medians_ms)
            row["default_over_all_layers"] = row["int8_default_speedup"] / row["int8_all_layers_speedup"]
            row["stable"] = all(m.stable for m in measured.values())
            rows.append(row)
            print(f"speed {size}: {json.dumps(row)}", flush=True)
    finally:
        for runner in runners.values():
            runner.__exit__(None, None, None)
    return rows


def _facts(folder: Path, seconds: float) -> dict:
    from rsz_export.artifacts.manifest import load_manifest

    report = load_manifest(folder).calibration.report
    return {**int8_bench._calibration_facts(folder), "build_seconds": round(seconds, 1), **report}


def main() -> int:
    parser = int8_bench.range_arguments(__doc__.splitlines()[0])
    parser.add_argument("--unseen", required=True, help="photographs no build here calibrates on")
    parser.add_argument("--speed-sizes", default="224,800")
    parser.add_argument("--seconds", type=float, default=20.0, help="least timing per engine and size")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    from rsz_export.artifacts.host import provenance, usable_cpus
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.shapes import parse_sizes

    threads = usable_cpus()
    with tempfile.TemporaryDirectory(prefix="rsz-int8-target-") as tmp:
        work = Path(tmp)
        onnx = int8_bench.given_or_exported(args.onnx, work)
        lo, hi = args.min, args.max
        int8_bench._build(work / "fp32", onnx, lo, hi)
        started = time.perf_counter()
        default_s = int8_bench._build(work / "int8", onnx, lo, hi, "--precision", "int8")
        off_s = int8_bench._build(work / "int8-off", onnx, lo, hi, "--precision", "int8", "--int8-target", "off")
        builds = {"default": _facts(work / "int8", default_s), "all_layers": _facts(work / "int8-off", off_s)}
        print(f"builds: {json.dumps(builds)[:2000]}", flush=True)
        images = _unseen(Path(args.unseen), _held_out(work / "int8"))
        rows = accuracy(_models(work / "int8", work / "int8-off", onnx, work, threads), images,
                        load_manifest(work / "int8").plan)
        dirs = {"fp32": work / "fp32", "int8_all_layers": work / "int8-off", "int8_default": work / "int8"}
        speeds = speed(dirs, parse_sizes(args.speed_sizes), args.seconds, threads)
        total_s = time.perf_counter() - started
    summary = {name: {"cosine_median_lowest": min(r[name]["cosine_median"] for r in rows),
                      "cosine_worst": min(r[name]["cosine_worst"] for r in rows),
                      "rel_l2_worst": max(r[name]["rel_l2_worst"] for r in rows)}
               for name in ("cpu_int8_default", "tensorrt_qdq_default", "cpu_int8_all_layers")}
    record = {**provenance(), "cpu_flags": cpu_flags(), "load_average_end": list(os.getloadavg()),
              "range": [args.min, args.max], "threads": threads, "seconds_total": round(total_s),
              "images": [name for name, _ in images], "builds": builds, "speed": speeds,
              "accuracy_summary": summary, "accuracy": rows}
    host = record["host"]
    machine = f"{re.sub(r'[^a-z0-9]+', '-', host.get('cpu', 'cpu').lower()).strip('-')}-{threads}c"
    stem = f"int8-target-{machine}-{datetime.now(UTC):%Y-%m-%d}.json"
    path = Path(args.json_path or REPO / "benchmarks" / "results" / stem)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
