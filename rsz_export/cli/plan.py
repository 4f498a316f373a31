"""``rsz-export plan``: show the optimization profiles for a range, or propose them from image sizes. No torch."""

from __future__ import annotations

import json

import click

from rsz_export.cli.common import console, handles_errors, parse_or_usage
from rsz_export.cli.options import plan_options
from rsz_export.errors import UsageError
from rsz_export.fileio import atomic_write_text
from rsz_export.planning import PRECISIONS, Plan, PlanSpec, load_profile_file, plan_profiles
from rsz_export.shapes import BatchRange


def resolve_plan(min_size, max_size, profiles, batch, aspect, profile_file) -> tuple[Plan, str | None]:
    """The plan from either a profile file or the range options, and the file's precision if any."""
    if profile_file:
        if min_size is not None or max_size is not None:
            raise UsageError("give either --profile-file or --min/--max, not both")
        loaded = load_profile_file(profile_file)
        return loaded.plan(), loaded.precision
    if min_size is None or max_size is None:
        raise UsageError("give the range with --min and --max (e.g. --min 224 --max 800), or a --profile-file")
    batch_range = parse_or_usage(BatchRange.parse, batch, "--batch")
    spec = PlanSpec(min_size, max_size, profiles, batch_range, aspect)
    return plan_profiles(spec), None


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


def propose_from_images(images, profiles, batch, coverage, timings, tuning_penalty):
    """Scan ``images`` and propose a plan: (scan report text, proposal, plan)."""
    from rsz_export import imagesizes, sizeplan

    points = parse_or_usage(sizeplan.parse_cost_points, timings, "--timings")
    cost = sizeplan.fit_cost_model(points, tuning_penalty)
    scan = imagesizes.scan_sizes(images)
    report = imagesizes.render_scan(scan, imagesizes.size_stats(scan.sizes))
    proposal = sizeplan.propose(list(scan.sizes), cost, coverage, profiles)
    batch_range = parse_or_usage(BatchRange.parse, batch, "--batch")
    return report, proposal, sizeplan.proposal_plan(proposal, batch_range)


def write_profile_file(path: str, plan_: Plan, precision: str, proposal=None) -> None:
    """Save the plan (or the image-size proposal) as a profile file, atomically."""
    from pathlib import Path

    from rsz_export import sizeplan

    name = Path(path).stem
    if proposal is not None:
        batch = plan_.batch
        text = sizeplan.to_profile_toml(proposal, name, batch, precision)
    else:
        text = sizeplan.plan_to_toml(plan_, name, f"{plan_.min_size}..{plan_.max_size} as planned by rsz-export plan",
                                     precision, "Written by `rsz-export plan --write`.")
    atomic_write_text(path, text)


@click.command()
@plan_options
@click.option("--images", type=click.Path(file_okay=False),
              help="Propose the range and profiles from the sizes of the images in this folder (headers only).")
@click.option("--coverage", type=click.FloatRange(0.5, 1.0), default=0.98, show_default=True,
              help="With --images: share of images the range must hold as they are (the rest are resized).")
@click.option("--timings", default="224=22,800=270", show_default=True,
              help="With --images: SIDE=MS latencies from `rsz-export bench` that the cost model is fitted to.")
@click.option("--tuning-penalty", type=click.FloatRange(0.0, 1.0), default=0.10, show_default=True,
              help="With --images: extra cost per e-fold of pixels between an input and its profile's opt.")
@click.option("--precision", type=click.Choice(PRECISIONS), help="Precision recorded by --write (default fp32).")
@click.option("--write", "write_path", type=click.Path(dir_okay=False),
              help="Save the plan as a profile file (e.g. profiles/NAME.toml) for `build --profile-file`.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON for scripts.")
@handles_errors
def plan(min_size, max_size, profiles, batch, aspect, profile_file, images, coverage, timings, tuning_penalty,
         precision, write_path, as_json):
    """Split a resolution range into optimization profiles and show how inputs are routed.

    Bands of equal ratio in side length (so about equal steps in pixels, which cost follows), edges rounded
    to multiples of 32; each profile's opt point is its band's geometric middle. With --images, the range,
    the profile count and the opt points are chosen to minimise the expected cost over those images.
    """
    proposal = None
    if images:
        if min_size is not None or max_size is not None or profile_file:
            raise UsageError("give either --images or --min/--max/--profile-file, not both")
        if aspect != "free":
            raise UsageError("--images proposes free-aspect profiles: leave out --aspect square")
        report, proposal, result = propose_from_images(images, profiles, batch, coverage, timings, tuning_penalty)
        file_precision = None
    else:
        result, file_precision = resolve_plan(min_size, max_size, profiles, batch, aspect, profile_file)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif proposal is not None:
        from rsz_export.sizeplan import render_proposal

        click.echo(f"{report}\n{render_proposal(proposal)}\n{render_plan(result)}")
    else:
        click.echo(render_plan(result))
    if write_path:
        write_profile_file(write_path, result, precision or file_precision or "fp32", proposal)
        console().info(f"wrote {write_path}: use it with rsz-export build --profile-file {write_path}")


COMMANDS = (plan,)
