"""``rsz-export predict``: classify image files through the engine and profile that fit each one."""

from __future__ import annotations

import json

import click

from rsz_export.cli.common import check_writable, console, handles_errors, write_report
from rsz_export.cli.options import backend_option, json_option, threads_option
from rsz_export.serve.routing import OVERSIZE_POLICIES, STRIDE_POLICIES


def render_prediction(p) -> str:
    """One image's answer: where it ran, how long it took, then its top labels."""
    original = f"{p.original[0]}x{p.original[1]}"
    size = original if str(p.input) == original else f"{original} -> {p.input}"
    head = (
        f"{p.source}: {size}, engine {p.engine} ({p.backend}) profile {p.profile}, {p.latency_ms:.1f} ms "
        f"(total {p.total_ms:.1f} ms)"
    )
    return "\n".join([head] + [f"  {label.score:7.2%}  {label.name} ({label.index})" for label in p.top])


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="[DIR] IMAGE...")
@click.option("--top-k", "top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Labels per image (every class when the model has fewer).")
@click.option("--oversize", type=click.Choice(OVERSIZE_POLICIES), default="error", show_default=True,
              help="An image outside every profile: error (naming the covered range) or shrink (resize it in).")
@click.option("--stride", type=click.Choice(STRIDE_POLICIES), default="exact", show_default=True,
              help="exact: run each image at its own size; snap: round sides to multiples of 32 first.")
@backend_option
@threads_option
@json_option("every prediction")
@handles_errors
def predict(paths, top, oversize, stride, backend, threads, json_path):
    """Classify images of any size in range, through the engines in DIR (default ./engines).

    DIR is taken as the engines folder when it holds a manifest. Each image keeps its own size when a profile
    covers it and goes to the covering profile with the least compute; prints the top labels with
    probabilities, the engine and profile that served it, and latency. A folder given as IMAGE stands for the
    image files under it (other files are skipped with a warning).
    """
    from rsz_export.serve.predict import predict_files, split_arguments
    from rsz_export.serve.session import Session

    arguments = split_arguments(paths)
    check_writable(json_path)
    results = []
    quiet_table = json_path == "-"
    with Session(arguments.engines_dir, backend=backend, oversize=oversize, stride=stride, threads=threads) as session:
        for prediction in predict_files(session, arguments, top, console().warn):
            results.append(prediction)
            if not quiet_table:
                click.echo(render_prediction(prediction))
    document = {"engines": arguments.engines_dir, "predictions": [p.to_dict() for p in results]}
    write_report(json_path, json.dumps(document, indent=2) + "\n")


COMMANDS = (predict,)
