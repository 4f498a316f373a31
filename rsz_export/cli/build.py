"""``rsz-export export`` and ``rsz-export build``: thin layers over rsz_export.export and rsz_export.build."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from rsz_export.cli.common import console, handles_errors
from rsz_export.cli.options import plan_options
from rsz_export.cli.plan import resolve_plan
from rsz_export.planning import PRECISIONS

WEIGHTS_HELP = (
    "imagenet1k-v1, imagenet1k-v2 (torch hub cache, downloaded when possible), random (seeded, calibrated), "
    "or a state_dict file (loaded with weights_only=True)."
)


def _command_line() -> str:
    return shlex.join(["rsz-export", *sys.argv[1:]])


@click.command("export")
@click.option("--weights", default="imagenet1k-v2", show_default=True, help=WEIGHTS_HELP)
@click.option("--seed", default=0, show_default=True, help="Seed for --weights random.")
@click.option("-o", "--output", default="resnet50.onnx", show_default=True, type=click.Path(dir_okay=False))
@click.option("--verify/--no-verify", default=True, show_default=True, help="Compare with PyTorch after export.")
@handles_errors
def export_command(weights, seed, output, verify):
    """Export torchvision ResNet-50 to ONNX with dynamic batch, height and width.

    Input `images` [batch,3,height,width] float32 (ImageNet-normalised RGB), output `logits` [batch,1000];
    single file, checked, with provenance in its metadata. Verification runs ONNX Runtime against
    PyTorch at 224x224, 227x341, 800x800 and 32x32 (relative L2 <= 1e-5, same top-1); exit 1 if any fails.
    """
    from rsz_export.export import export_onnx
    from rsz_export.fileio import check_output_target
    from rsz_export.model import build_model, resolve_weights

    out = console()
    check_output_target(output)  # before a minute of loading and exporting
    state, record = resolve_weights(weights, seed)
    model = build_model(state, source=record.source)
    path, checks = export_onnx(model, record, output, out.info, verify=verify)
    for check in checks:
        out.info(f"  {str(check.size):>9}: rel L2 {check.rel_l2:.1e}, top-1 same")
    click.echo(str(path))


@click.command()
@plan_options
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnxruntime", "tensorrt"]),
    default="auto",
    show_default=True,
    help="auto: TensorRT when importable with a CUDA GPU, else ONNX Runtime.",
)
@click.option("--precision", type=click.Choice(PRECISIONS), help="Default fp32, or the profile file's.")
@click.option("--weights", default=None, help=WEIGHTS_HELP + " Default imagenet1k-v2, else random with a warning.")
@click.option("--seed", default=0, show_default=True, help="Seed for random weights.")
@click.option(
    "--onnx",
    "onnx_file",
    type=click.Path(dir_okay=False),
    help="Build from this ONNX instead of exporting: input images [batch,3,height,width] float32 covering "
    "the plan, output logits [batch,1000]. Its weights (the validate reference) come from its rsz-export "
    "metadata, or from --weights.",
)
@click.option("--out", "out_dir", default="engines", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Rebuild even if the manifest says everything is up to date.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check the export against PyTorch.")
@click.option("--threads", type=click.IntRange(1, 512), help="ONNX Runtime intra-op threads (default: all cores).")
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda", "tensorrt"]),
    default="cpu",
    show_default=True,
    help="ONNX Runtime execution provider (cuda/tensorrt need onnxruntime-gpu).",
)
@click.option("--workspace-mib", type=click.IntRange(16, 1 << 20), help="TensorRT builder workspace limit.")
@click.option(
    "--opt-level", type=click.IntRange(0, 5), default=3, show_default=True, help="TensorRT builder optimization level."
)
@click.option(
    "--timing-cache", type=click.Path(dir_okay=False), help="TensorRT timing cache (default OUT/timing.cache)."
)
@click.option("--engine-per-profile", is_flag=True, help="TensorRT: one engine per profile instead of one with all.")
@click.option("--no-tf32", is_flag=True, help="TensorRT fp32: forbid TF32 math.")
@click.option(
    "--hardware-compat",
    type=click.Choice(["none", "ampere+", "same-compute-capability"]),
    default="none",
    show_default=True,
    help="TensorRT hardware compatibility level.",
)
@click.option("--version-compat", is_flag=True, help="TensorRT: engines that later TensorRT versions can run.")
@handles_errors
def build(
    min_size,
    max_size,
    profiles,
    batch,
    aspect,
    profile_file,
    backend,
    precision,
    weights,
    seed,
    onnx_file,
    out_dir,
    force,
    verify,
    threads,
    device,
    workspace_mib,
    opt_level,
    timing_cache,
    engine_per_profile,
    no_tf32,
    hardware_compat,
    version_compat,
):
    """Plan profiles over a resolution range and build engines for them, with a manifest.

    Exports ResNet-50 (or reuses the export), plans the profiles (see `rsz-export plan --help`), builds the
    engines with the chosen backend and writes OUT/manifest.json. A rerun with the same inputs reuses
    everything and says so.
    """
    from rsz_export.backends.base import BuildOptions
    from rsz_export.build import BuildSpec
    from rsz_export.build import build as run_build

    out = console()
    plan, file_precision = resolve_plan(min_size, max_size, profiles, batch, aspect, profile_file)
    options = BuildOptions(
        precision=precision or file_precision or "fp32",
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
    spec = BuildSpec(
        plan,
        Path(out_dir),
        backend,
        weights,
        seed,
        options,
        force,
        verify,
        _command_line(),
        Path(onnx_file) if onnx_file else None,
    )
    started = time.perf_counter()
    result = run_build(spec, out.info)
    for warning in result.manifest.warnings:
        out.warn(warning)
    verb = "reused" if result.reused else "built"
    engines = ", ".join(e.name for e in result.manifest.engines)
    click.echo(
        f"{verb} {len(result.manifest.engines)} engine(s) [{engines}] for {len(plan.profiles)} profile(s) "
        f"in {Path(out_dir) / 'manifest.json'} ({time.perf_counter() - started:.1f} s)"
    )


COMMANDS = (export_command, build)
