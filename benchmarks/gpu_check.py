"""One-command check of the TensorRT path on a machine with TensorRT and a CUDA GPU (``make test-gpu``): build
fp32, fp16 and int8 engines over 224..800, validate each against PyTorch, bench each, run the GPU- and
TensorRT-marked tests, and write a JSON record of what ran, with its exit codes, times and the facts only a GPU
shows (timing-cache reuse on a rebuild, TF32 agreement, device memory, latencies).

Usage:
    python benchmarks/gpu_check.py [--out DIR] [--json PATH] [--min 224] [--max 800] [--precisions fp32,fp16,int8]
                                   [--onnx PATH] [--opt-level 2] [--calib-count 32] [--no-pytest]
                                   [--cli-module rsz_export] [--budget-s 270]

Every command runs through the command line in a subprocess (``python -m CLI_MODULE``), so exit codes are the
real ones. The JSON is rewritten after every step: a machine lent for a few minutes keeps what ran. Steps that
would start after ``--budget-s`` are recorded as skipped. The first build exports ResNet-50 (seeded random
weights unless ``--weights``); the later ones reuse that export (``build --onnx``). ``--cli-module
tests.backends.trt_cli`` runs the same steps over the TensorRT test double on a CPU (the suite's smoke test):
nothing it reports then says anything about a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "fp16", "int8")


def _cli(module: str, *args, timeout: float) -> tuple[int, str, str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=timeout)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = 124, str(exc.stdout or ""), f"timed out after {timeout:.0f} s"
    return code, out, err, round(time.perf_counter() - started, 2)


class Record:
    """The JSON record, rewritten after every step."""

    def __init__(self, path: Path, args):
        self.path, self.started = path, time.perf_counter()
        now = datetime.datetime.now(datetime.UTC).isoformat()
        self.data = {"tool": "benchmarks/gpu_check.py", "date_utc": now,
                     "cli_module": args.cli_module, "range": [args.min, args.max], "opt_level": args.opt_level,
                     "machine": _machine(), "steps": [], "passed": None}
        self.budget = args.budget_s

    def step(self, name: str, module: str, *args, timeout: float = 600, parse=None) -> dict | None:
        left = self.budget - (time.perf_counter() - self.started)
        if left <= 0:
            self.data["steps"].append({"name": name, "status": "skipped", "reason": "time budget spent"})
            self.save()
            return None
        code, out, err, seconds = _cli(module, *args, timeout=min(timeout, left))
        entry = {"name": name, "command": [module, *map(str, args)], "exit_code": code, "seconds": seconds,
                 "status": "passed" if code == 0 else "failed"}
        if code != 0:
            entry["stderr_tail"] = err[-2000:]
        elif parse is not None:
            try:
                entry["facts"] = parse(out)
            except (ValueError, KeyError, OSError) as exc:  # the command passed; say what could not be read
                entry["facts_error"] = f"{type(exc).__name__}: {exc}"
        self.data["steps"].append(entry)
        self.save()
        return entry

    def save(self) -> None:
        steps = self.data["steps"]
        self.data["passed"] = bool(steps) and all(s["status"] == "passed" for s in steps)
        self.data["seconds"] = round(time.perf_counter() - self.started, 1)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)


def _machine() -> dict:
    from rsz_export.artifacts import host

    facts = {**host.host_info(), "versions": host.library_versions()}
    try:
        import tensorrt

        facts["tensorrt"] = str(tensorrt.__version__)
    except ImportError as exc:
        facts["tensorrt"] = f"not importable: {exc}"
    return facts


def _engine_facts(folder: Path):
    def parse(_out: str) -> dict:
        manifest = json.loads((folder / "manifest.json").read_text())
        engines = []
        for engine in manifest["engines"]:
            settings = engine["settings"]
            cache = settings.get("timing_cache") or {}
            engines.append({"name": engine["name"], "precision": engine["precision"], "profiles": engine["profiles"],
                            "build_seconds": engine["build_seconds"], "tf32": settings.get("tf32"),
                            "device_memory_bytes_per_profile": settings.get("device_memory_bytes_per_profile"),
                            "layer_precisions": (settings.get("layers") or {}).get("precisions"),
                            "timing_cache": {k: cache.get(k) for k in ("reused", "new_entries", "bytes")},
                            "tensorrt_version": settings.get("tensorrt_version"),
                            "gpu": settings.get("gpu_name")})
        return {"engines": engines, "onnx": manifest["onnx"]["file"]}

    return parse


def _validate_facts(path: Path):
    def parse(_out: str) -> dict:
        report = json.loads(path.read_text())
        cases = [c for c in report["cases"] if c["stage"] == "engine"]
        worst = max((c["stats"]["rel_l2"] for c in cases if c.get("stats")), default=None)
        return {"passed": report["passed"], "summary": report["summary"], "engine_cases": len(cases),
                "worst_rel_l2": worst}

    return parse


def _bench_facts(path: Path):
    def parse(_out: str) -> dict:
        rows = json.loads(path.read_text())["rows"]
        keep = ("size", "batch", "backend", "variant", "precision", "profile", "p50_ms", "dynamic_over_static",
                "gpu_compute_p50_ms", "trt_activation_mib", "stable")
        return {"rows": [{k: r.get(k) for k in keep} for r in rows]}

    return parse


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = Record(Path(args.json) if args.json else out / "gpu-check.json", args)
    common = ["--backend", "tensorrt", "--min", args.min, "--max", args.max, "--opt-level", args.opt_level]
    onnx = Path(args.onnx).resolve() if args.onnx else None
    for precision in args.precisions.split(","):
        folder = out / precision
        extra = ["--precision", precision] + (["--calib-count", args.calib_count] if precision == "int8" else [])
        source = ["--onnx", onnx] if onnx else ["--weights", args.weights]
        if onnx and args.weights != "random":
            source += ["--weights", args.weights]
        built = record.step(f"build {precision}", args.cli_module, "build", folder, *common, *source, *extra,
                            parse=_engine_facts(folder))
        if built is None or built["status"] != "passed":
            continue
        if onnx is None:  # the later builds reuse this export
            onnx = (folder / built["facts"]["onnx"]).resolve()
        if precision == "fp32":  # a rebuild with --force: how many tactics the timing cache did not hold
            record.step("rebuild fp32 (timing cache)", args.cli_module, "build", folder, *common, "--onnx", onnx,
                        "--force", parse=_engine_facts(folder))
        report = out / f"validate-{precision}.json"
        record.step(f"validate {precision}", args.cli_module, "validate", folder, "--random-inputs", 1,
                    "--json", report, parse=_validate_facts(report))
        bench = out / f"bench-{precision}.json"
        record.step(f"bench {precision}", args.cli_module, "bench", folder, "--backends", "tensorrt",
                    "--iters", args.iters, "--json", bench, parse=_bench_facts(bench))
    if not args.no_pytest:
        record.step("pytest -m 'gpu or tensorrt'", "pytest", "-m", "gpu or tensorrt", "-q", "-p", "no:cacheprovider")
    record.save()
    print(json.dumps({"passed": record.data["passed"], "json": str(record.path), "seconds": record.data["seconds"]}))
    return 0 if record.data["passed"] else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu-check", help="where the builds and reports go")
    parser.add_argument("--json", help="the record (default OUT/gpu-check.json)")
    parser.add_argument("--min", type=int, default=224)
    parser.add_argument("--max", type=int, default=800)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--onnx", help="build from this ONNX instead of exporting ResNet-50")
    parser.add_argument("--weights", default="random", help="weights for the export or the parity reference")
    parser.add_argument("--opt-level", type=int, default=2, help="TensorRT builder optimization level")
    parser.add_argument("--calib-count", type=int, default=32, help="int8 calibration images")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per bench point")
    parser.add_argument("--cli-module", default="rsz_export", help="tests.backends.trt_cli: over the test double")
    parser.add_argument("--budget-s", type=float, default=270, help="start no step after this many seconds")
    parser.add_argument("--no-pytest", action="store_true", help="skip the GPU- and TensorRT-marked tests")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
