"""Parity of the exported ONNX and of every engine against the PyTorch reference, over a grid of sizes.

Order: (a) the ONNX file under ONNX Runtime against PyTorch, then (b) each engine against PyTorch, so a
failure says whether export or engine build is at fault. Reference outputs are computed once per
(size, batch, input) and reused by every stage. Engines whose file does not match the manifest, or that
their backend says cannot run here (another TensorRT version or GPU), become "not-run" cases with the
reason; they are never deserialised.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rsz_export.artifacts.files import readers_lock
from rsz_export.artifacts.manifest import EngineRecord, Manifest, load_manifest, verify_file
from rsz_export.backends import EXPORT_RUNTIME, export_runner, require_backend
from rsz_export.errors import IntegrityError, RszError, UsageError
from rsz_export.interface import OUTPUT_NAME, Log
from rsz_export.parity import combine, compare
from rsz_export.validate.cases import PlannedCase, ValidateSpec, grid_points, plan_cases
from rsz_export.validate.reference import Inputs, chunks, load_inputs, reference_model, split_rows
from rsz_export.validate.report import CaseResult, InputResult, ValidationReport
from rsz_export.validate.tolerance import TolerancePolicy, judge


def _outputs(runner, feeds: list[np.ndarray], profile: int, stacked: bool, multi: bool = False) -> list:
    """The runner's logits for each feed (with ``multi``: the list of every output): one call per feed, or a few
    stacked calls (dynamic-batch ONNX)."""
    def run(x):
        if multi:
            return [np.asarray(o, dtype=np.float32) for o in runner.infer_all(x, profile=profile)]
        return np.asarray(runner.infer(x, profile=profile), dtype=np.float32)

    if not stacked:
        return [run(x) for x in feeds]
    outputs: list = []
    for group in chunks(feeds):
        outputs += split_rows(run(np.concatenate(group)), group)
    return outputs


def _map_stats(reference: np.ndarray, output: np.ndarray):
    """A feature map against the reference's, each image's map as one row (same shape required)."""
    if reference.shape != output.shape:
        raise ValueError(f"output of shape {list(output.shape)}, expected {list(reference.shape)}")
    return compare(reference.reshape(len(reference), -1), output.reshape(len(output), -1))


def run_cases(
    runner,
    cases: list[PlannedCase],
    inputs: Inputs,
    meta: dict,
    policy: TolerancePolicy,
    log: Log,
    stacked: bool = False,
    names: tuple[str, ...] = (),
) -> list[CaseResult]:
    """Run every planned case on an open runner and judge it; a runtime error fails only its case. ``names``:
    a backbone's outputs, each judged (and reported) as a case of its own; empty for logits."""
    results = []
    for case in cases:
        start = time.perf_counter()
        feeds = inputs.reference(case.size, case.batch, policy.images_only)
        per_output, error = {name: [] for name in names or (OUTPUT_NAME,)}, None
        try:
            outputs = _outputs(runner, [x for _, x, _ in feeds], case.profiles[0], stacked, bool(names))
            for (name, _, ref), out in zip(feeds, outputs, strict=True):  # wrong row counts fail here
                if not names:
                    per_output[OUTPUT_NAME].append(InputResult(name, compare(ref, out)))
                    continue
                if len(out) != len(names):
                    raise ValueError(f"the engine gives {len(out)} output(s), expected {len(names)}")
                for output, want, got in zip(names, ref, out, strict=True):
                    per_output[output].append(InputResult(name, _map_stats(want, got)))
        except (RszError, RuntimeError, ValueError) as exc:  # ORT/TensorRT raise these for shapes they reject
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        seconds = (time.perf_counter() - start) / len(per_output)
        for output, per_input in per_output.items():
            case_meta = {**meta, "output": output} if names else meta
            results.append(_judged(case, case_meta, per_input if error is None else [], error, policy, seconds))
            log(f"{results[-1].label}: {results[-1].status} ({results[-1].seconds:.1f} s)")
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
        **meta, profiles=case.profiles, size=case.size, batch=case.batch, status=status, stats=stats,
        inputs=tuple(per_input), policy=policy, failures=failures, seconds=seconds,
    )


def not_run(cases: list[PlannedCase], meta: dict, reason: str) -> list[CaseResult]:
    return [
        CaseResult(**meta, profiles=c.profiles, size=c.size, batch=c.batch, status="not-run", failures=(reason,))
        for c in cases
    ]


def _engine_refusal(manifest: Manifest, engine: EngineRecord, directory: Path, backend) -> str | None:
    """Why ``engine`` must not be run (tampered file, foreign TensorRT/GPU), or None."""
    try:
        for record in (engine.file, *engine.extra_files):
            verify_file(directory, record)
    except IntegrityError as exc:
        return f"not run: {exc.message}"
    reason = backend.check_compatible(manifest, engine)
    return f"not run: {reason}" if reason else None


def _engine_results(
    manifest: Manifest, engine: EngineRecord, spec: ValidateSpec, points, inputs: Inputs, log: Log
) -> list[CaseResult]:
    backend = require_backend(engine.backend)
    cases = plan_cases(points, engine.profiles, backend.shares_graph)  # one graph for every profile: a size once
    meta = {"stage": "engine", "engine": engine.name, "backend": engine.backend, "precision": engine.precision}
    log(f"engine {engine.name} ({engine.backend}, {engine.precision}): {len(cases)} case(s)")
    refusal = _engine_refusal(manifest, engine, spec.directory, backend)
    if refusal:
        log(refusal)
        return not_run(cases, meta, refusal)
    try:
        runner = backend.open_runner(manifest, engine, spec.directory)
        with runner:
            return run_cases(runner, cases, inputs, meta, spec.policy(engine.precision, manifest.outputs), log,
                             names=_map_names(manifest))
    except (IntegrityError, UsageError) as exc:
        return not_run(cases, meta, f"not run: {exc.message}")


def _export_results(manifest: Manifest, spec: ValidateSpec, points, inputs: Inputs, log: Log) -> list[CaseResult]:
    cases = plan_cases(points, tuple(range(len(manifest.plan.profiles))), shared=True)
    meta = {"stage": "export", "engine": "onnx", "backend": EXPORT_RUNTIME, "precision": "fp32"}
    log(f"export: {manifest.onnx.file} under ONNX Runtime, {len(cases)} size(s)")
    try:
        verify_file(spec.directory, manifest.onnx)
    except IntegrityError as exc:
        return not_run(cases, meta, f"not run: {exc.message}")
    with export_runner(manifest, spec.directory) as runner:
        return run_cases(runner, cases, inputs, meta, spec.policy("fp32", manifest.outputs), log, stacked=True,
                         names=_map_names(manifest))


def _map_names(manifest: Manifest) -> tuple[str, ...]:
    """The feature maps judged one by one (empty for a classifier: its logits are the one case)."""
    return () if manifest.has_classes else manifest.output_names


def _check_backends(manifest: Manifest) -> None:
    """Exit 3 before any work when a backend the manifest needs cannot run on this machine."""
    for backend in dict.fromkeys(e.backend for e in manifest.engines):
        require_backend(backend)


def validate(spec: ValidateSpec, log: Log = lambda message: None) -> ValidationReport:
    """Check the ONNX export and every engine in ``spec.directory`` against PyTorch; never raises on parity.

    Holds the folder's readers' lock throughout, so a concurrent build keeps the files this run reads."""
    with readers_lock(spec.directory):
        return _validate(spec, log)


def _validate(spec: ValidateSpec, log: Log) -> ValidationReport:
    start = time.perf_counter()
    manifest = load_manifest(spec.directory)
    points = grid_points(manifest.plan, spec, manifest.outputs)
    _check_backends(manifest)
    model = reference_model(manifest.weights, spec.directory, manifest.outputs)
    inputs, skipped = load_inputs(spec, model, manifest.outputs, [size for _, size, _ in points])
    turn = f", {inputs.per_size} per size in turn" if inputs.per_size else ""
    log(f"{len(points)} grid point(s), {len(inputs.names)} input(s){turn}: {', '.join(inputs.names)}")
    results = _export_results(manifest, spec, points, inputs, log)
    for engine in manifest.engines:
        results += _engine_results(manifest, engine, spec, points, inputs, log)
    return ValidationReport(
        directory=str(spec.directory),
        cases=tuple(results),
        inputs=tuple(inputs.names),
        inputs_per_size=inputs.per_size,
        skipped_inputs=tuple(skipped),
        seconds=time.perf_counter() - start,
        environment={
            "weights": manifest.weights.id,
            "backend": manifest.backend,
            "precision": manifest.precision,
            "plan": manifest.plan.covered_ranges(),
            **({} if manifest.has_classes else {"outputs": list(manifest.output_names)}),
        },
    )
