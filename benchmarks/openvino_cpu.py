"""OpenVINO against ONNX Runtime on this CPU: our engines in fp32, int8 and (where the CPU executes it) bf16,
speed and accuracy, with the CPU's flags and OpenVINO's view of them.

Usage:
    python benchmarks/openvino_cpu.py [--onnx PATH] [--min 224] [--max 800] [--sizes 224,800] [--seconds 8]
                                  [--calib-count 8] [--note TEXT] [--json PATH]

Without --onnx, ResNet-50 with the project's seeded random weights is exported first. Builds over one range,
each with ``rsz-export build``: ONNX Runtime fp32 and int8, OpenVINO fp32, int8 (the same calibration and CPU
Q/DQ model: the ORT int8 folder is copied and rebuilt, so its calibration is reused) and bf16 (refused with
exit 3 on a CPU without bf16 units: recorded as not executable here). Then:

* speed, batch 1, usable threads: every engine at each --sizes size in alternating windows (one session runs
  at a time; each ratio to ONNX Runtime fp32 is a paired median of window medians), plus OpenVINO fp32 reshaped
  to the static size (the dynamic engine's cost) and its first call after a change of size.
* load: OpenVINO's cold compile and warm (model cache) load, from the build and from a fresh runner.
* accuracy: the bundled photographs' evaluation crops at each size, cosine of each engine's logits against ONNX
  Runtime fp32's (seeded random weights: cosine and relative L2 transfer to trained weights, top-1 does not).

Writes benchmarks/results/openvino-<machine>-<date>.json (or --json) with the machine, its CPU flags, versions
and date, and prints the table.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
ENGINES = ("ort-fp32", "ort-int8", "ov-fp32", "ov-bf16", "ov-int8")


PEAKS: dict[str, float] = {}
"""Peak resident memory (MiB) of each build process, from /usr/bin/time where the machine has it."""


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    timer = ["/usr/bin/time", "-f", "peak_rss_kib=%M"] if Path("/usr/bin/time").is_file() else []
    command = [*timer, sys.executable, "-m", "rsz_export", *args]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"rsz-export {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    if found := re.search(r"peak_rss_kib=(\d+)", result.stderr):
        PEAKS[Path(args[1]).name if args[0] == "build" else args[0]] = round(int(found.group(1)) / 1024, 1)
    return result


def build_all(work: Path, onnx: Path, lo: int, hi: int, calib_count: int) -> dict:
    """Build every engine; returns {engine name: folder or the refusal}."""
    common = ["--min", str(lo), "--max", str(hi), "--onnx", str(onnx), "--weights", "random", "--no-verify"]
    folders: dict = {}
    for name, backend, precision in (("ort-fp32", "onnxruntime", "fp32"), ("ort-int8", "onnxruntime", "int8")):
        extra = ["--calib-count", str(calib_count)] if precision == "int8" else []
        _cli("build", str(work / name), *common, "--backend", backend, "--precision", precision, *extra)
        folders[name] = work / name
    for name, source, precision in (("ov-fp32", "ort-fp32", "fp32"), ("ov-int8", "ort-int8", "int8"),
                                    ("ov-bf16", "ort-fp32", "bf16")):
        shutil.copytree(work / source, work / name)
        extra = ["--calib-count", str(calib_count)] if precision == "int8" else []
        result = _cli("build", str(work / name), *common, "--backend", "openvino", "--precision", precision, *extra,
                      check=precision != "bf16")
        if result.returncode != 0:
            folders[name] = {"refused": result.stderr.strip().splitlines()[0], "exit_code": result.returncode}
            print(f"{name}: not executable here ({folders[name]['refused']})", flush=True)
        else:
            folders[name] = work / name
            print(f"built {name}", flush=True)
    return folders


def _runner(folder: Path, threads: int, pinned=None):
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.backends import load_backend
    from rsz_export.backends.base import RunnerOptions

    manifest = load_manifest(folder)
    engine = manifest.engines[0]
    return load_backend(engine.backend).open_runner(manifest, engine, folder, RunnerOptions(threads, pinned))


def speed(folders: dict, sizes, seconds: float, threads: int) -> list[dict]:
    """Per size: every engine's p50 and its paired speed-up over ORT fp32; the static twin; the first call."""
    from contextlib import ExitStack

    from rsz_export.bench.loop import image_maker, measure, wall_timer
    from rsz_export.bench.stats import MeasurePolicy, latency_stats, paired_ratio
    from rsz_export.shapes import InputShape

    images, rows = image_maker(), []
    policy = MeasurePolicy(warmup=3, min_time_s=seconds, max_time_s=seconds * 3)
    runnable = {k: v for k, v in folders.items() if isinstance(v, Path)}
    with ExitStack() as stack:
        runners = {k: stack.enter_context(_runner(v, threads)) for k, v in runnable.items()}
        for size in sizes:
            other = sizes[0] if size != sizes[0] else sizes[-1]
            runners["ov-fp32"].infer(images(1, other))
            started = time.perf_counter()
            runners["ov-fp32"].infer(images(1, size))
            first_ms = (time.perf_counter() - started) * 1000
            static = stack.enter_context(_runner(runnable["ov-fp32"], threads, InputShape(1, size.h, size.w)))
            calls = {k: wall_timer(functools.partial(r.infer, images(1, size))) for k, r in runners.items()}
            calls["ov-fp32-static"] = wall_timer(functools.partial(static.infer, images(1, size)))
            names = list(calls)
            results = dict(zip(names, measure([calls[n] for n in names], policy, [calls[n]() for n in names])))
            base = results["ort-fp32"].medians_ms
            row = {"size": str(size), "ov_fp32_first_call_after_size_change_ms": round(first_ms, 2), "engines": {}}
            for name, m in results.items():
                row["engines"][name] = {"p50_ms": round(latency_stats(m.samples_ms).p50_ms, 2),
                                        "vs_ort_fp32": round(paired_ratio(base, m.medians_ms), 3),
                                        "windows": len(m.medians_ms), "stable": m.stable}
            dynamic, fixed = results["ov-fp32"].medians_ms, results["ov-fp32-static"].medians_ms
            row["ov_fp32_dynamic_over_static"] = round(paired_ratio(dynamic, fixed), 3)
            rows.append(row)
            print(f"speed {size}: " + ", ".join(f"{k} {v['p50_ms']} ms ({v['vs_ort_fp32']}x)"
                                                for k, v in row["engines"].items()), flush=True)
    return rows


def accuracy(folders: dict, sizes, threads: int) -> list[dict]:
    """Cosine (worst over the bundled photographs) of each engine's logits against ONNX Runtime fp32's."""
    from contextlib import ExitStack

    import numpy as np

    from rsz_export.images.loading import load_rgb, sample_images
    from rsz_export.images.preprocess import crop_input
    from rsz_export.parity import compare

    photos = [load_rgb(p) for p in sample_images()]
    runnable = {k: v for k, v in folders.items() if isinstance(v, Path)}
    rows = []
    with ExitStack() as stack:
        runners = {k: stack.enter_context(_runner(v, threads)) for k, v in runnable.items()}
        for size in sizes:
            feeds = [crop_input(photo, size) for photo in photos]
            logits = {k: np.concatenate([r.infer(f) for f in feeds]) for k, r in runners.items()}
            row = {"size": str(size), "images": len(feeds), "cosine_worst_vs_ort_fp32": {}}
            for name, values in logits.items():
                row["cosine_worst_vs_ort_fp32"][name] = round(compare(logits["ort-fp32"], values).cosine, 6)
            if "ov-int8" in logits:
                same_model = compare(logits["ort-int8"], logits["ov-int8"]).cosine
                row["ov_int8_vs_ort_int8_cosine_worst"] = round(same_model, 6)
            rows.append(row)
            print(f"accuracy {size}: {row['cosine_worst_vs_ort_fp32']}", flush=True)
    return rows


def loads(folders: dict, threads: int) -> dict:
    """OpenVINO engines' cold and warm load: the build's two timed compiles, and a fresh runner (warm cache)."""
    from rsz_export.artifacts.manifest import load_manifest

    out = {}
    for name in ("ov-fp32", "ov-int8", "ov-bf16"):
        if not isinstance(folders.get(name), Path):
            continue
        settings = load_manifest(folders[name]).engines[0].settings
        with _runner(folders[name], threads) as runner:
            out[name] = {"build_cold_s": settings["cold_load_seconds"], "build_warm_s": settings["warm_load_seconds"],
                         "runner_open_s": runner.load_seconds, "compiled_precision": runner.executed_precision}
    return out


def main() -> int:
    from benchmarks.int8 import range_arguments

    parser = range_arguments(__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,800")
    parser.add_argument("--seconds", type=float, default=8.0, help="least timing per engine and size")
    parser.add_argument("--calib-count", type=int, default=8)
    parser.add_argument("--note", default="", help="recorded with the result (e.g. what else ran on the machine)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    import openvino as ov

    from rsz_export.artifacts.host import cpu_flags, provenance, usable_cpus
    from rsz_export.shapes import parse_sizes

    threads, sizes = usable_cpus(), parse_sizes(args.sizes)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rsz-openvino-") as tmp:
        work = Path(tmp)
        onnx = Path(args.onnx) if args.onnx else work / "resnet50.onnx"
        if not args.onnx:
            _cli("export", "-o", str(onnx), "--weights", "random", "--no-verify")
        folders = build_all(work, onnx, args.min, args.max, args.calib_count)
        speeds = speed(folders, sizes, args.seconds, threads)
        accuracies = accuracy(folders, sizes, threads)
        load_times = loads(folders, threads)
    core = ov.Core()
    record = {**provenance(), "cpu_flags": cpu_flags(), "threads": threads, "batch": 1, "range": [args.min, args.max],
              "openvino": {"version": ov.__version__,
                           "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
                           "default_inference_precision": str(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))},
              "not_executable_here": {k: v for k, v in folders.items() if not isinstance(v, Path)},
              "note": args.note, "build_peak_rss_mib": PEAKS, "speed": speeds, "accuracy": accuracies,
              "load": load_times,
              "seconds": round(time.perf_counter() - started, 1)}
    machine = f"{re.sub(r'[^a-z0-9]+', '-', record['host'].get('cpu', 'cpu').lower()).strip('-')}-{threads}c"
    path = Path(args.json_path or REPO / "benchmarks" / "results" /
                f"openvino-{machine}-{datetime.now(UTC):%Y-%m-%d}.json")
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record))
    print(f"written to {path}")
    return 0


def table(record: dict) -> str:
    """The markdown table of the speed rows (what README and docs/openvino.md quote)."""
    sizes = [row["size"] for row in record["speed"]]
    lines = ["| engine | " + " | ".join(f"{s} | vs ORT fp32" for s in sizes) + " |",
             "|---|" + "---:|---:|" * len(sizes)]
    for name in (*ENGINES, "ov-fp32-static"):
        cells = []
        for row in record["speed"]:
            engine = row["engines"].get(name)
            cells.append(f"{engine['p50_ms']} ms | {engine['vs_ort_fp32']:.2f}x" if engine else "not executable |")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
