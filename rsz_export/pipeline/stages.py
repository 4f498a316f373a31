"""The stages of a build, each reusing its earlier output when its key and files are unchanged: the ONNX
(exported, or a user's imported), the class names' copy, and the engines."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from dataclasses import replace
from pathlib import Path

from rsz_export.artifacts import export_cache
from rsz_export.artifacts.files import atomic_path, atomic_write_text, sha256_file
from rsz_export.artifacts.manifest import FileRecord, LabelsRecord, WeightsRecord, file_record, files_intact
from rsz_export.errors import IntegrityError, RszError
from rsz_export.interface import NUM_CLASSES
from rsz_export.model.labels import labels_text
from rsz_export.pipeline.context import BuildContext
from rsz_export.pipeline.inputs import BuildInputs
from rsz_export.pipeline.keys import labels_name, onnx_name

Staged = tuple[FileRecord, WeightsRecord]
"""A stage's ONNX in the build folder, and the weights it holds (the reference for validate)."""


def _export_reusable(ctx: BuildContext) -> bool:
    """Whether the previous manifest's ONNX has this build's export key and still matches its sha256."""
    previous = ctx.previous
    same_key = previous is not None and ctx.recorded.export == ctx.keys.export
    return same_key and files_intact(ctx.out_dir, [previous.onnx])


def export_stage(ctx: BuildContext, inputs: BuildInputs) -> Staged:
    """Reuse the ONNX when its key and hash still match; else load weights, export and verify.

    A reused export may come from another file holding the same tensors (its key is their content), so the
    weights record is always the one of the weights given now."""
    spec, out_dir, log, previous = ctx.spec, ctx.out_dir, ctx.log, ctx.previous
    choice, warning = inputs.weights, inputs.warning
    if _export_reusable(ctx):
        log("reusing the exported ONNX (same weights and exporter)")
        return previous.onnx, choice.record or replace(previous.weights, warning=warning)
    target = out_dir / onnx_name(ctx.keys)
    cached = export_cache.fetch(ctx.keys.export, target) if spec.export_cache and not spec.force else None
    finished = _finished_export(target, ctx.keys.export)
    if finished and not spec.force:
        log(f"reusing the export cached in {cached.parent} (same weights and exporter)" if cached else
            f"reusing {target.name}, finished by an earlier run that stopped before its manifest")
        seed = spec.seed if choice.spec == "random" else None
        return file_record(out_dir, target), choice.record or WeightsRecord(
            finished["rsz_export.weights_id"], finished["rsz_export.weights_sha256"],
            finished.get("rsz_export.weights_source", ""), seed, warning,
            num_classes=inputs.num_classes or NUM_CLASSES,  # a feature build keeps its weights' own head
            content_sha256=finished.get("rsz_export.weights_content_sha256") or None,
        )
    staged = _export(ctx, inputs, target)
    if spec.export_cache and spec.verify and export_cache.store(target, ctx.keys.export):
        log("export kept in the shared cache (build --no-cache to skip it)")
    return staged


def _export(ctx: BuildContext, inputs: BuildInputs, target: Path) -> Staged:
    from rsz_export.model.export import export_onnx
    from rsz_export.model.weights import build_model, resolve_weights

    spec, out_dir, log = ctx.spec, ctx.out_dir, ctx.log
    started = time.perf_counter()
    choice = inputs.weights
    log(f"loading weights {choice.spec}")
    classes = inputs.num_classes or None  # a feature build has none; its weights keep their own head
    state, weights = resolve_weights(choice.spec, spec.seed, num_classes=classes, outputs=spec.outputs, log=log)
    if choice.record is not None and weights.content_sha256 != choice.record.content_sha256:
        raise IntegrityError(f"weights file {choice.spec} changed while the build was reading it",
                             hint="run the build again")
    weights = replace(weights, warning=inputs.warning)
    model = build_model(state, weights.source, spec.outputs)
    onnx_path, checks = export_onnx(model, weights, target, log, verify=spec.verify, export_key=ctx.keys.export,
                                    outputs=spec.outputs)
    if checks:
        worst = max(c.rel_l2 for c in checks)
        sizes = ", ".join(dict.fromkeys(str(c.size) for c in checks))
        log(f"verified against PyTorch at {sizes}: worst rel L2 {worst:.1e}")
    log(f"export took {time.perf_counter() - started:.1f} s")
    return file_record(out_dir, onnx_path), weights


def import_stage(ctx: BuildContext, inputs: BuildInputs) -> Staged:
    """Copy the user's ONNX in under its stage key (reused when unchanged) and name the weights it holds."""
    out_dir, log, previous = ctx.out_dir, ctx.log, ctx.previous
    imported, choice = inputs.imported, inputs.weights
    if _export_reusable(ctx):
        log("reusing the imported ONNX (file and weights unchanged)")
        return previous.onnx, (choice.record if choice else None) or previous.weights
    target = out_dir / onnx_name(ctx.keys)
    log(f"importing {imported.path} (interface checked)")
    with atomic_path(target) as tmp:
        shutil.copyfile(imported.path, tmp)
        if sha256_file(tmp) != imported.sha256:
            raise IntegrityError(
                f"--onnx {imported.path} changed while it was being copied", hint="run the build again"
            )
    weights = imported.weights
    if choice is not None:
        from rsz_export.model.weights import resolve_weights

        log(f"loading weights {choice.spec} (the reference for validate)")
        weights = choice.record or resolve_weights(choice.spec, ctx.spec.seed, num_classes=inputs.num_classes or None,
                                                   outputs=ctx.spec.outputs)[1]
    return file_record(out_dir, target), weights


def labels_stage(ctx: BuildContext, inputs: BuildInputs) -> LabelsRecord | None:
    """Store the ``--labels`` names in the build folder (one per line, named by their hash), so the build
    carries them and every reader can check them; an identical copy already there is kept."""
    if inputs.names is None:
        return None
    out_dir = ctx.out_dir
    text = labels_text(inputs.names)
    target = out_dir / labels_name(hashlib.sha256(text.encode()).hexdigest())
    if not (target.is_file() and target.read_text(encoding="utf-8") == text):
        ctx.log(f"storing {len(inputs.names)} class names from {inputs.labels_source} as {target.name}")
        atomic_write_text(target, text)
    return LabelsRecord(file_record(out_dir, target), str(inputs.labels_source), inputs.labels_sha256)


def reusable_engines(ctx: BuildContext) -> tuple | None:
    """The previous manifest's engines when their key matches and every file still matches its sha256."""
    previous = ctx.previous
    if previous and ctx.recorded.engines == ctx.keys.engines and previous.engines:
        if files_intact(ctx.out_dir, previous.engine_files()):
            return previous.engines
    return None


def _finished_export(path: Path, export_key: str) -> dict | None:
    """The metadata of a complete export for this key left by an interrupted run, else None.

    Safe to reuse: exports are checked and verified before their atomic rename, and the key in the file's
    own metadata must match (the file name alone is not trusted).
    """
    if not path.is_file():
        return None
    from rsz_export.model.export import read_metadata

    with contextlib.suppress(RszError):
        meta = read_metadata(path)
        if meta.get("rsz_export.export_key") == export_key and meta.get("rsz_export.verified") == "true":
            return meta
    return None
