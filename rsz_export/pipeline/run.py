"""The build: weights -> ONNX export (reused when unchanged) -> class names -> engines -> manifest, in one
output folder.

The inputs are resolved and checked first (``inputs``: weights, class count, names), before anything is written.
Every stage has a cache key over everything that affects its result (``keys``); a rerun whose keys match the
manifest, and whose files still match their sha256, reuses them without importing torch (for a checkpoint file
the manifest remembers what its bytes hold). ``build --onnx`` starts from a user's ONNX instead of an export
(``onnx_import``); ``stages`` holds the stages, ``cleanup`` keeps the folder tidy. The manifest is written last,
atomically, under the folder's write lock.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from rsz_export import __version__
from rsz_export.artifacts.files import directory_lock, ensure_writable_dir
from rsz_export.artifacts.host import host_info, library_versions, usable_cpus
from rsz_export.artifacts.manifest import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    files_intact,
    load_previous_manifest,
    save_manifest,
)
from rsz_export.backends import choose_backend, require_backend
from rsz_export.backends.base import TIMING_CACHE_NAME, Backend, BuildOptions
from rsz_export.errors import UsageError, check_choice
from rsz_export.interface import DEFAULT_OUTPUTS, OUTPUT_KINDS, PRECISIONS, Log, output_names
from rsz_export.model.calibration_set import CalibrationSet, CalibSpec, resolve_calibration_set
from rsz_export.model.weights import check_num_classes
from rsz_export.pipeline.calibration_stage import calibration_stage
from rsz_export.pipeline.cleanup import drop_untrusted_timing_cache, remove_partial, remove_stale
from rsz_export.pipeline.context import BuildContext
from rsz_export.pipeline.inputs import BuildInputs, resolve_inputs
from rsz_export.pipeline.keys import engine_dir_name, stage_keys
from rsz_export.pipeline.stages import export_stage, import_stage, labels_stage, reusable_engines
from rsz_export.plan.profiles import Plan


@dataclass(frozen=True)
class BuildSpec:
    """What to build. ``weights=None`` means the default pretrained weights, falling back to random.

    ``onnx``: build from this user-provided ONNX instead of exporting (its interface is checked first); the
    weights it was exported from come from its rsz_export metadata, or from ``weights`` when given.
    ``num_classes``: the head of ``weights="random"`` (a check for other weights, whose head sets it).
    ``labels``: a file of class names (one per line, or a JSON list), one per class, stored with the build.
    ``calibration``: the int8 calibration set and method (None with int8: the defaults, bundled photographs).
    """

    plan: Plan
    out_dir: Path
    backend: str = "auto"
    weights: str | None = None
    seed: int = 0
    options: BuildOptions = field(default_factory=BuildOptions)
    force: bool = False
    verify: bool = True
    command: str = ""
    onnx: Path | None = None
    num_classes: int | None = None
    labels: Path | None = None
    calibration: CalibSpec | None = None
    export_cache: bool = True
    """Take the export from, and add it to, the user's shared export cache (``artifacts.export_cache``)."""
    outputs: str = DEFAULT_OUTPUTS
    """What the model gives (``--outputs``): logits, or a backbone's feature maps (``model.backbone``)."""

    def __post_init__(self) -> None:
        check_choice(self.options.precision, "precision", PRECISIONS)
        check_choice(self.outputs, "--outputs", OUTPUT_KINDS)
        check_num_classes(self.num_classes)
        check_outputs_options(self.outputs, self.labels, self.num_classes)
        if self.calibration is not None and self.options.precision != "int8":
            raise UsageError("--calib, --calib-count, --calib-method, --holdout and --int8-target are for int8 "
                             "engines: add --precision int8")


def check_outputs_options(outputs: str, labels=None, num_classes: int | None = None) -> None:
    """UsageError (exit 2) for class options given to a build whose model gives feature maps (it has no classes)."""
    if outputs != DEFAULT_OUTPUTS and (labels is not None or num_classes is not None):
        option = "--labels" if labels is not None else "--num-classes"
        raise UsageError(
            f"{option} names classes, and an --outputs {outputs} build has none: its model gives feature "
            f"maps ({', '.join(output_names(outputs))}), not class logits",
            hint=f"leave {option} out, or build a classifier (--outputs logits)",
        )


@dataclass(frozen=True)
class BuildResult:
    """The manifest now in the folder, and whether it was reused as it was."""

    manifest: Manifest
    reused: bool


def build(spec: BuildSpec, log: Log = lambda message: None) -> BuildResult:
    """Export, plan and build engines into ``spec.out_dir``; write the manifest last, atomically."""
    name, reason, candidates = choose_backend(spec.backend, spec.options.precision)
    if spec.outputs != DEFAULT_OUTPUTS:
        name, reason, candidates = _for_feature_maps(spec, name, reason, candidates)
    backend = require_backend(name)
    backend.check_options(spec.options)  # what the backend allows (precision, device), before anything is written
    known = None if spec.force else load_previous_manifest(spec.out_dir)
    inputs = resolve_inputs(spec, known)  # every check of the inputs, before anything is written
    calib = None
    if spec.options.precision == "int8":
        calib = resolve_calibration_set(spec.calibration or CalibSpec(seed=spec.seed), spec.plan)
    created = not Path(spec.out_dir).exists()
    out_dir = ensure_writable_dir(spec.out_dir)
    with directory_lock(out_dir, "build", created=created):
        return _build_locked(spec, (backend, candidates), reason, out_dir, log, inputs, calib)


def _for_feature_maps(spec, name: str, reason: str, candidates: tuple[str, ...]) -> tuple[str, str, tuple]:
    """The backend choice for a model with several outputs: backends whose runners give them all (UsageError
    for one asked for that does not)."""
    from rsz_export.backends import load_backend

    able = tuple(c for c in candidates if load_backend(c).gives_every_output)
    if candidates and len(able) < len(candidates):
        return able[0], f"backend {able[0]} (auto: the only CPU runtime here that gives every feature map)", ()
    if not load_backend(name).gives_every_output:
        raise UsageError(f"--backend {name} engines give one output, and an --outputs {spec.outputs} model gives "
                         f"{len(output_names(spec.outputs))} feature maps",
                         hint="build it with --backend onnxruntime (or tensorrt on a GPU)")
    return name, reason, candidates


def _build_files(manifest: Manifest) -> list[FileRecord]:
    labels = [manifest.labels.file] if manifest.labels else []
    calibration = [manifest.calibration.file] if manifest.calibration else []
    return [manifest.onnx, *manifest.engine_files(), *labels, *calibration]


def _build_locked(spec, choice: tuple[Backend, tuple[str, ...]], reason, out_dir: Path, log: Log,
                  inputs: BuildInputs, calib: CalibrationSet | None) -> BuildResult:
    remove_partial(out_dir)
    versions = library_versions()
    previous = None if spec.force else load_previous_manifest(out_dir)
    backend, candidates = choice
    if previous is not None and previous.backend in candidates:  # an earlier auto choice: reused if all else matches
        backend = require_backend(previous.backend)
    calib_data = None if calib is None else calib.key_data()
    keys = stage_keys(spec, backend.name, inputs.weights_key, versions, inputs.recorded(), calib_data)
    ctx = BuildContext(spec, out_dir, keys, previous, log)
    runs_here = previous is not None and _runs_here(backend, previous, log)
    if runs_here and previous.keys == keys.to_dict() and files_intact(out_dir, _build_files(previous)):
        log(f"up to date: reusing {out_dir / MANIFEST_NAME} (use --force to rebuild)")
        return BuildResult(previous, True)
    log(f"[1/3] {reason}")
    stage = export_stage if inputs.imported is None else import_stage
    onnx_record, weights = stage(ctx, inputs)
    labels = labels_stage(ctx, inputs)
    calibration = None if calib is None else calibration_stage(ctx, calib, onnx_record, backend.name)
    engines = reusable_engines(ctx) if runs_here else None
    auto = None
    if engines is None and candidates:
        auto = _timed_choice(spec, out_dir, onnx_record, calibration, log)
        if auto["chosen"] != backend.name:
            backend = require_backend(auto["chosen"])
            keys = stage_keys(spec, backend.name, inputs.weights_key, versions, inputs.recorded(), calib_data)
            ctx = replace(ctx, keys=keys)
    if engines is None:
        engines = _engine_stage(ctx, backend, onnx_record, calibration)
        engines = [replace(e, settings={**e.settings, "auto_choice": auto}) for e in engines] if auto else engines
    else:
        log(f"[2/3] reusing the {backend.name} engines (same export, plan and options)")
    manifest = Manifest(
        tool_version=__version__, command=spec.command,
        created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        host=host_info(), versions=versions, onnx=onnx_record, weights=weights, backend=backend.name,
        precision=spec.options.precision, plan=spec.plan, engines=tuple(engines), cache_key=keys.engines,
        warnings=tuple(w for w in (inputs.warning, calib and calib.warning) if w), keys=keys.to_dict(),
        num_classes=inputs.num_classes, labels=labels, calibration=calibration, outputs=spec.outputs,
    )
    log(f"[3/3] writing {out_dir / MANIFEST_NAME}")
    save_manifest(manifest, out_dir)
    remove_stale(out_dir, manifest, log)
    return BuildResult(manifest, False)


def _engine_stage(ctx: BuildContext, backend: Backend, onnx_record: FileRecord, calibration=None) -> list:
    spec, out_dir, log = ctx.spec, ctx.out_dir, ctx.log
    log(f"[2/3] building {len(spec.plan.profiles)} profile(s) with {backend.name}")
    engine_dir = out_dir / engine_dir_name(backend.name, ctx.keys)
    engine_dir.mkdir(exist_ok=True)
    options = spec.options
    if calibration is not None:
        options = replace(options, calibration=str(out_dir.resolve() / calibration.file.file))
    if options.timing_cache is None:  # shared by every build in this folder, so it outlives engine folders
        options = replace(options, timing_cache=str(out_dir.resolve() / TIMING_CACHE_NAME))
    if backend.uses_timing_cache:
        drop_untrusted_timing_cache(out_dir, Path(options.timing_cache), log, backend.timing_cache_problem)
    from rsz_export.pipeline.int8_placement import precision_groups

    groups = None if calibration is None else precision_groups(spec.plan, calibration.report)
    if groups is None:
        built = backend.build_engines(out_dir / onnx_record.file, spec.plan, options, engine_dir, log)
        return [_rebase(engine, engine_dir.name) for engine in built]
    engines = []
    for precision, indices in groups:  # each precision's profiles as a plan of their own, in a folder of its own
        log(f"plan profile(s) {list(indices)} in {precision}")
        folder = engine_dir / precision
        folder.mkdir(exist_ok=True)
        sub = replace(options, precision=precision, calibration=options.calibration if precision == "int8" else None)
        plan = replace(spec.plan, profiles=tuple(spec.plan.profiles[i] for i in indices))
        built = backend.build_engines(out_dir / onnx_record.file, plan, sub, folder, log)
        engines += [_rebase(_profiles_of_plan(engine, indices), f"{engine_dir.name}/{precision}") for engine in built]
    return engines


def _profiles_of_plan(engine, indices: tuple[int, ...]):
    """An engine built for the plan's profiles ``indices`` alone, its profile numbers (and a ``-pK`` name suffix)
    made the whole plan's."""
    name = re.sub(r"-p(\d+)$", lambda m: f"-p{indices[int(m[1])]}", engine.name)
    return replace(engine, name=name, profiles=tuple(indices[k] for k in engine.profiles))


def _timed_choice(spec, out_dir: Path, onnx_record: FileRecord, calibration, log: Log) -> dict:
    """``auto`` between CPU runtimes: each timed on this build's model (``backends.cpu_choice``)."""
    from rsz_export.backends.cpu_choice import measure_choice

    options = spec.options
    if calibration is not None:
        options = replace(options, calibration=str(out_dir.resolve() / calibration.file.file))
    threads = options.threads or usable_cpus()
    return measure_choice(out_dir / onnx_record.file, spec.plan, options, threads, log)


def _runs_here(backend: Backend, manifest: Manifest, log: Log) -> bool:
    """Whether every engine of a previous manifest can run on this machine (a TensorRT engine copied from
    another GPU or TensorRT version cannot); if not, the engines are rebuilt here."""
    for engine in manifest.engines:
        if problem := backend.check_compatible(manifest, engine):
            log(f"rebuilding: engine {engine.name}: {problem}")
            return False
    return True


def _rebase(engine, subdir: str):
    """Engine records from a backend name files relative to ``subdir``; the manifest names them from its own dir."""

    def moved(record: FileRecord) -> FileRecord:
        return replace(record, file=f"{subdir}/{record.file}")

    return replace(engine, file=moved(engine.file), extra_files=tuple(moved(f) for f in engine.extra_files))
