"""Issue 7, runs that are interrupted or overlap, and where deserialisation happens.

* ``export -o FILE``, ``validate --json/--junit`` and ``bench --json/--csv`` killed by SIGINT, SIGTERM and
  SIGKILL: no partial file under the target name; a report is absent or complete.
* Two validate runs share a folder; predict runs while ``build --force`` replaces it; a build defers
  deleting files a reader may still use.
* Every call that deserialises a file is one of the reviewed call sites below (sha256-checked first, or the
  user's own input parsed without executing anything).
(Build interruption and the second writer are tests/test_interrupt.py.)
"""

# ruff: noqa: F811  (the shared fixtures are imported from test_robustness_inputs and named as arguments)

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import REPO, run_cli, wait_for_line
from test_robustness_inputs import (  # noqa: F401 (fixtures)
    assert_no_temp_files,
    damaged,
    fast_engines,
    onnx_build_args,
    reference_weights,
)

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
SAMPLE = REPO / "rsz_export" / "data" / "images" / "astronaut.jpg"


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "rsz_export", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _interrupt_all(processes: dict, marker: str, delay: float) -> dict:
    """Wait for ``marker`` in each process, then send it its signal; returns {signal: (returncode, stderr)}."""
    for sig, process in processes.items():
        wait_for_line(process, marker)
        time.sleep(delay)
        process.send_signal(sig)
    outcome = {}
    for sig, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        outcome[sig] = (process.returncode, stderr)
    return outcome


def _assert_interrupted(sig, returncode: int, stderr: str) -> None:
    if sig == signal.SIGKILL:
        assert returncode == -signal.SIGKILL
    else:
        assert returncode == 130, stderr
        assert "interrupted: nothing half-written was kept" in stderr and "Traceback" not in stderr, stderr


def test_export_interrupted_leaves_previous_file(tmp_path, reference_weights):
    """Three exports over an earlier file, each killed with another signal mid-export: the earlier file is
    untouched; SIGINT/SIGTERM remove their temp file, SIGKILL can only leave it beside, never under the name."""
    processes, before = {}, b"an earlier export"
    for sig in SIGNALS:
        target = tmp_path / sig.name / "resnet50.onnx"
        target.parent.mkdir()
        target.write_bytes(before)
        processes[sig] = _start("export", "--weights", str(reference_weights), "-o", str(target))
    for sig, (code, stderr) in _interrupt_all(processes, "exporting ResNet-50", 1.0).items():
        _assert_interrupted(sig, code, stderr)
        folder = tmp_path / sig.name
        assert (folder / "resnet50.onnx").read_bytes() == before
        if sig != signal.SIGKILL:
            assert_no_temp_files(folder)


def _reports_absent_or_complete(folder: Path) -> None:
    report, junit = folder / "report.json", folder / "report.xml"
    if report.exists():
        assert json.loads(report.read_text())["cases"]
    if junit.exists():
        ET.parse(junit)


def test_validate_interrupted_writes_no_partial_report(fast_engines, tmp_path):
    processes = {}
    for sig in SIGNALS:
        folder = tmp_path / sig.name
        folder.mkdir()
        processes[sig] = _start(
            "validate", str(fast_engines), "--json", str(folder / "report.json"), "--junit", str(folder / "report.xml")
        )
    for sig, (code, stderr) in _interrupt_all(processes, "grid point(s)", 0.5).items():
        _assert_interrupted(sig, code, stderr)
        _reports_absent_or_complete(tmp_path / sig.name)
        assert not (tmp_path / sig.name / "report.json").exists()  # written only once the run is complete
    assert_no_temp_files(fast_engines)


def test_bench_interrupted_keeps_complete_rows(fast_engines, tmp_path):
    out_json, out_csv = tmp_path / "bench.json", tmp_path / "bench.csv"
    process = _start(
        "bench",
        str(fast_engines),
        "--sizes",
        "224,256",
        "--backends",
        "onnxruntime",
        "--no-static",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--json",
        str(out_json),
        "--csv",
        str(out_csv),
    )
    wait_for_line(process, "onnxruntime/dynamic batch 1 224x224")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (0, 130) and "Traceback" not in stderr, stderr  # 0: it finished first
    rows = json.loads(out_json.read_text())["rows"]
    with open(out_csv, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert rows and len(table) == len(rows)
    assert all(r["p50_ms"] > 0 for r in rows) and all(float(r["p50_ms"]) > 0 for r in table)
    assert_no_temp_files(tmp_path)


def test_two_validate_runs_share_a_folder(fast_engines):
    quick = ["validate", str(fast_engines), "--replace-sizes", "--sizes", "224,240x256", "--random-inputs", "0"]
    first, second = _start(*quick), _start(*quick)
    for process in (first, second):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stdout + stderr
        assert "PASS" in stdout


def test_predict_during_build_force(fast_engines, tmp_path, onnx_path, reference_weights):
    """Predictions keep running while ``build --force`` replaces every file of the folder: each one succeeds
    or fails with an integrity message (exit 4), never a crash."""
    import shutil

    folder = Path(shutil.copytree(fast_engines, tmp_path / "engines"))
    build = _start(*onnx_build_args(onnx_path, reference_weights, folder, "--force"))
    outcomes = []
    while build.poll() is None or not outcomes:
        result = run_cli("predict", str(folder), str(SAMPLE), "--oversize", "shrink", "--top-k", "1")
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0 or (result.returncode == 4 and "error:" in result.stderr), result.stderr
        outcomes.append(result.returncode)
    _, stderr = build.communicate(timeout=120)
    assert build.returncode == 0, stderr
    assert run_cli("predict", str(folder), str(SAMPLE), "--oversize", "shrink").returncode == 0


def test_build_defers_removing_files_a_reader_uses(fast_engines, tmp_path, onnx_path, reference_weights):
    """A Session (predict) holds the readers' lock: a rebuild that replaces the engines keeps the old ones
    until the reader is gone, and the next build removes them."""
    import shutil

    from rsz_export.build import BuildSpec, build
    from rsz_export.planning import PlanSpec, plan_profiles
    from rsz_export.runtime import Session

    folder = Path(shutil.copytree(fast_engines, tmp_path / "engines"))

    def rebuild(lo, hi):
        logged = []
        spec = BuildSpec(
            plan_profiles(PlanSpec(lo, hi)),
            folder,
            backend="onnxruntime",
            weights=str(reference_weights),
            onnx=onnx_path,
        )
        build(spec, logged.append)
        return "\n".join(logged)

    old_engines = {p.name for p in folder.glob("onnxruntime-*")}
    with Session(folder, oversize="shrink") as session:
        log = rebuild(224, 240)
        assert "a reader is using" in log
        assert old_engines <= {p.name for p in folder.glob("onnxruntime-*")}
        assert session.predict(SAMPLE).top  # the reader's engines are still there and intact
    rebuild(224, 256)
    assert {p.name for p in folder.glob("onnxruntime-*")} == old_engines  # stale ones removed, no reader now


# ---- integrity: every deserialisation is a reviewed call site -------------------------------------------

DESERIALISERS = re.compile(
    r"InferenceSession\(|deserialize_cuda_engine\(|torch\.load\(|pickle\.loads?\(|"
    r"Image\.open\(|onnx\.load\(|np\.load\(|create_timing_cache\("
)
REVIEWED = {
    # (file, the call's line with spaces collapsed): why it is safe
    (
        "backends/ort.py",
        "return ort.InferenceSession(model, so, providers=providers)",
    ): "engines: bytes already checked against the manifest (verified_bytes); at build, the ONNX just checked",
    (
        "export.py",
        'session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])',
    ): "verifies the temp file this process just exported",
    ("export.py", "proto = onnx.load(str(tmp))"): "the temp file this process just exported",
    (
        "export.py",
        "proto = onnx.load(str(path), load_external_data=False)",
    ): "metadata of an ONNX (protobuf parse, no code); external data never followed",
    (
        "precision.py",
        'return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])',
    ): "reduced-precision checks of ONNX files this build wrote",
    (
        "benchenv.py",
        'session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])',
    ): "a MatMul graph built in memory",
    (
        "flops.py",
        "model = onnx.load(str(model_path))",
    ): "counts FLOPs of the manifest's ONNX: a protobuf parse, no code",
    ("precision.py", "model = onnx.load(str(src))"): "the build's checked ONNX, converted to fp16/bf16",
    ("precision.py", "model = onnx.load(str(onnx_path))"): "an ONNX this build wrote",
    ("precision.py", "model = onnx.load(str(onnx_path), load_external_data=False)"): "reads dtypes only",
    (
        "backends/trt.py",
        "cuda_engine = trt_runtime.deserialize_cuda_engine(data)",
    ): "the engine this build just serialised",
    (
        "backends/trt.py",
        "cuda_engine = trt_runtime.deserialize_cuda_engine(path.read_bytes())",
    ): "after verify_file against the manifest",
    (
        "backends/trt.py",
        "cuda_engine = trt_runtime.deserialize_cuda_engine(blob)",
    ): "bytes from manifest.verified_bytes",
    (
        "backends/trt.py",
        "timing_cache = builder_config.create_timing_cache(before) # shared by every engine of this build",
    ): "the folder's cache only if its manifest recorded its sha256 (build.drop_untrusted_timing_cache), "
    "or the user's own --timing-cache",
    (
        "model.py",
        'state = torch.load(path, map_location="cpu", weights_only=True)',
    ): "weights_only=True: tensors only, pickled code refused; sha256 checked first when a manifest names it",
    (
        "images.py",
        "image = Image.open(path, formats=ALLOWED_FORMATS)",
    ): "raster formats decoded in-process, size capped",
    ("imagesizes.py", "with Image.open(path, formats=ALLOWED_FORMATS) as image:"): "header only, same formats",
}


def _call_sites() -> set[tuple[str, str]]:
    sites = set()
    for path in sorted((REPO / "rsz_export").rglob("*.py")):
        for line in path.read_text().splitlines():
            code = line.strip()
            if DESERIALISERS.search(code) and not code.startswith(("#", '"', "'")) and "``" not in code:
                sites.add((str(path.relative_to(REPO / "rsz_export")), " ".join(code.split())))
    return sites


def test_every_deserialisation_is_a_reviewed_call_site():
    sites = _call_sites()
    unreviewed = sorted(sites - set(REVIEWED))
    assert not unreviewed, f"new deserialisation call(s): review them and add them to REVIEWED: {unreviewed}"
    assert {("backends/ort.py", "return ort.InferenceSession(model, so, providers=providers)")} <= sites
    assert not any("pickle.load" in code for _, code in sites)


def test_timing_cache_in_the_folder_is_used_only_when_the_manifest_recorded_it(damaged):
    """TensorRT would parse the timing cache natively: one the manifest does not vouch for is removed first."""
    from rsz_export.build import drop_untrusted_timing_cache
    from rsz_export.fileio import sha256_file

    cache = damaged.resolve() / "timing.cache"
    cache.write_bytes(b"planted by someone else")
    logged = []
    drop_untrusted_timing_cache(damaged, cache, logged.append)
    assert not cache.exists() and "not using timing.cache" in logged[0]
    cache.write_bytes(b"what the last build wrote")
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["engines"][0]["settings"]["timing_cache"] = {"sha256": sha256_file(cache)}
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    drop_untrusted_timing_cache(damaged, cache, logged.append)
    assert cache.read_bytes() == b"what the last build wrote"
    elsewhere = damaged.parent / "my.cache"
    elsewhere.write_bytes(b"the user's own")
    drop_untrusted_timing_cache(damaged, elsewhere, logged.append)
    assert elsewhere.exists()


def test_atomic_writes_keep_links_and_special_files(tmp_path):
    """A report written to a symlink replaces the file it points to, and one written to a pipe or device goes
    into it: the link, pipe or device node itself is never replaced by a renamed temp file."""
    import threading

    from rsz_export.fileio import atomic_write_text

    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    atomic_write_text(fifo, "through the pipe")
    reader.join(timeout=10)
    assert received == ["through the pipe"] and fifo.is_fifo()
    assert_no_temp_files(tmp_path)
