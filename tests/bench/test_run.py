"""A tiny real bench on the small build: every field present and consistent, and an interrupted run's files valid."""

from __future__ import annotations

import csv
import io
import json
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from click.testing import CliRunner

from rsz_export.artifacts.manifest import load_manifest
from rsz_export.bench import report as benchreport
from rsz_export.bench.flops import resnet50_flop
from rsz_export.bench.loop import measure
from rsz_export.bench.rows import Point, make_row
from rsz_export.bench.run import BenchSpec, resolve_points, run_bench
from rsz_export.bench.stats import Measurement, MeasurePolicy
from rsz_export.errors import UsageError
from rsz_export.plan.profiles import route
from rsz_export.shapes import Resolution
from tests.helpers import REPO, make_plan

ROW_FIELDS = {
    "size", "h", "w", "batch", "backend", "variant", "device", "engine", "profile", "iters", "stable",
    "window_medians_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "throughput_ips", "gflop",
    "gflops_per_s", "peak_gflops", "peak_share", "first_call_after_shape_change_ms", "peak_rss_mib",
    "device_peak_mib", "machine", "versions", "date_utc", "threads",
}


@pytest.fixture(scope="module")
def bench_run(tiny_engines, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    spec = BenchSpec(
        str(tiny_engines),
        sizes=(Resolution(256, 256), Resolution(224, 224)),
        backends=("onnxruntime",),
        policy=MeasurePolicy(warmup=0, iters=2),
        json_path=str(out / "b.json"),
        csv_path=str(out / "b.csv"),
        peak_matrix=512,
    )
    lines: list[str] = []
    header, rows = run_bench(spec, lines.append)
    return spec, header, rows, lines


@pytest.fixture(scope="module")
def row_dicts(bench_run):
    """The rows as their JSON records."""
    return [r.record() for r in bench_run[2]]


def test_every_point_has_every_field(bench_run, row_dicts):
    spec, header, _, _ = bench_run
    rows = row_dicts
    kinds = [(r["backend"], r["variant"], r["size"]) for r in rows]
    assert kinds == [
        ("onnxruntime", "dynamic", "224x224"), ("onnxruntime", "static", "224x224"),
        ("onnxruntime", "dynamic", "256x256"), ("onnxruntime", "static", "256x256"),
    ]  # sizes run ascending whatever order they were given in
    for row in rows:
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert row["iters"] == 2 and len(row["window_medians_ms"]) == 2
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["gflop"] == pytest.approx(resnet50_flop(1, row["h"], row["w"]) / 1e9, rel=1e-12)
        assert row["gflops_per_s"] == pytest.approx(row["gflop"] / row["p50_ms"] * 1000)
        assert row["peak_share"] == pytest.approx(row["gflops_per_s"] / header["peak_gflops"][row["backend"]])
        assert row["throughput_ips"] == pytest.approx(1000 / row["mean_ms"])
        assert row["peak_rss_mib"] > 50 and row["device_peak_mib"] is None
        assert row["machine"]["cpu"] and row["versions"]["onnxruntime"] and row["date_utc"].endswith("Z")


def test_dynamic_rows_carry_the_profile_the_shape_change_and_the_static_ratio(bench_run, row_dicts):
    header, rows = bench_run[1], row_dicts
    plan = load_manifest(bench_run[0].engines_dir).plan
    for row in (r for r in rows if r["variant"] == "dynamic"):
        assert row["profile"] == route(plan.profiles, 1, row["h"], row["w"])
        assert row["previous_shape"] in {"1x3x256x256", "1x3x224x224"} and row["previous_shape"] != f"1x3x{row['size']}"
        static = next(r for r in rows if r["variant"] == "static" and r["size"] == row["size"])
        assert row["static_p50_ms"] == static["p50_ms"]
        pairs = zip(row["window_medians_ms"], static["window_medians_ms"], strict=True)
        assert row["dynamic_over_static"] == pytest.approx(statistics.median(a / b for a, b in pairs))
    assert header["profile_boundaries"] == [p.max.h for p in plan.profiles[:-1]]


def test_files_hold_what_the_run_returned(bench_run, row_dicts):
    spec, header, _, lines = bench_run
    rows = row_dicts
    document = json.loads(open(spec.json_path).read())
    assert document["rows"] == json.loads(json.dumps(rows)) and document["schema"] == benchreport.SCHEMA
    assert document["machine"] == header["machine"] and set(document["peak_gflops"]) == {"onnxruntime"}
    table = list(csv.DictReader(io.StringIO(open(spec.csv_path).read())))
    assert [t["p50_ms"] for t in table] == [str(r["p50_ms"]) for r in rows] and "versions.onnxruntime" in table[0]
    assert any("matmul peak" in line for line in lines)


def test_report_page_and_plot(bench_run, tmp_path):
    _, header, rows, _ = bench_run
    page = benchreport.render_markdown(header, rows, "b.png", [("Extra", "| a section |")])
    assert "## Extra\n\n| a section |" in page and "## All points" in page
    assert header["machine"]["cpu"] in page and "| 224x224 |" in page
    pytest.importorskip("matplotlib")
    benchreport.plot(header, rows, str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # rebuilding the reference model from the manifest's weights takes 10-30 s on 2 cores
def test_torch_eager_baseline(small_engines_dir):
    spec = BenchSpec(str(small_engines_dir), sizes=(Resolution(224, 224),), backends=("torch",),
                     policy=MeasurePolicy(warmup=0, iters=1), peak_matrix=256)
    header, rows = run_bench(spec, lambda _: None)
    (row,) = [r.record() for r in rows]
    assert (row["backend"], row["variant"], row["device"], row["engine"]) == ("torch", "eager-fp32", "cpu", None)
    assert row["iters"] == 1 and row["p50_ms"] > 0 and row["peak_gflops"] == header["peak_gflops"]["torch"] > 0
    assert row["previous_shape"] is None  # one size: no change of shape to time


def test_points_outside_the_build_are_refused_naming_the_range(small_engines_dir):
    manifest = load_manifest(small_engines_dir)
    with pytest.raises(UsageError, match="no profile covers batch 1 at 800x800") as info:
        resolve_points(BenchSpec(str(small_engines_dir), sizes=(Resolution(800, 800),)), manifest)
    assert "224" in str(info.value)
    with pytest.raises(UsageError, match="holds no such engine"):
        resolve_points(BenchSpec(str(small_engines_dir), backends=("tensorrt",)), manifest)
    with pytest.raises(UsageError, match="unknown backend"):
        BenchSpec(str(small_engines_dir), backends=("tflite",))


def test_measure_keeps_timing_until_windows_agree():
    durations = iter([50.0, 9.0, 30.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0] + [10.0] * 100)
    policy = MeasurePolicy(warmup=1, min_time_s=0.0, max_time_s=60.0, stable_windows=2, cv_threshold=0.05)
    (m,) = measure((lambda: next(durations),), policy, (80.0,))
    assert m.stable and m.medians_ms[-2:] == (10.0, 10.0) and m.first_call_ms == 80.0
    assert 9.0 in m.samples_ms and 50.0 not in m.samples_ms  # warm-up calls are not samples


def test_measure_alternates_windows_of_two_calls_until_both_settle():
    order: list[str] = []
    steady = iter([10.0] * 1000)
    slow_to_settle = iter([40.0, 20.0, 5.0] + [7.0] * 1000)

    def a() -> float:
        order.append("a")
        return next(steady)

    def b() -> float:
        order.append("b")
        return next(slow_to_settle)

    policy = MeasurePolicy(warmup=0, min_time_s=0.0, max_time_s=60.0, stable_windows=3, cv_threshold=0.05)
    ma, mb = measure((a, b), policy, (10.0, 10.0))
    assert ma.stable and mb.stable and len(ma.medians_ms) == len(mb.medians_ms)
    assert len(mb.medians_ms) > 3  # a alone was stable after 3 windows; it kept going while b settled
    per_window = policy.window_iters(10.0)
    assert order[: 2 * per_window] == ["a"] * per_window + ["b"] * per_window


def test_interrupted_cli_run_keeps_valid_files(small_engines_dir, tmp_path):
    out_json, out_csv = tmp_path / "b.json", tmp_path / "b.csv"
    args = ["bench", str(small_engines_dir), "--sweep", "224:288:32", "--backends", "onnxruntime", "--iters", "2",
            "--warmup", "0", "--no-static", "--json", str(out_json), "--csv", str(out_csv)]
    proc = subprocess.Popen([sys.executable, "-m", "rsz_export", *args], cwd=REPO, env={"PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out_json.exists() and json.loads(out_json.read_text())["rows"]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    rows = json.loads(out_json.read_text())["rows"]
    assert proc.returncode == 130, err
    assert 1 <= len(rows) < 3 and rows[0]["size"] == "224x224"
    csv_rows = list(csv.DictReader(out_csv.open()))  # written before the JSON: complete, at most one row ahead
    assert len(rows) <= len(csv_rows) <= len(rows) + 1
    assert [r["size"] for r in csv_rows[: len(rows)]] == [r["size"] for r in rows]


def _row(backend, variant, side, p50, **extra):
    """A BenchRow with made-up numbers, for the renderers."""
    point = Point(Resolution(side, side), 1, backend, variant, "cpu")
    header = {"threads": 2, "date_utc": "2026-01-01T00:00:00Z", "machine": {"cpu": "X"}, "versions": {}}
    header.update({k: extra.pop(k) for k in ("machine",) if k in extra})
    medians = extra.pop("window_medians_ms", (p50,))
    row = make_row(point, Measurement((p50,), tuple(medians), True, None), extra.pop("peak_gflops", None), {}, header)
    return replace(row, **extra)


def test_csv_flattens_nested_fields_and_table_skips_empty_columns():
    rows = [_row("torch", "eager-fp32", 224, 80.0, machine={"cpu": "X", "blas_env": {"OPENBLAS_CORETYPE": "Haswell"}},
                 window_medians_ms=(1.0, 2.0))]
    (flat,) = csv.DictReader(io.StringIO(benchreport.to_csv(rows)))
    assert flat["machine.cpu"] == "X" and json.loads(flat["machine.blas_env"]) == {"OPENBLAS_CORETYPE": "Haswell"}
    assert json.loads(flat["window_medians_ms"]) == [1.0, 2.0]
    table = benchreport.render_table(rows)
    assert "p50 ms" in table and "80.00" in table and "dyn/static" not in table


@pytest.mark.parametrize(
    "args, says",
    [
        (["--batches", "1,x"], "--batches: cannot read 'x'"),
        (["--sweep", "300:200:32"], "--sweep"),
        (["--backends", "tflite"], "unknown backend(s) tflite"),
        (["--iters", "0"], "--iters must be a whole number in 1..1000000, got 0"),
    ],
)
def test_cli_usage_errors_exit_2_naming_the_value(small_engines_dir, args, says):
    from rsz_export.cli import main

    result = CliRunner().invoke(main, ["bench", str(small_engines_dir), *args])
    assert result.exit_code == 2 and says in result.output, result.output


def test_baseline_build_is_timed_beside_with_the_speed_up(tiny_engines, colour_engines, tmp_path):
    """``--baseline``: at every point the other build's engine runs in alternating windows; the row carries
    the baseline's p50 and the paired speed-up, and a baseline row follows it (instead of the static twin)."""
    spec = BenchSpec(str(tiny_engines), sizes=(Resolution(224, 224), Resolution(300, 240)), backends=("onnxruntime",),
                     policy=MeasurePolicy(warmup=0, iters=3), peak_matrix=256, baseline_dir=str(colour_engines))
    header, rows = run_bench(spec, lambda line: None)
    records = [r.record() for r in rows]
    assert [(r["variant"], r["size"]) for r in records] == [
        ("dynamic", "224x224"), ("baseline", "224x224"), ("dynamic", "300x240"), ("baseline", "300x240")]
    for main, base in zip(records[::2], records[1::2]):
        assert main["speedup"] > 0 and main["baseline_p50_ms"] == base["p50_ms"] and base["speedup"] is None
    assert header["baseline"]["engines_dir"] == str(colour_engines)
    assert "speed-up" in benchreport.render_table(rows)


def test_baseline_must_cover_every_point(tiny_engines, tmp_path):
    from rsz_export.pipeline.run import BuildSpec, build
    from tests.helpers import RANDOM_METADATA, tiny_onnx

    narrow = tmp_path / "narrow"
    model = tiny_onnx(tmp_path / "tiny.onnx", metadata=RANDOM_METADATA)
    build(BuildSpec(make_plan(224, 256), narrow, backend="onnxruntime", onnx=model, command="t"))
    spec = BenchSpec(str(tiny_engines), sizes=(Resolution(480, 480),), backends=("onnxruntime",),
                     policy=MeasurePolicy(warmup=0, iters=1), baseline_dir=str(narrow))
    with pytest.raises(UsageError, match="--baseline .* does not cover 480x480"):
        run_bench(spec, lambda line: None)
