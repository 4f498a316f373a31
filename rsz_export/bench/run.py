"""A bench run: every size x batch x backend point of a build timed, beside PyTorch, with the dynamic engine
paired against a shape-fixed twin. Each finished point is written at once (JSON and CSV rewritten
atomically), so an interrupted run keeps every point it measured.

The statistics and stop rule are in ``stats``, the loop in ``loop``, rows in ``rows``, rendering in ``report``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from rsz_export.artifacts.files import atomic_write_text, readers_lock
from rsz_export.artifacts.host import MAX_THREADS, usable_cpus
from rsz_export.artifacts.manifest import EngineRecord, Manifest, load_manifest
from rsz_export.backends import BACKENDS, REFERENCE, load_backend, require_backend
from rsz_export.backends.base import RunnerOptions
from rsz_export.bench import report
from rsz_export.bench.loop import cuda_timer, image_maker, measure, median_or_none, wall_timer, with_gpu_time
from rsz_export.bench.probes import (
    machine_info,
    matmul_peak_gflops,
    memory_snapshot,
    peak_math,
    reset_peak_memory,
    versions,
)
from rsz_export.bench.rows import BenchRow, Point, make_row, paired_with_baseline, paired_with_static
from rsz_export.bench.runners import baseline_manifest, device_for, engine_for, shape_change_feed, variants
from rsz_export.bench.stats import MeasurePolicy
from rsz_export.errors import EnvironmentProblem, UsageError, check_int
from rsz_export.interface import Log
from rsz_export.plan.grid import size_grid
from rsz_export.plan.profiles import route
from rsz_export.shapes import MAX_BATCH, InputShape, Resolution


@dataclass(frozen=True)
class BenchSpec:
    """One bench run. Empty ``sizes``: the plan's shared size grid; empty ``backends``: engines + torch."""

    engines_dir: str
    sizes: tuple[Resolution, ...] = ()
    batches: tuple[int, ...] = (1,)
    backends: tuple[str, ...] = ()
    policy: MeasurePolicy = field(default_factory=MeasurePolicy)
    threads: int | None = None
    static: bool = True
    json_path: str | None = None
    csv_path: str | None = None
    peak_matrix: int = 2048
    """Side of the square FP32 matrices whose product measures the machine's peak."""
    baseline_dir: str | None = None
    """Another build folder (e.g. the fp32 build of an int8 one): its engine of the same backend is timed at
    every point in alternating windows with this folder's, giving a ``baseline`` row and the speed-up. Replaces
    the shape-fixed twin."""

    def __post_init__(self) -> None:
        if not self.batches:
            raise UsageError("--batches needs at least one batch size, e.g. 1 or 1,8")
        for b in self.batches:
            check_int(b, "--batches values", 1, MAX_BATCH)
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise UsageError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
        if self.threads is not None:
            check_int(self.threads, "--threads", 1, MAX_THREADS)
        check_int(self.peak_matrix, "peak matrix side", 64, 16384)


def resolve_points(spec: BenchSpec, manifest: Manifest) -> tuple[list[Resolution], list[str]]:
    """The sizes (ascending by pixels) and backends to run; UsageError for points outside every profile."""
    plan = manifest.plan
    sizes = list(spec.sizes) or list(dict.fromkeys(p.size for p in size_grid(plan)))
    sizes.sort(key=lambda r: (r.pixels, r.h, r.w))
    built = list(dict.fromkeys(e.backend for e in manifest.engines))
    backends = list(spec.backends) or [*built, REFERENCE]
    missing = [b for b in backends if load_backend(b).builds and b not in built]
    if missing:
        raise UsageError(
            f"--backends {', '.join(missing)}: {spec.engines_dir} holds no such engine (it has {', '.join(built)})",
            hint=f"build one with rsz-export build --backend {missing[0]}, or bench only --backends {REFERENCE}",
        )
    uncovered = [f"batch {b} at {s}" for b in spec.batches for s in sizes if route(plan.profiles, b, s.h, s.w) is None]
    if uncovered and any(load_backend(b).builds for b in backends):
        more = " ..." if len(uncovered) > 4 else ""
        covered = plan.covered_ranges()
        raise UsageError(f"no profile covers {', '.join(uncovered[:4])}{more}", hint=f"covered: {covered}")
    return sizes, backends


def run_header(spec: BenchSpec, manifest: Manifest, threads: int) -> dict:
    """What every row shares: date, machine, versions, threads, the plan and its profile boundaries."""
    return {
        "schema": report.SCHEMA,
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "versions": versions(),
        "threads": threads,
        "engines_dir": str(spec.engines_dir),
        "weights": manifest.weights.id,
        "num_classes": manifest.num_classes,
        "outputs": manifest.outputs,
        "plan": manifest.plan.to_dict(),
        "profile_boundaries": [p.max.h for p in manifest.plan.profiles[:-1]],
        "policy": asdict(spec.policy),
        "peak_gflops": {},
        "peak_math": {},
    }


class ResultSink:
    """Keeps the rows and rewrites the JSON and CSV files atomically after each one."""

    def __init__(self, spec: BenchSpec, header: dict):
        self.json_path, self.csv_path, self.header = spec.json_path, spec.csv_path, header
        self.rows: list[BenchRow] = []

    def add(self, row: BenchRow) -> None:
        self.rows.append(row)
        self.flush()

    def flush(self) -> None:
        # CSV first, JSON last: whoever sees a row in the JSON finds it in the CSV too. An interrupt between
        # the two leaves the CSV at most one row ahead, both files complete.
        if self.csv_path:
            atomic_write_text(self.csv_path, report.to_csv(self.rows))
        if self.json_path:
            atomic_write_text(self.json_path, report.to_json(self.header, self.rows))


@dataclass
class _Run:
    spec: BenchSpec
    manifest: Manifest
    header: dict
    sink: ResultSink
    log: Log
    images: Callable = field(default_factory=image_maker)
    baseline: Manifest | None = None


def run_bench(spec: BenchSpec, log: Log) -> tuple[dict, list[BenchRow]]:
    """Measure every size x batch x backend point of ``spec``; return the run header and the rows."""
    with ExitStack() as locks:  # a concurrent build keeps the files this run reads
        for folder in (spec.engines_dir, *([spec.baseline_dir] if spec.baseline_dir else [])):
            locks.enter_context(readers_lock(folder))
        return _run_bench(spec, log)


def _run_bench(spec: BenchSpec, log: Log) -> tuple[dict, list[BenchRow]]:
    manifest = load_manifest(spec.engines_dir)
    sizes, backends = resolve_points(spec, manifest)
    for name in backends:
        _check_engines(require_backend(name), manifest)
    threads = spec.threads or usable_cpus()
    header = run_header(spec, manifest, threads)
    baseline = baseline_manifest(spec.baseline_dir, spec.batches, sizes, backends)
    run = _Run(spec, manifest, header, ResultSink(spec, header), log, baseline=baseline)
    if run.baseline is not None:
        header["baseline"] = {"engines_dir": str(spec.baseline_dir), "precision": run.baseline.precision}
    for name in backends:
        device, math = device_for(name, manifest), peak_math(manifest, name)
        peak = matmul_peak_gflops(name, threads, device, n=spec.peak_matrix, math=math)
        header["peak_gflops"][name], header["peak_math"][name] = peak, math
        log(f"{name}: measured {math} matmul peak on {device}: {peak:.1f} GFLOP/s with {threads} threads")
        for variant, opener in variants(name, manifest, spec.engines_dir, threads, device):
            with ExitStack() as stack:
                runners = _RunnerCache(name, opener, manifest, stack)
                for batch in spec.batches:
                    _sweep(run, sizes, batch, (name, variant, device), runners, peak)
    run.sink.flush()
    return header, run.sink.rows


def _check_engines(backend, manifest: Manifest) -> None:
    """Exit 3 before any measurement when one of the backend's engines cannot run here (another GPU or version)."""
    for engine in backend.engines_of(manifest):
        if problem := backend.check_compatible(manifest, engine):
            raise EnvironmentProblem(f"engine {engine.name}: {problem}")


class _RunnerCache:
    """Opens each engine's runner once (engine-per-profile builds have several) and closes them on exit."""

    def __init__(self, backend: str, opener: Callable, manifest: Manifest, stack: ExitStack):
        self.backend, self.opener, self.manifest, self.stack, self.open = backend, opener, manifest, stack, {}

    def get(self, profile: int | None) -> tuple[object, EngineRecord | None]:
        builds = load_backend(self.backend).builds
        engine = engine_for(self.manifest, self.backend, profile) if builds else None
        key = engine.name if engine else None
        if key not in self.open:
            self.open[key] = self.stack.enter_context(self.opener(engine))
        return self.open[key], engine


def _timer(backend: str, device: str):
    """CUDA events around a PyTorch call (it works on the current stream); the wall clock for engine runners,
    which work on their own streams and return host arrays only after synchronizing them (end to end)."""
    return cuda_timer if device == "cuda" and load_backend(backend).times_on_current_stream else wall_timer


def _sweep(run: _Run, sizes: list[Resolution], batch: int, what: tuple, runners: _RunnerCache, peak) -> None:
    name, variant, device = what
    previous = sizes[-1] if len(sizes) > 1 else None
    for size in sizes:
        runner, engine = runners.get(route(run.manifest.plan.profiles, batch, size.h, size.w))
        warm = shape_change_feed(run.manifest.plan, engine, batch, size, previous)
        if warm is not None:  # so the first timed call is the first after a change of shape
            runner.infer(run.images(batch, warm))
        reset_peak_memory(device)
        call = _timer(name, device)(functools.partial(runner.infer, run.images(batch, size)))
        first_ms = call()
        call, gpu_ms = with_gpu_time(call, runner) if load_backend(name).measures_gpu_time else (call, [])
        point = Point(
            size, batch, name, variant, device,
            engine.name if engine else None, engine.precision if engine else "fp32", runner.last_profile, warm,
        )
        if run.baseline is not None and engine is not None:
            rows = _with_baseline(run, point, (call, first_ms), peak)
        elif run.spec.static and engine is not None:
            rows = _with_static_twin(run, engine, point, (call, first_ms), peak)
        else:
            (m,) = measure((call,), run.spec.policy, (first_ms,))
            rows = [make_row(point, m, peak, memory_snapshot(device), run.header)]
        engine_figures = load_backend(name).engine_memory(engine, point.profile) if engine else {}
        memory = {**rows[0].memory, **engine_figures}
        rows[0] = replace(rows[0], memory=memory, gpu_compute_p50_ms=median_or_none(gpu_ms))
        for row in rows:
            run.sink.add(row)
        run.log(report.progress_line(rows[0]))
        previous = size


def _with_static_twin(run: _Run, engine: EngineRecord, point: Point, dynamic: tuple, peak) -> list[BenchRow]:
    """Time the dynamic engine and its shape-fixed twin in alternating windows; return both rows."""
    call, first_ms = dynamic
    memory = memory_snapshot(point.device)  # before the twin is opened: the process holds only the dynamic runner
    shape = InputShape(point.batch, point.size.h, point.size.w)
    options = RunnerOptions(threads=run.header["threads"])
    twin = load_backend(engine.backend).static_twin(run.manifest, engine, run.spec.engines_dir, shape, options, run.log)
    with twin as infer:
        reset_peak_memory(point.device)
        static_call = _timer(point.backend, point.device)(functools.partial(infer, run.images(point.batch, point.size)))
        static_first = static_call()
        m, sm = measure((call, static_call), run.spec.policy, (first_ms, static_first))
        static_memory = memory_snapshot(point.device)
    static_point = replace(point, variant="static", profile=None, previous=None)
    never_changes = replace(sm, first_call_ms=None)  # a fixed-shape engine never changes shape
    static_row = make_row(static_point, never_changes, peak, static_memory, run.header)
    row = paired_with_static(make_row(point, m, peak, memory, run.header), static_row)
    return [row, static_row]


def _with_baseline(run: _Run, point: Point, timed: tuple, peak) -> list[BenchRow]:
    """Time the engine and the baseline build's engine of the same backend at the same point in alternating
    windows (one session runs at a time); return both rows, the first with the speed-up."""
    call, first_ms = timed
    memory = memory_snapshot(point.device)
    backend, baseline = point.backend, run.baseline
    profile = route(baseline.plan.profiles, point.batch, point.size.h, point.size.w)
    engine = engine_for(baseline, backend, profile)
    (_, opener), *_ = variants(backend, baseline, run.spec.baseline_dir, run.header["threads"], point.device)
    with opener(engine) as runner:
        feed = run.images(point.batch, point.size)
        base_call = _timer(backend, point.device)(functools.partial(runner.infer, feed))
        base_first = base_call()
        m, bm = measure((call, base_call), run.spec.policy, (first_ms, base_first))
        base_memory = memory_snapshot(point.device)
        base_point = replace(point, variant="baseline", engine=engine.name, precision=engine.precision,
                             profile=runner.last_profile, previous=None)
    base_row = make_row(base_point, replace(bm, first_call_ms=None), peak, base_memory, run.header)
    return [paired_with_baseline(make_row(point, m, peak, memory, run.header), base_row), base_row]
