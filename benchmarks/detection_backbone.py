"""A detector-range backbone build, timed: a seeded torchvision Faster R-CNN checkpoint (saved as its reference
script saves one), ``rsz-export build --profile-file profiles/detection-backbone.toml`` (the FPN levels over
600..1344, any aspect ratio, ONNX Runtime on the CPU, the export cache off) and ``rsz-export validate`` of that
build with its default grid and inputs (a feature build: one input per size, in turn), each as the CLI runs it.
The target: build and validation under 5 minutes together. Writes
benchmarks/results/detection-backbone-<machine>-<date>.json (wall times, validate's time per stage and summary,
CPU seconds, machine, CPU flags, load average before and after the run, versions, date).

Run: .venv/bin/python benchmarks/detection_backbone.py [--name vm] [--random-inputs N] [--inputs-per-size N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsz_export.artifacts.host import cpu_flags, host_info, library_versions  # noqa: E402

TARGET_S = 300.0
PROFILE = "profiles/detection-backbone.toml"


def save_checkpoint(path: Path, seed: int = 0) -> None:
    """A seeded fasterrcnn_resnet50_fpn as torchvision's detection reference script saves it."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    detector = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.02, momentum=0.9)
    torch.save({"model": detector.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 26}, path)


def timed(*args: str, cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds: user and system, every thread, the load other work puts on the machine left
    out, the log) of ``rsz-export ARGS``."""
    env = {**os.environ, "RSZ_EXPORT_CACHE": "off", "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rsz_export", *args], capture_output=True, text=True, cwd=cwd,
                            env=env)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"rsz-export {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="vm", help="machine name in the result file's name")
    parser.add_argument("--random-inputs", default="2", help="validate's --random-inputs (its default: 2)")
    parser.add_argument("--inputs-per-size", help="validate's --inputs-per-size (default: validate's own, 1 here)")
    args = parser.parse_args()
    per_size = ["--inputs-per-size", args.inputs_per_size] if args.inputs_per_size else []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_checkpoint(folder / "fasterrcnn.pth")
        build_s, build_cpu_s, build_log = timed(
            "build", "engines-det", "--profile-file", str(ROOT / PROFILE), "--weights", "fasterrcnn.pth", "--backend",
            "onnxruntime", cwd=folder)
        validate_s, validate_cpu_s, _ = timed(
            "validate", "engines-det", "--random-inputs", args.random_inputs, *per_size, "--json", "v.json", cwd=folder)
        report = json.loads((folder / "v.json").read_text())
    load_after = os.getloadavg()
    cases = report["cases"]
    total = build_s + validate_s
    stages = {stage: round(sum(c["seconds"] for c in cases if c["stage"] == stage), 1)
              for stage in ("export", "engine")}  # export: PyTorch's reference and the ONNX under ONNX Runtime
    exported = re.search(r"export took ([\d.]+) s", build_log)
    record = {
        "date": dt.date.today().isoformat(),
        "host": host_info(),
        "cpu_flags": cpu_flags(),
        "versions": library_versions(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "command": f"benchmarks/detection_backbone.py {' '.join(sys.argv[1:])}".strip(),
        "profile": PROFILE,
        "build_s": round(build_s, 1),
        "build_export_s": float(exported.group(1)) if exported else None,
        "validate_s": round(validate_s, 1),
        "total_s": round(total, 1),
        "build_cpu_s": round(build_cpu_s, 1),
        "validate_cpu_s": round(validate_cpu_s, 1),
        "cpu_s": round(build_cpu_s + validate_cpu_s, 1),
        "target_s": TARGET_S,
        "under_target": total <= TARGET_S,
        "validate_stage_s": stages,
        "validate_passed": report["passed"],
        "validate_summary": report["summary"],
        "validate_cases": len(cases),
        "validate_sizes": len({tuple(c["size"]) for c in cases}),
        "validate_inputs": report["inputs"],
        "validate_inputs_per_size": report["inputs_per_size"],
        "worst_rel_l2": max(c["stats"]["rel_l2"] for c in cases),
    }
    out = ROOT / "benchmarks" / "results" / f"detection-backbone-{args.name}-{record['date']}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"build {build_s:.1f} s + validate {validate_s:.1f} s = {total:.1f} s (target {TARGET_S:.0f} s); "
          f"{len(cases)} cases, worst rel L2 {record['worst_rel_l2']:.2e}; {out}")


if __name__ == "__main__":
    main()
