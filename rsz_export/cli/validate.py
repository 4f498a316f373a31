"""``rsz-export validate``: parity of the ONNX export and of every engine against PyTorch, with CI output."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rsz_export.cli.common import console, handles_errors, out_dir_argument, parse_or_usage
from rsz_export.errors import UsageError
from rsz_export.shapes import parse_sizes


def parse_batches(text: str) -> tuple[int, ...]:
    """``1,4,8`` -> (1, 4, 8); UsageError naming the value otherwise."""
    try:
        values = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise UsageError(f"cannot read batch sizes {text!r}: write a comma-separated list such as 1,4,8") from None
    if not values:
        raise UsageError(f"no batch sizes in {text!r}: write a comma-separated list such as 1,4,8")
    return values


def _write(path: str | None, text: str) -> None:
    if path:
        from rsz_export.fileio import atomic_write_text

        atomic_write_text(Path(path), text)


@click.command()
@out_dir_argument
@click.option("--sizes", help="Extra sizes to check, e.g. 224,227x341 (height x width); each must fit a profile.")
@click.option("--replace-sizes", is_flag=True, help="Check only --sizes instead of adding them to the size grid.")
@click.option(
    "--batch",
    "batch",
    help="Batch sizes to check where profiles allow them, e.g. 1,8. Default: 1 (or a profile's smallest).",
)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(file_okay=False),
    help="Use the images in this folder instead of the bundled photographs (unreadable files are skipped).",
)
@click.option("--random-inputs", type=int, default=2, show_default=True, help="Seeded random inputs per size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--rtol", type=float, help="Override the preset: largest relative L2 error allowed.")
@click.option("--atol", type=float, help="Override the preset: largest absolute difference in any logit.")
@click.option("--min-top1", type=float, help="Override the preset: smallest top-1 agreement allowed (0..1).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every statistic as JSON here.")
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False),
    help="Write JUnit XML here: one test case per engine x profile x size.",
)
@handles_errors
def validate(
    out_dir, sizes, replace_sizes, batch, images_dir, random_inputs, seed, rtol, atol, min_top1, json_path, junit_path
) -> None:
    """Check the exported ONNX, then every engine in OUT_DIR (default ./engines), against PyTorch.

    Each profile is checked at its min, opt and max and at odd, non-square sizes inside it, on the
    bundled photographs plus seeded random inputs. Exit codes: 0 all passed, 1 a parity failure or an
    engine or ONNX file that was not run (tampered, other GPU/TensorRT), 2 usage, 3 backend or GPU
    missing, 4 missing or corrupt manifest, or weights that no longer match it.
    """
    from rsz_export import report as rpt
    from rsz_export.fileio import check_output_target
    from rsz_export.validate import ValidateSpec
    from rsz_export.validate import validate as run_validate

    out = console()
    spec = ValidateSpec(
        directory=Path(out_dir),
        sizes=tuple(parse_or_usage(parse_sizes, sizes, "--sizes") or ()),
        replace_sizes=replace_sizes,
        batches=parse_or_usage(parse_batches, batch, "--batch") or (),
        images_dir=Path(images_dir) if images_dir else None,
        random_inputs=random_inputs,
        seed=seed,
        rtol=rtol,
        atol=atol,
        min_top1=min_top1,
    )
    for report_path in (json_path, junit_path):  # fail now, not after the whole run
        if report_path:
            check_output_target(report_path)
    result = run_validate(spec, log=out.info)
    for path, reason in result.skipped_inputs:
        out.warn(f"skipped {path}: {reason}")
    _write(json_path, rpt.render_json(result))
    _write(junit_path, rpt.render_junit(result))
    click.echo(rpt.render_table(result))
    sys.exit(rpt.exit_code(result))


COMMANDS = (validate,)
