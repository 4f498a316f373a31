"""Timing loops at the edge: per size x batch x backend latency, throughput, efficiency, memory, dynamic cost.

The statistics and the stop rule are pure (``benchstats``), rendering is in ``benchreport``; this module
owns the clocks, runners, sessions and result files. Each finished point is written at once (JSON and
CSV rewritten atomically), so an interrupted run keeps every point it measured.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

from rsz_export import benchreport
from rsz_export.backends import BACKENDS, require_backend
from rsz_export.backends.base import BuildOptions, Log
from rsz_export.benchenv import (
    TORCH,
    cuda_timer,
    device_for,
    engine_for,
    image_maker,
    matmul_peak_gflops,
    memory_snapshot,
    point_record,
    reset_peak_memory,
    row_context,
    run_header,
    variants,
    wall_timer,
)
from rsz_export.benchstats import (
    MeasurePolicy,
    gflops_per_s,
    is_stable,
    latency_stats,
    paired_ratio,
    peak_share,
    should_stop,
    throughput_ips,
    window_medians,
)
from rsz_export.errors import UsageError
from rsz_export.fileio import atomic_write_text
from rsz_export.flops import resnet50_flop
from rsz_export.manifest import EngineRecord, Manifest, load_manifest, verify_file
from rsz_export.planning import Plan, size_grid
from rsz_export.shapes import MAX_BATCH, BatchRange, InputShape, Profile, Resolution


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

    def __post_init__(self) -> None:
        if not self.batches:
            raise UsageError("--batch needs at least one batch size, e.g. 1 or 1,8")
        for b in self.batches:
            if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BATCH:
                raise UsageError(f"--batch values must be whole numbers in 1..{MAX_BATCH}, got {b!r}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise UsageError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
        if self.threads is not None and (isinstance(self.threads, bool) or not 1 <= self.threads <= 1024):
            raise UsageError(f"--threads must be a whole number in 1..1024, got {self.threads!r}")
        side = self.peak_matrix
        if isinstance(side, bool) or not isinstance(side, int) or not 64 <= side <= 16384:
            raise UsageError(f"peak matrix side must be a whole number in 64..16384, got {self.peak_matrix!r}")


@dataclass(frozen=True)
class Measurement:
    """Timed calls of one point: all samples, their window medians, and whether they settled."""

    samples_ms: tuple[float, ...]
    medians_ms: tuple[float, ...]
    stable: bool
    first_call_ms: float


def resolve_points(spec: BenchSpec, manifest: Manifest) -> tuple[list[Resolution], list[str]]:
    """The sizes (ascending by pixels) and backends to run; UsageError for points outside every profile."""
    plan = manifest.plan
    sizes = list(spec.sizes) or list(dict.fromkeys(p.size for p in size_grid(plan)))
    sizes.sort(key=lambda r: (r.pixels, r.h, r.w))
    built = list(dict.fromkeys(e.backend for e in manifest.engines))
    backends = list(spec.backends) or [*built, TORCH]
    missing = [b for b in backends if b != TORCH and b not in built]
    if missing:
        raise UsageError(
            f"--backends {', '.join(missing)}: {spec.engines_dir} holds no such engine (it has {', '.join(built)})",
            hint=f"build one with rsz-export build --backend {missing[0]}, or bench only --backends {TORCH}",
        )
    uncovered = [f"batch {b} at {s}" for b in spec.batches for s in sizes if plan.route(b, s.h, s.w) is None]
    if uncovered and backends != [TORCH]:
        more = " ..." if len(uncovered) > 4 else ""
        covered = plan.covered_ranges()
        raise UsageError(f"no profile covers {', '.join(uncovered[:4])}{more}", hint=f"covered: {covered}")
    return sizes, backends


def measure(calls: Sequence[Callable[[], float]], policy: MeasurePolicy, firsts_ms: Sequence[float]) -> list:
    """Warm up each call, then time alternating windows of each until ``should_stop`` holds for all of them.

    Each call returns its own duration in ms. Timing two variants (dynamic and static) in alternating
    windows lets a busy machine's slow spells fall on both alike, so their ratio stays meaningful.
    """
    warm = [[call() for _ in range(policy.warmup)] for call in calls]
    per_window = [policy.window_iters(min(w) if w else f) for w, f in zip(warm, firsts_ms, strict=True)]
    windows: list[list[list[float]]] = [[] for _ in calls]
    start, done = time.perf_counter(), 0
    while not all(should_stop(window_medians(w), time.perf_counter() - start, done, policy) for w in windows):
        for call, per, own in zip(calls, per_window, windows, strict=True):
            count = per if policy.iters is None else min(per, policy.iters - done)
            own.append([call() for _ in range(count)])
        done += count
    found = []
    for own, first in zip(windows, firsts_ms, strict=True):
        medians = window_medians(own)
        samples = tuple(s for w in own for s in w)
        found.append(Measurement(samples, tuple(medians), is_stable(medians, policy), first))
    return found


def make_row(point: dict, m: Measurement, peak_gflops: float | None, context: dict) -> dict:
    """One result record: the point, latency statistics, throughput, efficiency, then ``context`` (memory,
    provenance)."""
    stats = latency_stats(m.samples_ms)
    flop = resnet50_flop(point["batch"], point["h"], point["w"])
    achieved = gflops_per_s(flop, stats.p50_ms)
    return {
        **point,
        "iters": stats.n,
        "windows": len(m.medians_ms),
        "window_medians_ms": list(m.medians_ms),
        "stable": m.stable,
        **{k: getattr(stats, k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms")},
        "throughput_ips": throughput_ips(point["batch"], stats.mean_ms),
        "gflop": flop / 1e9,
        "gflops_per_s": achieved,
        "peak_gflops": peak_gflops,
        "peak_share": peak_share(achieved, peak_gflops),
        "first_call_after_shape_change_ms": m.first_call_ms,
        **context,
    }


class ResultSink:
    """Keeps the rows and rewrites the JSON and CSV files atomically after each one."""

    def __init__(self, spec: BenchSpec, header: dict):
        self.json_path, self.csv_path, self.header, self.rows = spec.json_path, spec.csv_path, header, []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.flush()

    def flush(self) -> None:
        # CSV first, JSON last: whoever sees a row in the JSON finds it in the CSV too. An interrupt between
        # the two leaves the CSV at most one row ahead, both files complete.
        if self.csv_path:
            atomic_write_text(self.csv_path, benchreport.to_csv(self.rows))
        if self.json_path:
            atomic_write_text(self.json_path, benchreport.to_json(self.header, self.rows))


@dataclass
class _Run:
    spec: BenchSpec
    manifest: Manifest
    header: dict
    sink: ResultSink
    log: Log
    images: Callable = field(default_factory=lambda: image_maker())


def run_bench(spec: BenchSpec, log: Log) -> tuple[dict, list[dict]]:
    """Measure every size x batch x backend point of ``spec``; return the run header and the rows."""
    from rsz_export.fileio import readers_lock

    with readers_lock(spec.engines_dir):  # a concurrent build keeps the files this run reads
        return _run_bench(spec, log)


def _run_bench(spec: BenchSpec, log: Log) -> tuple[dict, list[dict]]:
    manifest = load_manifest(spec.engines_dir)
    sizes, backends = resolve_points(spec, manifest)
    for name in backends:
        require_backend(name)
    threads = spec.threads or len(os.sched_getaffinity(0))
    header = run_header(spec, manifest, threads)
    run = _Run(spec, manifest, header, ResultSink(spec, header), log)
    for name in backends:
        device = device_for(name, manifest)
        peak = matmul_peak_gflops(name, threads, device, n=spec.peak_matrix)
        header["peak_gflops"][name] = peak
        log(f"{name}: measured FP32 matmul peak on {device}: {peak:.1f} GFLOP/s with {threads} threads")
        for variant, opener in variants(name, manifest, spec.engines_dir, threads, device):
            with ExitStack() as stack:
                runners = _RunnerCache(name, opener, manifest, stack)
                for batch in spec.batches:
                    _sweep(run, sizes, batch, (name, variant, device), runners, peak)
    run.sink.flush()
    return header, run.sink.rows


class _RunnerCache:
    """Opens each engine's runner once (engine-per-profile builds have several) and closes them on exit."""

    def __init__(self, backend: str, opener: Callable, manifest: Manifest, stack: ExitStack):
        self.backend, self.opener, self.manifest, self.stack, self.open = backend, opener, manifest, stack, {}

    def get(self, profile: int | None) -> tuple[object, EngineRecord | None]:
        engine = None if self.backend == TORCH else engine_for(self.manifest, self.backend, profile)
        key = engine.name if engine else None
        if key not in self.open:
            self.open[key] = self.stack.enter_context(self.opener(engine))
        return self.open[key], engine


def _sweep(run: _Run, sizes: list[Resolution], batch: int, what: tuple, runners: _RunnerCache, peak) -> None:
    name, variant, device = what
    timer = cuda_timer if device == "cuda" else wall_timer
    previous = sizes[-1] if len(sizes) > 1 else None
    for size in sizes:
        runner, engine = runners.get(run.manifest.plan.route(batch, size.h, size.w))
        if previous is not None:  # so the first timed call is the first after a change of shape
            runner.infer(run.images(batch, previous))
        reset_peak_memory(device)
        call = timer(functools.partial(runner.infer, run.images(batch, size)))
        first_ms = call()
        point = point_record(size, batch, name, variant, device, engine, runner.last_profile, previous)
        if run.spec.static and engine is not None:
            rows = _with_static_twin(run, engine, size, batch, (call, first_ms, point), peak)
        else:
            (m,) = measure((call,), run.spec.policy, (first_ms,))
            rows = [make_row(point, m, peak, {**memory_snapshot(device), **row_context(run.header)})]
        for row in rows:
            run.sink.add(row)
        run.log(benchreport.progress_line(rows[0]))
        previous = size


def _with_static_twin(run: _Run, engine: EngineRecord, size: Resolution, batch: int, dynamic: tuple, peak) -> list:
    """Time the dynamic engine and its shape-fixed twin in alternating windows; return both rows."""
    call, first_ms, point = dynamic
    device, context = point["device"], row_context(run.header)
    memory = memory_snapshot(device)  # before the twin is opened: the process then holds only the dynamic runner
    opener = _pinned_ort if engine.backend == "onnxruntime" else _static_trt
    with opener(run, engine, InputShape(batch, size.h, size.w)) as infer:
        reset_peak_memory(device)
        timer = cuda_timer if device == "cuda" else wall_timer
        static_call = timer(functools.partial(infer, run.images(batch, size)))
        static_first = static_call()
        m, sm = measure((call, static_call), run.spec.policy, (first_ms, static_first))
        static_memory = memory_snapshot(device)
    row = make_row(point, m, peak, {**memory, **context})
    static_point = point_record(size, batch, engine.backend, "static", device, engine, None, None)
    static_row = make_row(static_point, sm, peak, {**static_memory, **context})
    static_row["first_call_after_shape_change_ms"] = None  # a fixed-shape engine never changes shape
    row["static_p50_ms"] = static_row["p50_ms"]
    row["dynamic_over_static"] = paired_ratio(m.medians_ms, sm.medians_ms)
    return [row, static_row]


@contextmanager
def _pinned_ort(run: _Run, engine: EngineRecord, shape: InputShape):
    """The same ORT engine file and session settings, its batch/height/width pinned to this shape.

    Pinning is SessionOptions.add_free_dimension_override_by_name: no new file, the symbolic dims become
    numbers when the session is made, so ORT can specialise to the shape. The runner is the same class as
    the dynamic one, so the ratio measures the cost of dynamic shapes and nothing else.
    """
    ort_backend = require_backend("onnxruntime")
    threads = run.header["threads"]
    with ort_backend.open_runner(run.manifest, engine, run.spec.engines_dir, threads=threads, pinned=shape) as runner:
        yield lambda feed: runner.infer(feed)


@contextmanager
def _static_trt(run: _Run, engine: EngineRecord, shape: InputShape):
    """TensorRT with one profile min = opt = max = this shape, built by the backend's own builder."""
    import tempfile

    trt = require_backend("tensorrt")
    plan = single_profile_plan(run.manifest.plan, shape)
    onnx_path = verify_file(run.spec.engines_dir, run.manifest.onnx)
    options = BuildOptions(precision=engine.precision, device="cuda")
    with tempfile.TemporaryDirectory(prefix="rsz-static-") as tmp:
        records = trt.build_engines(onnx_path, plan, options, tmp, run.log)
        static_manifest = replace(run.manifest, plan=plan, engines=tuple(records))
        with trt.open_runner(static_manifest, records[0], tmp) as runner:
            yield lambda feed: runner.infer(feed, profile=0)


def single_profile_plan(plan: Plan, shape: InputShape) -> Plan:
    """``plan`` reduced to one profile fixed at ``shape`` (what a static engine is built from)."""
    batch = BatchRange(shape.batch, shape.batch, shape.batch)
    return replace(plan, batch=batch, profiles=(Profile(shape, shape, shape),))
