"""``rsz-export sweep``: accuracy and latency per preprocessing policy and input resolution for the built engines."""

from __future__ import annotations

import contextlib
import json

import click

from rsz_export.cli.common import check_writable, console, emit, handles_errors, parse_or_usage, progress_bar
from rsz_export.cli.options import backend_option, engines_dir_argument, images_option, json_option, preprocess_help
from rsz_export.images.imagenet import CROP_RATIO


@click.command()
@engines_dir_argument
@images_option("Labeled images in class sub-folders: DIR/<class name or index>/<files>, class names as the build "
               "has them (its --labels, else ImageNet's).", required=True)
@click.option("--preprocess", "modes", default="crop", show_default=True,
              help="Policies to compare, comma-separated (e.g. crop,fit). " + preprocess_help("Fit at S sets the "
                   "shorter side to S."))
@click.option("--sizes", help="Sizes S to evaluate, e.g. 224,256,288,320 (crop also takes 227x341). "
              "Default: the plan's min, each profile's opt point, and its max.")
@click.option("--crop-ratio", type=click.FloatRange(0.1, 1.0), default=CROP_RATIO, show_default=True,
              help="crop: resize to S / ratio, then centre-crop S (the weights' evaluation transform).")
@backend_option
@json_option("the rows")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw top-1 against size and against latency (PNG; needs matplotlib).")
@handles_errors
def sweep(engines_dir, images_dir, modes, sizes, crop_ratio, backend, json_path, plot_path):
    """Top-1/top-5 accuracy and latency per preprocessing policy and input size for the built engines, side by
    side, with the Pareto front marked: "square crop or kept aspect, and at what size?" for your own images."""
    from rsz_export.serve.preprocess_policy import parse_modes
    from rsz_export.serve.session import Session, require_classes
    from rsz_export.shapes import parse_sizes
    from rsz_export.sweep import report as sweep_report
    from rsz_export.sweep.accuracy import load_labeled, run_sweep, sweep_sizes

    policies = parse_or_usage(parse_modes, modes, "--preprocess")
    size_list = parse_or_usage(parse_sizes, sizes, "--sizes")
    check_writable(json_path, plot_path)
    if plot_path:
        sweep_report.check_plot_available()
    with Session(engines_dir, backend=backend) as session:
        require_classes(session.manifest, "sweep")
        warning = session.manifest.random_weights_warning
        if warning:
            console().warn(warning)
        data = load_labeled(images_dir, session.names)
        size_list = size_list or sweep_sizes(session.manifest.plan)
        bar = progress_bar(len(data.items))
        with bar or contextlib.nullcontext():
            rows = run_sweep(session, data, size_list, policies, crop_ratio, _step(bar))
    if plot_path:
        sweep_report.plot(rows, plot_path, f"{len(data.items)} image(s) from {data.root}")
        console().info(f"plot written to {plot_path}")
    emit(sweep_report.render_sweep(rows, data, warning), json_path,
         lambda: json.dumps(sweep_report.rows_to_json(rows, data, warning), indent=2) + "\n")


def _step(bar):
    """What the sweep calls after each image: the image's name with -v, and a step of the bar when there is one."""

    def step(message: str) -> None:
        if bar and console().verbosity > 0:
            click.echo("\r\033[K", nl=False, err=True)  # clear the bar's line; update() draws it again below
        console().debug(message)
        if bar:
            bar.update(1)

    return step


COMMANDS = (sweep,)
