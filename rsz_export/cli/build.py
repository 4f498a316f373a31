"""``rsz-export export`` and ``rsz-export build``: thin layers over ``model.export`` and ``pipeline.run``."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from rsz_export.backends import BUILD_BACKENDS
from rsz_export.backends.ort_providers import DEVICES
from rsz_export.backends.trt_support import HARDWARE_COMPAT
from rsz_export.cli.common import check_writable, console, handles_errors, outlined
from rsz_export.cli.options import (
    engines_dir_argument,
    num_classes_option,
    outputs_option,
    plan_options,
    seed_option,
    threads_option,
    weights_option,
)
from rsz_export.errors import UsageError
from rsz_export.interface import CALIBRATION_METHODS, DEFAULT_PRECISION, INT8_TARGET, PRECISIONS

BUILD_STEP = r"\[\d+/\d+\] "
"""A build's progress line that starts a step (``[2/3] building ...``); the lines under it are indented."""


def _target(value: str | None) -> float | None:
    """``--int8-target``: a number, or ``off`` (no float fallback); None when not given (the default)."""
    if value is None:
        return INT8_TARGET
    if value.strip().lower() == "off":
        return None
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"--int8-target must be a cosine such as 0.99, or off; got {value!r}") from None


def _command_line() -> str:
    return shlex.join(["rsz-export", *sys.argv[1:]])


@click.command("export")
@weights_option
@seed_option
@num_classes_option
@outputs_option("logits")
@click.option("-o", "--output", default="resnet50.onnx", show_default=True, type=click.Path(dir_okay=False))
@click.option("--verify/--no-verify", default=True, show_default=True, help="Compare with PyTorch after export.")
@handles_errors
def export_command(weights, seed, num_classes, outputs, output, verify):
    """Export torchvision ResNet-50 to ONNX with dynamic batch, height and width.

    Input `images` [batch,3,height,width] float32 (ImageNet-normalised RGB), output `logits` [batch,classes]
    (1000 for ImageNet weights, the checkpoint's head otherwise); single file, checked, with provenance in its
    metadata. Verification runs ONNX Runtime against PyTorch at 224x224, 227x341, 800x800 and 32x32 (relative
    L2 <= 1e-5, same top-1; every feature map with --outputs features|fpn); exit 1 if any fails.
    Without --weights: imagenet1k-v2, or seeded random weights with a warning where those are unavailable.
    """
    from rsz_export.model.export import export_onnx
    from rsz_export.model.weights import (
        DEFAULT_WEIGHTS,
        WEIGHTS_CHOICES,
        build_model,
        default_weights,
        no_fpn_weights,
        resolve_weights,
    )
    from rsz_export.pipeline.run import check_outputs_options

    out = console()
    check_outputs_options(outputs, num_classes=num_classes)
    if outputs == "fpn" and weights in (None, *WEIGHTS_CHOICES):  # before a download is tried
        raise no_fpn_weights(weights or DEFAULT_WEIGHTS)
    check_writable(output)  # before a minute of loading and exporting
    if weights is None:
        weights, warning = default_weights(seed, num_classes)
        if warning:
            out.warn(warning)
    state, record = resolve_weights(weights, seed, num_classes=num_classes, outputs=outputs, log=out.info)
    model = build_model(state, record.source, outputs)
    path, checks = export_onnx(model, record, output, out.info, verify=verify, outputs=outputs)
    for check in checks:
        top1 = ", top-1 same" if check.output == "logits" else ""
        out.info(f"  {str(check.size):>9} {check.output}: rel L2 {check.rel_l2:.1e}{top1}")
    click.echo(str(path))


@click.command()
@engines_dir_argument
@plan_options
@click.option("--backend", type=click.Choice(BUILD_BACKENDS), default="auto", show_default=True,
              help="auto: TensorRT when importable with a CUDA GPU, else ONNX Runtime.")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help=f"Default: the profile file's, else {DEFAULT_PRECISION} (given, it overrides the profile file's).")
@weights_option
@seed_option
@click.option(
    "--onnx",
    "onnx_file",
    type=click.Path(dir_okay=False),
    help="Build from this ONNX instead of exporting: input images [batch,3,height,width] float32 covering "
    "the plan, output logits [batch,classes] (classes fixed). Its weights (the validate reference) come from "
    "its rsz-export metadata, or from --weights.",
)
@num_classes_option
@outputs_option(None)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    help="Class names, one per line or a JSON list, one per class in logit order: stored with the build, "
    "printed by predict, matched by sweep. Default: ImageNet's for 1000 classes, else 'class N'.",
)
@click.option("--calib", "calib_dir", type=click.Path(file_okay=False),
              help="int8: calibrate on the images in this folder (sub-folders included), like the ones you serve. "
              "Default: crops of the bundled photographs, with a warning.")
@click.option("--calib-count", type=int, help="int8: images to calibrate on (default: all of --calib's, at most 256; "
              "32 crops of the bundled photographs without --calib).")
@click.option("--calib-method", type=click.Choice(CALIBRATION_METHODS), help="int8: how ranges are set from the "
              f"calibration statistics (default {CALIBRATION_METHODS[0]}).")
@click.option("--holdout", "holdout_dir", type=click.Path(file_okay=False),
              help="int8: photographs calibration never sees, on which the build measures clipping, each layer's "
              "sensitivity and --int8-target. Default: a seeded fifth of --calib's images (two bundled photographs "
              "without --calib).")
@click.option("--int8-target", "int8_target", metavar="COS|off",
              help=f"int8: the smallest cosine to fp32 logits allowed on any held-out image at each profile's "
              f"smallest and largest square; the most sensitive layers stay in float until it holds, and a profile "
              f"where it cannot is built in fp32 (default {INT8_TARGET}; 'off': every layer int8).")
@click.option("--force", is_flag=True, help="Rebuild even if the manifest says everything is up to date.")
@click.option("--no-cache", is_flag=True, help="Neither take the export from the shared export cache nor add it "
              "there ($RSZ_EXPORT_CACHE, default ~/.cache/rsz-export/exports).")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check the export against PyTorch.")
@threads_option
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help="ONNX Runtime execution provider (cuda/tensorrt need onnxruntime-gpu).")
@click.option("--workspace-mib", type=click.IntRange(16, 1 << 20), help="TensorRT builder workspace limit.")
@click.option(
    "--opt-level", type=click.IntRange(0, 5), default=3, show_default=True, help="TensorRT builder optimization level."
)
@click.option(
    "--timing-cache", type=click.Path(dir_okay=False), help="TensorRT timing cache (default DIR/timing.cache)."
)
@click.option("--engine-per-profile", is_flag=True, help="TensorRT: one engine per profile instead of one with all.")
@click.option("--no-tf32", is_flag=True, help="TensorRT fp32: forbid TF32 math.")
@click.option("--hardware-compat", type=click.Choice(HARDWARE_COMPAT), default="none", show_default=True,
              help="TensorRT hardware compatibility level.")
@click.option("--version-compat", is_flag=True, help="TensorRT: engines that later TensorRT versions can run.")
@handles_errors
def build(engines_dir, min_size, max_size, profiles, batch, aspect, profile_file, backend, precision, weights, seed,
          onnx_file, num_classes, outputs, labels, calib_dir, calib_count, calib_method, holdout_dir, int8_target,
          force, no_cache, verify, threads, device, workspace_mib, opt_level, timing_cache, engine_per_profile,
          no_tf32, hardware_compat, version_compat):
    """Plan profiles over a resolution range and build engines for them in DIR (default ./engines).

    Exports ResNet-50 (or reuses the export), plans the profiles (see `rsz-export plan --help`), builds the
    engines with the chosen backend and writes DIR/manifest.json. A rerun with the same inputs reuses
    everything and says so. --precision int8 first calibrates ranges at sizes over every profile (--calib).
    """
    from rsz_export.backends.base import BuildOptions
    from rsz_export.pipeline.run import BuildSpec
    from rsz_export.pipeline.run import build as run_build
    from rsz_export.plan.profile_file import resolve_outputs, resolve_plan

    out = console()
    plan, file_precision = resolve_plan(min_size, max_size, profiles, batch, aspect, profile_file)
    outputs = resolve_outputs(outputs, profile_file)
    options = BuildOptions(
        precision=precision or file_precision or DEFAULT_PRECISION,
        threads=threads,
        device=device,
        workspace_mib=workspace_mib,
        opt_level=opt_level,
        timing_cache=timing_cache,
        engine_per_profile=engine_per_profile,
        tf32=not no_tf32,
        hardware_compat=None if hardware_compat == "none" else hardware_compat,
        version_compat=version_compat,
    )
    calibration = None
    if any(v is not None for v in (calib_dir, calib_count, calib_method, holdout_dir, int8_target)):
        from rsz_export.model.calibration_set import CalibSpec

        calibration = CalibSpec(Path(calib_dir) if calib_dir else None, calib_count,
                                calib_method or CALIBRATION_METHODS[0], seed,
                                Path(holdout_dir) if holdout_dir else None, _target(int8_target))
    spec = BuildSpec(
        plan, Path(engines_dir), backend, weights, seed, options, force, verify, _command_line(),
        onnx=Path(onnx_file) if onnx_file else None, num_classes=num_classes, labels=Path(labels) if labels else None,
        calibration=calibration, export_cache=not no_cache, outputs=outputs,
    )
    started = time.perf_counter()
    result = run_build(spec, outlined(out.info, BUILD_STEP, 6))
    for warning in result.manifest.warnings:
        out.warn(warning)
    verb = "reused" if result.reused else "built"
    engines = ", ".join(e.name for e in result.manifest.engines)
    click.echo(
        f"{verb} {len(result.manifest.engines)} engine(s) [{engines}] for {len(plan.profiles)} profile(s) "
        f"in {Path(engines_dir) / 'manifest.json'} ({time.perf_counter() - started:.1f} s)"
    )


COMMANDS = (export_command, build)
