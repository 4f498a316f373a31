"""``rsz-export sweep``: accuracy and latency per input resolution for the built engines."""

from __future__ import annotations

import json

import click

from rsz_export.cli.common import check_writable, console, emit, handles_errors, parse_or_usage
from rsz_export.cli.options import backend_option, engines_dir_argument, images_option, json_option
from rsz_export.model.imagenet import CROP_RATIO


@click.command()
@engines_dir_argument
@images_option("Labeled images in class sub-folders: DIR/<class name or index>/<files>, class names as the build "
               "has them (its --labels, else ImageNet's).", required=True)
@click.option("--sizes", required=True, help="Comma-separated sizes to evaluate, e.g. 224,256,288,320 or 227x341.")
@click.option("--crop-ratio", type=click.FloatRange(0.1, 1.0), default=CROP_RATIO, show_default=True,
              help="Resize to size / ratio, then centre-crop the size (the weights' evaluation transform).")
@backend_option
@json_option("the rows")
@handles_errors
def sweep(engines_dir, images_dir, sizes, crop_ratio, backend, json_path):
    """Top-1/top-5 accuracy and latency per input size for the built engines, with the Pareto front marked."""
    from rsz_export.serve.accuracy import load_labeled, render_sweep, rows_to_json, run_sweep
    from rsz_export.serve.session import Session
    from rsz_export.shapes import parse_sizes

    size_list = parse_or_usage(parse_sizes, sizes, "--sizes")
    check_writable(json_path)
    with Session(engines_dir, backend=backend) as session:
        data = load_labeled(images_dir, session.names)
        rows = run_sweep(session, data, size_list, crop_ratio, console().debug)
    emit(render_sweep(rows, data), json_path, lambda: json.dumps(rows_to_json(rows, data), indent=2) + "\n")


COMMANDS = (sweep,)
