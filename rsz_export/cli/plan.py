"""``rsz-export plan``: show the optimization profiles for a range, or propose them from image sizes. No torch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rsz_export.cli.common import check_writable, console, emit, handles_errors, parse_or_usage, write_report
from rsz_export.cli.options import images_option, json_option, plan_options
from rsz_export.errors import UsageError
from rsz_export.interface import DEFAULT_PRECISION, PRECISIONS
from rsz_export.plan.from_images import DEFAULT_TIMINGS
from rsz_export.plan.profiles import Plan
from rsz_export.shapes import BatchRange


def render_plan(plan: Plan) -> str:
    """The plan as a table plus the routing rule."""
    lines = [
        f"range {plan.min_size}..{plan.max_size}, aspect {plan.aspect}, batch {plan.batch.min}..{plan.batch.max}",
        f"{'profile':>7}  {'min (NCHW)':<18} {'opt (NCHW)':<18} {'max (NCHW)':<18}",
    ]
    for i, p in enumerate(plan.profiles):
        lines.append(f"{i:>7}  {str(p.min):<18} {str(p.opt):<18} {str(p.max):<18}")
    lines.append("routing: an input goes to the covering profile with the smallest max area (ties: lower index)")
    if plan.aspect == "free":
        lines.append("coverage: every (h, w) with both sides in the range, square or not")
    else:
        lines.append("coverage: inputs whose sides fall in one profile's band (square inputs always)")
    return "\n".join(lines)


@click.command()
@plan_options
@images_option("Propose the range and profiles from the sizes of the images in this folder (headers only).")
@click.option("--coverage", type=click.FloatRange(0.5, 1.0), default=0.98, show_default=True,
              help="With --images: share of images the range must hold as they are (the rest are resized).")
@click.option("--timings", default=DEFAULT_TIMINGS, show_default=True,
              help="With --images: SIDE=MS latencies from `rsz-export bench` that the cost model is fitted to.")
@click.option("--tuning-penalty", type=click.FloatRange(0.0, 1.0), default=0.10, show_default=True,
              help="With --images: extra cost per e-fold of pixels between an input and its profile's opt.")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help=f"Precision recorded by --write (default {DEFAULT_PRECISION}).")
@click.option("--write", "write_path", type=click.Path(dir_okay=False),
              help="Save the plan as a profile file (e.g. profiles/NAME.toml) for `build --profile-file`.")
@json_option("the plan")
@handles_errors
def plan(min_size, max_size, profiles, batch, aspect, profile_file, images_dir, coverage, timings, tuning_penalty,
         precision, write_path, json_path):
    """Split a resolution range into optimization profiles and show how inputs are routed.

    Bands of equal ratio in side length (so about equal steps in pixels, which cost follows), edges rounded
    to multiples of 32; each profile's opt point is its band's geometric middle. With --images, the range,
    the profile count and the opt points are chosen to minimise the expected cost over those images.
    """
    from rsz_export.plan import from_images
    from rsz_export.plan.profile_file import plan_to_toml, resolve_plan

    check_writable(json_path, write_path)
    if images_dir:
        if min_size is not None or max_size is not None or profile_file:
            raise UsageError("give either --images or --min/--max/--profile-file, not both")
        if aspect != "free":
            raise UsageError("--images proposes free-aspect profiles: leave out --aspect square")
        points = parse_or_usage(from_images.parse_cost_points, timings, "--timings")
        batch_range = parse_or_usage(BatchRange.parse, batch, "--batch")
        proposal, result, scan = from_images.plan_from_folder(
            images_dir, points, tuning_penalty, coverage, profiles, batch_range
        )
        table = f"{scan}\n{render_plan(result)}"
        file_precision = None
    else:
        result, file_precision = resolve_plan(min_size, max_size, profiles, batch, aspect, profile_file)
        proposal, table = None, render_plan(result)
    emit(table, json_path, lambda: json.dumps(result.to_dict(), indent=2) + "\n")
    if write_path:
        chosen = precision or file_precision or DEFAULT_PRECISION
        name = Path(write_path).stem
        if proposal is not None:
            text = from_images.to_profile_toml(proposal, name, result.batch, chosen)
        else:
            description = f"{result.min_size}..{result.max_size} as planned by rsz-export plan"
            text = plan_to_toml(result, name, description, chosen, "Written by `rsz-export plan --write`.")
        write_report(write_path, text)
        console().info(f"wrote {write_path}: use it with rsz-export build --profile-file {write_path}")


COMMANDS = (plan,)
