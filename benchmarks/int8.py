"""INT8 against FP32 with ONNX Runtime on the CPU: speed, accuracy per size on photographs calibration never saw,
and what calibration costs.

Usage:
    python benchmarks/int8.py [--onnx PATH] [--min 224] [--max 800] [--method percentile] [--crops 8]
                              [--speed-sizes 224,800] [--seconds 20] [--no-default] [--json PATH]

Without --onnx, ResNet-50 with the project's seeded random weights is exported first. The bundled photographs
are split: crops of all but the last one (``--crops`` per photograph, saved as files) are the calibration
folder given to ``build --precision int8 --calib``; the last photograph (four crops of it) is held out. Then:

* calibration: the int8 build runs in a subprocess; its calibration file records the seconds and the process's
  peak resident memory at the end of calibration. Unless --no-default, a second build calibrates the default
  way (no --calib: 32 crops of the bundled photographs) and is timed too.
* speed: the fp32 engine and the int8 engine of builds over the same range, timed at each --speed-sizes size
  in alternating windows (one session runs at a time; the ratio is a paired median of window medians).
* accuracy: at every size of the plan's grid, the held-out crops and the calibration photographs (evaluation
  crop) through the fp32 engine, the int8 engine (the CPU Q/DQ model), and the TensorRT Q/DQ model run with
  ONNX Runtime's exact Q/DQ arithmetic (``ORT_DISABLE_ALL``, as the build's check runs it): cosine (median and
  worst), relative L2 (worst), top-1 agreement and top-5 containment against fp32. Seeded random weights have
  nearly flat logits, so top-1 agreement understates what trained weights keep; cosine and relative L2 transfer.

Writes benchmarks/results/int8-<machine>-<date>.json (or --json) with the machine, versions and date.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def given_or_exported(onnx: str | None, work: Path) -> Path:
    """The ONNX given with ``--onnx``, else a seeded ResNet-50 exported into ``work``."""
    if onnx:
        return Path(onnx)
    exported = work / "resnet50.onnx"
    _cli("export", "-o", str(exported), "--weights", "random", "--no-verify")
    return exported


def _cli(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "rsz_export", *args], env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"rsz-export {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result


def _split(work: Path, crops: int, smallest: int):
    """(calibration folder, held-out images, seen images): crops of all but the last photograph as files, each
    with both sides at least ``smallest`` (the range minimum)."""
    import numpy as np

    from rsz_export.images.loading import load_rgb, sample_images

    photos = sample_images()
    folder = work / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for photo in photos[:-1]:
        image = load_rgb(photo)
        for k in range(crops):
            w, h = image.size
            side = rng.uniform(0.6, 1.0)
            cw, ch = max(min(w, smallest), int(w * side)), max(min(h, smallest), int(h * side * rng.uniform(0.8, 1)))
            left, top = int(rng.uniform(0, w - cw)), int(rng.uniform(0, h - ch))
            image.crop((left, top, left + cw, top + ch)).save(folder / f"{photo.stem}-{k}.png")
    held = load_rgb(photos[-1])
    w, h = held.size
    boxes = [(0, 0, w, h), (0, 0, w * 3 // 4, h * 3 // 4), (w // 4, h // 4, w, h), (w // 8, 0, w * 7 // 8, h)]
    return folder, [held.crop(b) for b in boxes], [load_rgb(p) for p in photos[:-1]]


def _build(out: Path, onnx: Path, lo: int, hi: int, *extra: str) -> float:
    started = time.perf_counter()
    _cli("build", str(out), "--min", str(lo), "--max", str(hi), "--onnx", str(onnx), "--no-verify",
         "--backend", "onnxruntime", *extra)
    return time.perf_counter() - started


def _calibration_facts(folder: Path) -> dict:
    from rsz_export.artifacts.manifest import load_manifest

    manifest = load_manifest(folder)
    data = json.loads((folder / manifest.calibration.file.file).read_text())
    return {"method": data["method"], "images": len(data["images"]), "seconds": data["seconds"],
            "process_peak_rss_mib": data["process_peak_rss_mib"], "source": data["source"]}


def _runner(folder: Path, threads: int):
    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.backends import ort

    manifest = load_manifest(folder)
    return ort.open_runner(manifest, manifest.engines[0], folder, threads=threads)


def speed(fp32_dir: Path, int8_dir: Path, sizes, seconds: float, threads: int) -> list[dict]:
    """p50 of each engine and the paired speed-up per size, alternating windows."""
    import functools

    from rsz_export.bench.loop import image_maker, measure, wall_timer
    from rsz_export.bench.stats import MeasurePolicy, latency_stats, paired_ratio

    images, rows = image_maker(), []
    policy = MeasurePolicy(warmup=3, min_time_s=seconds, max_time_s=seconds * 3)
    with _runner(fp32_dir, threads) as fp32, _runner(int8_dir, threads) as int8:
        for size in sizes:
            feed = images(1, size)
            calls = [wall_timer(functools.partial(r.infer, feed)) for r in (fp32, int8)]
            m32, m8 = measure(calls, policy, [c() for c in calls])
            rows.append({"size": str(size), "fp32_p50_ms": latency_stats(m32.samples_ms).p50_ms,
                         "int8_p50_ms": latency_stats(m8.samples_ms).p50_ms, "windows": len(m8.medians_ms),
                         "speedup": paired_ratio(m32.medians_ms, m8.medians_ms),
                         "stable": m32.stable and m8.stable})
            print(f"speed {size}: fp32 {rows[-1]['fp32_p50_ms']:.1f} ms, int8 {rows[-1]['int8_p50_ms']:.1f} ms, "
                  f"speed-up {rows[-1]['speedup']:.2f}x", flush=True)
    return rows


def _stats(reference, candidate) -> dict:
    import numpy as np

    from rsz_export.parity import compare

    per_row = [compare(r, c) for r, c in zip(reference, candidate, strict=True)]
    cosines = [s.cosine for s in per_row]
    return {"cosine_median": float(np.median(cosines)), "cosine_worst": min(cosines),
            "rel_l2_worst": max(s.rel_l2 for s in per_row), "top1": float(np.mean([s.top1 for s in per_row])),
            "top5_containment": float(np.mean([s.top1_in_top5 for s in per_row]))}


def accuracy(fp32_dir: Path, int8_dir: Path, onnx: Path, held, seen, threads: int, work: Path) -> list[dict]:
    """Per grid size: CPU int8 engine and TensorRT Q/DQ model (exact Q/DQ arithmetic) against the fp32 engine."""
    import numpy as np

    from rsz_export.artifacts.manifest import load_manifest
    from rsz_export.images.preprocess import crop_input
    from rsz_export.model.calibration import read_ranges
    from rsz_export.model.quantization import TENSORRT_QDQ, _session, qdq_model
    from rsz_export.plan.grid import size_grid

    manifest = load_manifest(int8_dir)
    ranges = read_ranges(int8_dir / manifest.calibration.file.file)
    trt = _session(qdq_model(onnx, ranges, TENSORRT_QDQ, work / "trt.onnx"), threads, TENSORRT_QDQ.check_level)
    sizes = sorted(dict.fromkeys(p.size for p in size_grid(manifest.plan)), key=lambda s: s.pixels)
    rows = []
    with _runner(fp32_dir, threads) as fp32, _runner(int8_dir, threads) as int8:
        for size in sizes:
            row = {"size": str(size)}
            for name, images in (("held_out", held), ("calibration_photos", seen)):
                feeds = [crop_input(image, size) for image in images]  # one at a time: the builds take batch 1
                reference = np.concatenate([fp32.infer(x) for x in feeds])
                cpu = np.concatenate([int8.infer(x) for x in feeds])
                emulated = np.concatenate([trt.run(None, {"images": x})[0] for x in feeds])
                row[name] = {"cpu_int8": _stats(reference, cpu), "tensorrt_qdq": _stats(reference, emulated)}
            rows.append(row)
            h = row["held_out"]
            print(f"accuracy {size}: held-out cosine median/worst cpu {h['cpu_int8']['cosine_median']:.4f}/"
                  f"{h['cpu_int8']['cosine_worst']:.4f}, tensorrt {h['tensorrt_qdq']['cosine_median']:.4f}/"
                  f"{h['tensorrt_qdq']['cosine_worst']:.4f}", flush=True)
    return rows


def _summary(rows: list[dict]) -> dict:
    out = {}
    for part in ("held_out", "calibration_photos"):
        for model in ("cpu_int8", "tensorrt_qdq"):
            stats = [r[part][model] for r in rows]
            out[f"{part}.{model}"] = {"cosine_median_lowest": min(s["cosine_median"] for s in stats),
                                      "cosine_worst": min(s["cosine_worst"] for s in stats),
                                      "rel_l2_worst": max(s["rel_l2_worst"] for s in stats)}
    return out


def range_arguments(description: str) -> argparse.ArgumentParser:
    """The options the CPU benchmarks share: the fp32 export to start from and the plan's range."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--onnx", help="an fp32 ResNet-50 export (default: export one with random weights)")
    parser.add_argument("--min", type=int, default=224)
    parser.add_argument("--max", type=int, default=800)
    return parser


def main() -> int:
    parser = range_arguments(__doc__.splitlines()[0])
    parser.add_argument("--method", default="percentile", choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--crops", type=int, default=8, help="calibration crops per calibration photograph")
    parser.add_argument("--speed-sizes", default="224,800")
    parser.add_argument("--seconds", type=float, default=20.0, help="least timing per engine and size")
    parser.add_argument("--no-default", action="store_true", help="skip timing the default calibration")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    from rsz_export.artifacts.host import provenance, usable_cpus
    from rsz_export.model.quantization import CPU_QDQ, TENSORRT_QDQ
    from rsz_export.shapes import parse_sizes

    threads = usable_cpus()
    with tempfile.TemporaryDirectory(prefix="rsz-int8-") as tmp:
        work = Path(tmp)
        onnx = given_or_exported(args.onnx, work)
        folder, held, seen = _split(work, args.crops, args.min)
        _build(work / "fp32", onnx, args.min, args.max)
        build_s = _build(work / "int8", onnx, args.min, args.max, "--precision", "int8", "--calib", str(folder),
                         "--calib-method", args.method)
        calibration = {"given": {**_calibration_facts(work / "int8"), "build_seconds": round(build_s, 1)}}
        if not args.no_default:
            build_s = _build(work / "int8-default", onnx, args.min, args.max, "--precision", "int8")
            calibration["default"] = {**_calibration_facts(work / "int8-default"), "build_seconds": round(build_s, 1)}
        print(f"calibration: {json.dumps(calibration)}", flush=True)
        speeds = speed(work / "fp32", work / "int8", parse_sizes(args.speed_sizes), args.seconds, threads)
        rows = accuracy(work / "fp32", work / "int8", onnx, held, seen, threads, work)
    record = {**provenance(), "range": [args.min, args.max], "threads": threads, "method": args.method,
              "settings": {"cpu": CPU_QDQ.to_dict(), "tensorrt": TENSORRT_QDQ.to_dict()},
              "calibration": calibration, "speed": speeds, "accuracy_summary": _summary(rows),
              "accuracy": rows}
    host = record["host"]
    machine = f"{re.sub(r'[^a-z0-9]+', '-', host.get('cpu', 'cpu').lower()).strip('-')}-{threads}c"  # run_standard's
    stem = f"int8-{machine}-{datetime.now(UTC):%Y-%m-%d}.json"
    path = Path(args.json_path or REPO / "benchmarks" / "results" / stem)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["accuracy_summary"], indent=1))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
