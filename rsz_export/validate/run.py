"""Parity of the exported ONNX and of every engine against the PyTorch reference, over a grid of sizes.

Order: (a) the ONNX file under ONNX Runtime against PyTorch, then (b) each engine against PyTorch, so a
failure says whether export or engine build is at fault. Reference outputs are computed once per
(size, batch, input) and reused by every stage. Engines whose file does not match the manifest, or that
their backend says cannot run here (another TensorRT version or GPU), become "not-run" cases with the
reason; they are never deserialised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsz_export import images as imgs
from rsz_export.errors import IntegrityError, RszError, UsageError
from rsz_export.manifest import EngineRecord, Manifest, WeightsRecord, load_manifest, verify_file
from rsz_export.parity import TolerancePolicy, combine, compare, judge
from rsz_export.planning import Plan, size_grid
from rsz_export.report import CaseResult, InputResult, ValidationReport
from rsz_export.shapes import MAX_BATCH, Resolution

Log = Callable[[str], None]
SHARED_GRAPH_BACKENDS = ("onnxruntime", "torch")
"""Backends whose one engine runs every profile with the same graph: a size is run once for all profiles."""
DEFAULT_RANDOM_INPUTS = 2
STACK_PIXELS = 6 * 512 * 512
"""Most pixels stacked into one reference or export-check batch (about 2 GB of activations in eager PyTorch)."""


@dataclass(frozen=True)
class ValidateSpec:
    """What to validate and how strictly. None tolerances keep each precision's preset."""

    directory: Path = Path("engines")
    sizes: tuple[Resolution, ...] = ()
    replace_sizes: bool = False
    batches: tuple[int, ...] = ()
    images_dir: Path | None = None
    random_inputs: int = DEFAULT_RANDOM_INPUTS
    seed: int = 0
    rtol: float | None = None
    atol: float | None = None
    min_top1: float | None = None

    def __post_init__(self) -> None:
        if self.replace_sizes and not self.sizes:
            raise UsageError("--replace-sizes needs --sizes: give the sizes to check instead of the grid")
        for b in self.batches:
            if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BATCH:
                raise UsageError(f"--batch values must be whole numbers in 1..{MAX_BATCH}, got {b!r}")
        count = self.random_inputs
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 64:
            raise UsageError(f"--random-inputs must be a whole number in 0..64, got {count!r}")
        TolerancePolicy.preset("fp32").override(self.rtol, self.atol, self.min_top1)  # checks the overrides

    def policy(self, precision: str) -> TolerancePolicy:
        return TolerancePolicy.preset(precision).override(self.rtol, self.atol, self.min_top1)


@dataclass(frozen=True)
class PlannedCase:
    """A (profiles, size, batch) to run on one stage or engine."""

    profiles: tuple[int, ...]
    size: Resolution
    batch: int


# ---- pure planning ---------------------------------------------------------------------------------


def _batches_for(plan: Plan, index: int, wanted: tuple[int, ...]) -> list[int]:
    p = plan.profiles[index]
    if not wanted:
        return [1 if p.min.batch <= 1 else p.min.batch]
    return [b for b in wanted if p.min.batch <= b <= p.max.batch]


def grid_points(plan: Plan, spec: ValidateSpec) -> list[tuple[int, Resolution, int]]:
    """(profile, size, batch) points: the shared size grid, plus or instead of --sizes, at the batches asked."""
    sizes = [] if spec.replace_sizes else [(g.profile, g.size) for g in size_grid(plan)]
    for size in spec.sizes:
        covering = [i for i, p in enumerate(plan.profiles) if p.covers(p.min.batch, size.h, size.w)]
        if not covering:
            raise UsageError(f"--sizes {size} is outside every profile of this build ({plan.covered_ranges()})")
        sizes += [(i, size) for i in covering]
    for b in spec.batches:
        if not any(p.min.batch <= b <= p.max.batch for p in plan.profiles):
            allowed = ", ".join(f"{p.min.batch}..{p.max.batch}" for p in plan.profiles)
            raise UsageError(f"--batch {b} is outside every profile's batch range ({allowed})")
    points = [(i, size, b) for i, size in sizes for b in _batches_for(plan, i, spec.batches)]
    return list(dict.fromkeys(points))


def plan_cases(points: list[tuple[int, Resolution, int]], profiles: tuple[int, ...], shared: bool) -> list[PlannedCase]:
    """The cases for one stage: the points of its profiles, merged per (size, batch) when the graph is shared."""
    mine = [pt for pt in points if pt[0] in profiles]
    if not shared:
        return [PlannedCase((i,), size, b) for i, size, b in mine]
    merged: dict[tuple[Resolution, int], list[int]] = {}
    for i, size, b in mine:
        merged.setdefault((size, b), []).append(i)
    return [PlannedCase(tuple(sorted(set(ps))), size, b) for (size, b), ps in merged.items()]


# ---- inputs and reference ----------------------------------------------------------------------------


@dataclass
class Inputs:
    """Named input sources (photographs and seeded noise) and the reference logits computed so far."""

    images: list[tuple[str, object]]
    random_seeds: list[int]
    reference_model: object
    _cache: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.images] + [f"random{s}" for s in self.random_seeds]

    def reference(self, size: Resolution, batch: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, input, reference logits) at ``size``; PyTorch runs once per size and batch, inputs stacked."""
        key = (size, batch)
        if key not in self._cache:
            feeds = imgs.named_inputs(self.images, self.random_seeds, size, batch)
            logits = stacked_forward(self.reference_model, [x for _, x in feeds])
            self._cache[key] = [(n, x, y) for (n, x), y in zip(feeds, logits, strict=True)]
        return self._cache[key]


def _chunks(arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Group inputs so each stack holds at most STACK_PIXELS pixels (bounds memory at large sizes)."""
    groups: list[list[np.ndarray]] = [[]]
    for x in arrays:
        if groups[-1] and sum(a.shape[0] * a.shape[2] * a.shape[3] for a in groups[-1] + [x]) > STACK_PIXELS:
            groups.append([])
        groups[-1].append(x)
    return [g for g in groups if g]


def stacked_forward(model, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The PyTorch reference on each input, run as a few stacked batches in channels-last layout.

    Why: eager PyTorch on a CPU is several times faster on one stacked channels-last batch than on
    single images (measured 3.8x on this project's 2-core machine); rows do not interact in eval mode.
    """
    import torch

    outputs = []
    with torch.inference_mode():
        for group in _chunks(arrays):
            x = torch.from_numpy(np.concatenate(group)).contiguous(memory_format=torch.channels_last)
            logits = model(x).float().numpy()
            outputs += np.split(logits, np.cumsum([a.shape[0] for a in group])[:-1])
    return outputs


def load_inputs(spec: ValidateSpec, reference_model) -> tuple[Inputs, list[tuple[str, str]]]:
    """The bundled photographs (or --images DIR) plus seeded random inputs, and the files skipped."""
    photos, skipped = imgs.load_photos(spec.images_dir)
    seeds = [spec.seed + k for k in range(spec.random_inputs)]
    return Inputs(photos, seeds, reference_model), [(str(s.path), s.reason) for s in skipped]


# ---- running -----------------------------------------------------------------------------------------


def _outputs(runner, feeds: list[np.ndarray], profile: int, stacked: bool) -> list[np.ndarray]:
    """The runner's logits for each feed: one call per feed, or a few stacked calls (dynamic-batch ONNX)."""
    if not stacked:
        return [np.asarray(runner.infer(x, profile=profile), dtype=np.float32) for x in feeds]
    outputs: list[np.ndarray] = []
    for group in _chunks(feeds):
        logits = np.asarray(runner.infer(np.concatenate(group), profile=profile), dtype=np.float32)
        outputs += np.split(logits, np.cumsum([a.shape[0] for a in group])[:-1])
    return outputs


def run_cases(
    runner,
    cases: list[PlannedCase],
    inputs: Inputs,
    meta: dict,
    policy: TolerancePolicy,
    log: Log,
    stacked: bool = False,
) -> list[CaseResult]:
    """Run every planned case on an open runner and judge it; a runtime error fails only its case."""
    results = []
    for case in cases:
        start = time.perf_counter()
        feeds = inputs.reference(case.size, case.batch)
        per_input, error = [], None
        try:
            outputs = _outputs(runner, [x for _, x, _ in feeds], case.profiles[0], stacked)
            pairs = zip(feeds, outputs, strict=True)  # a runner returning the wrong row count fails here
            per_input = [InputResult(name, compare(ref, out)) for (name, _, ref), out in pairs]
        except (RszError, RuntimeError, ValueError) as exc:  # ORT/TensorRT raise these for shapes they reject
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        results.append(_judged(case, meta, per_input, error, policy, time.perf_counter() - start))
        log(f"  {results[-1].label}: {results[-1].status} ({results[-1].seconds:.1f} s)")
    return results


def _judged(
    case: PlannedCase,
    meta: dict,
    per_input: list[InputResult],
    error: str | None,
    policy: TolerancePolicy,
    seconds: float,
) -> CaseResult:
    stats = combine([i.stats for i in per_input]) if per_input else None
    if error is not None:
        failures = (f"runtime error: {error}",)
    else:
        failures = judge(stats, policy).failures
    status = "failed" if failures else "passed"
    return CaseResult(
        **meta,
        profiles=case.profiles,
        size=case.size,
        batch=case.batch,
        status=status,
        stats=stats,
        inputs=tuple(per_input),
        policy=policy,
        failures=failures,
        seconds=seconds,
    )


def not_run(cases: list[PlannedCase], meta: dict, reason: str) -> list[CaseResult]:
    return [
        CaseResult(**meta, profiles=c.profiles, size=c.size, batch=c.batch, status="not-run", failures=(reason,))
        for c in cases
    ]


def _engine_refusal(manifest: Manifest, engine: EngineRecord, directory: Path, module) -> str | None:
    """Why ``engine`` must not be run (tampered file, foreign TensorRT/GPU), or None."""
    try:
        for record in (engine.file, *engine.extra_files):
            verify_file(directory, record)
    except IntegrityError as exc:
        return f"not run: {exc.message}"
    check = getattr(module, "check_compatible", None)
    reason = check(manifest, engine) if check else None
    return f"not run: {reason}" if reason else None


def _engine_results(
    manifest: Manifest, engine: EngineRecord, spec: ValidateSpec, points, inputs: Inputs, log: Log
) -> list[CaseResult]:
    from rsz_export.backends import require_backend

    module = require_backend(engine.backend)
    cases = plan_cases(points, engine.profiles, engine.backend in SHARED_GRAPH_BACKENDS)
    meta = {"stage": "engine", "engine": engine.name, "backend": engine.backend, "precision": engine.precision}
    log(f"engine {engine.name} ({engine.backend}, {engine.precision}): {len(cases)} case(s)")
    refusal = _engine_refusal(manifest, engine, spec.directory, module)
    if refusal:
        log(f"  {refusal}")
        return not_run(cases, meta, refusal)
    try:
        runner = module.open_runner(manifest, engine, spec.directory)
        with runner:
            return run_cases(runner, cases, inputs, meta, spec.policy(engine.precision), log)
    except (IntegrityError, UsageError) as exc:
        return not_run(cases, meta, f"not run: {exc.message}")


def _export_results(manifest: Manifest, spec: ValidateSpec, points, inputs: Inputs, log: Log) -> list[CaseResult]:
    cases = plan_cases(points, tuple(range(len(manifest.plan.profiles))), shared=True)
    meta = {"stage": "export", "engine": "onnx", "backend": "onnxruntime", "precision": "fp32"}
    log(f"export: {manifest.onnx.file} under ONNX Runtime, {len(cases)} size(s)")
    try:
        verify_file(spec.directory, manifest.onnx)
    except IntegrityError as exc:
        return not_run(cases, meta, f"not run: {exc.message}")
    with _onnx_file_runner(manifest, spec.directory) as runner:
        return run_cases(runner, cases, inputs, meta, spec.policy("fp32"), log, stacked=True)


def _onnx_file_runner(manifest: Manifest, directory: Path):
    """ONNX Runtime's CPU runner on the exported ONNX file itself, with the default session settings."""
    from rsz_export.backends import require_backend
    from rsz_export.backends.base import BuildOptions

    ort = require_backend("onnxruntime")
    record = EngineRecord(
        name="onnx",
        backend="onnxruntime",
        precision="fp32",
        file=manifest.onnx,
        profiles=tuple(range(len(manifest.plan.profiles))),
        build_seconds=0.0,
        settings=ort.session_settings(BuildOptions()),
    )
    return ort.open_runner(manifest, record, directory)


_SEEDED_REFERENCES: dict = {}


def reference_model(record: WeightsRecord, directory: Path):
    """The PyTorch reference for a manifest's weights, in channels-last layout (faster on CPUs).

    Seeded random weights take ~10 s to regenerate (a float64 calibration pass), so within one process
    they are kept per WeightsRecord (seed and sha256 included): regenerating them gives the same bytes.
    Weights from files are re-read and re-verified every time.
    """
    import torch

    from rsz_export.model import reference_from_record

    if record.id == "random" and record in _SEEDED_REFERENCES:
        return _SEEDED_REFERENCES[record]
    model = reference_from_record(record, directory).to(memory_format=torch.channels_last)
    if record.id == "random":
        _SEEDED_REFERENCES.clear()
        _SEEDED_REFERENCES[record] = model
    return model


def _check_backends(manifest: Manifest) -> None:
    """Exit 3 before any work when a backend the manifest needs cannot run on this machine."""
    from rsz_export.backends import require_backend

    for backend in dict.fromkeys(e.backend for e in manifest.engines):
        require_backend(backend)


def validate(spec: ValidateSpec, log: Log = lambda message: None) -> ValidationReport:
    """Check the ONNX export and every engine in ``spec.directory`` against PyTorch; never raises on parity.

    Holds the folder's readers' lock throughout, so a concurrent build keeps the files this run reads."""
    from rsz_export.fileio import readers_lock

    with readers_lock(spec.directory):
        return _validate(spec, log)


def _validate(spec: ValidateSpec, log: Log) -> ValidationReport:
    start = time.perf_counter()
    manifest = load_manifest(spec.directory)
    points = grid_points(manifest.plan, spec)
    _check_backends(manifest)
    model = reference_model(manifest.weights, spec.directory)
    inputs, skipped = load_inputs(spec, model)
    log(f"{len(points)} grid point(s), {len(inputs.names)} input(s): {', '.join(inputs.names)}")
    results = _export_results(manifest, spec, points, inputs, log)
    for engine in manifest.engines:
        results += _engine_results(manifest, engine, spec, points, inputs, log)
    return ValidationReport(
        directory=str(spec.directory),
        cases=tuple(results),
        inputs=tuple(inputs.names),
        skipped_inputs=tuple(skipped),
        seconds=time.perf_counter() - start,
        environment={
            "weights": manifest.weights.id,
            "backend": manifest.backend,
            "precision": manifest.precision,
            "plan": manifest.plan.covered_ranges(),
        },
    )
