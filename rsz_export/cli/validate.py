"""``rsz-export validate``: parity of the ONNX export and of every engine against PyTorch, with CI output."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rsz_export.cli.common import (
    check_writable,
    console,
    emit,
    handles_errors,
    outlined,
    parse_or_usage,
    write_report,
)
from rsz_export.cli.options import batches_option, engines_dir_argument, images_option, json_option, sizes_option
from rsz_export.errors import shown
from rsz_export.shapes import parse_batches, parse_sizes
from rsz_export.validate.cases import DEFAULT_RANDOM_INPUTS, FEATURE_INPUTS_PER_SIZE


@click.command()
@engines_dir_argument
@sizes_option
@click.option("--replace-sizes", is_flag=True, help="Check only --sizes instead of adding them to the size grid.")
@batches_option
@images_option("Check on the images in this folder instead of the bundled photographs (unreadable files skipped).")
@click.option("--random-inputs", type=int, default=DEFAULT_RANDOM_INPUTS, show_default=True,
              help="Seeded random inputs, beside the photographs.")
@click.option("--inputs-per-size", type=int,
              help="Check each size on this many of the inputs, taken in turn (each at some size, given that many "
                   f"sizes). Default: all of them; {FEATURE_INPUTS_PER_SIZE} for a backbone's feature maps (--outputs "
                   "features|fpn).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--rtol", type=float, help="Override the preset: largest relative L2 error allowed.")
@click.option("--atol", type=float, help="Override the preset: largest absolute difference in any logit.")
@click.option("--min-top1", type=float, help="Override the preset: smallest top-1 agreement allowed (0..1).")
@click.option("--min-cosine", type=float, help="Override the preset: smallest cosine of any image's logits.")
@click.option("--min-top5", type=float,
              help="Override the preset: smallest share of images whose top-1 class is in the engine's top-5.")
@json_option("every statistic")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False),
              help="Write JUnit XML here: one test case per engine x profile x size.")
@handles_errors
def validate(engines_dir, sizes, replace_sizes, batches, images_dir, random_inputs, inputs_per_size, seed, rtol, atol,
             min_top1, min_cosine, min_top5, json_path, junit_path) -> None:
    """Check the exported ONNX, then every engine in DIR (default ./engines), against PyTorch.

    Each profile is checked at its min, opt and max and at odd, non-square sizes inside it, on the
    bundled photographs (or --images DIR: held-out images of your own) plus seeded random inputs (a backbone's
    feature maps: without the opt sizes, and one input per size in turn, --inputs-per-size); int8 engines are
    judged by cosine, relative L2 and ranking (top-1, top-5 containment) instead of per-logit bounds.
    Exit codes: 0 all passed, 1 a parity failure or an engine or ONNX file that was not run (tampered, other
    GPU/TensorRT), 2 usage, 3 backend or GPU missing, 4 missing or corrupt manifest, or weights that no longer
    match it.
    """
    from rsz_export.validate import report
    from rsz_export.validate.cases import ValidateSpec
    from rsz_export.validate.run import validate as run_validate

    out = console()
    spec = ValidateSpec(
        directory=Path(engines_dir), sizes=tuple(parse_or_usage(parse_sizes, sizes, "--sizes") or ()),
        replace_sizes=replace_sizes, batches=parse_or_usage(parse_batches, batches, "--batches") or (),
        images_dir=Path(images_dir) if images_dir else None, random_inputs=random_inputs,
        inputs_per_size=inputs_per_size, seed=seed,
        rtol=rtol, atol=atol, min_top1=min_top1, min_cosine=min_cosine, min_top5=min_top5,
    )
    check_writable(json_path, junit_path)  # fail now, not after the whole run
    result = run_validate(spec, log=outlined(out.info, r"(export|engine) ", 2))
    for path, reason in result.skipped_inputs:
        out.warn(f"skipped {shown(path)}: {reason}")
    write_report(junit_path, report.render_junit(result))
    emit(report.render_table(result), json_path, lambda: report.render_json(result))
    sys.exit(report.exit_code(result))


COMMANDS = (validate,)
