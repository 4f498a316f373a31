"""Click options shared by plan and build, defined once."""

from __future__ import annotations

import click

from rsz_export.planning import ASPECTS, BAND_RATIO


def plan_options(fn):
    """--min/--max/--profiles/--batch/--aspect/--profile-file, shared by ``plan`` and ``build``."""
    options = [
        click.option("--min", "min_size", type=int, help="Smallest image side in pixels (>= 32)."),
        click.option("--max", "max_size", type=int, help="Largest image side in pixels (<= 4096)."),
        click.option(
            "--profiles",
            type=int,
            help=f"Number of optimization profiles. Default: one per {BAND_RATIO}x step in side length (2x pixels), "
            "at most 6; 224..800 gives 4.",
        ),
        click.option(
            "--batch", default="1", show_default=True, help="Batch sizes: 8 (1..8, tuned for 8), 1-32, or 1:8:32."
        ),
        click.option(
            "--aspect",
            type=click.Choice(ASPECTS),
            default="free",
            show_default=True,
            help="free: every (h, w) in range is covered; square: square inputs only, tighter profiles.",
        ),
        click.option(
            "--profile-file",
            type=click.Path(dir_okay=False),
            help="Read the range, profiles, batch, aspect and precision from a TOML file (see profiles/).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
