"""Click options and arguments shared by several commands, defined once so that each means the same everywhere.

* ``[DIR]``: the engines folder a build writes and every other command reads (default ``engines``).
* ``--batch``: the plan's batch range (``8``, ``1-32`` or ``1:8:32``); ``--batches``: batch sizes to run (``1,8``).
* ``--threads``: CPU threads for ONNX Runtime (and torch in bench), one range everywhere.
* ``--json PATH``: a JSON report written to PATH, or to stdout with ``-`` (instead of the table).
* ``--images DIR``: a folder of your own images (sub-folders included; class sub-folders where labels are needed).
* ``--sizes``: sizes such as ``224,227x341`` (height x width).
"""

from __future__ import annotations

import click

from rsz_export.artifacts.host import MAX_THREADS
from rsz_export.artifacts.manifest import ENGINES_DIR
from rsz_export.backends import BACKENDS
from rsz_export.plan.profiles import ASPECTS, BAND_RATIO

VERBOSE_HELP = "More detail on stderr (repeatable)."
QUIET_HELP = "Only results and errors; no progress."
WEIGHTS_HELP = (
    "imagenet1k-v1, imagenet1k-v2 (torch hub cache, downloaded when possible), random (seeded, calibrated), "
    "or a ResNet-50 checkpoint with any head size: a state_dict, a training checkpoint holding one under "
    "state_dict/model/model_state_dict/weights (module./model. prefixes removed), or .safetensors; read with "
    "weights_only=True, never executing code."
)


def _apply(fn, options):
    for option in reversed(options):
        fn = option(fn)
    return fn


def plan_options(fn):
    """--min/--max/--profiles/--batch/--aspect/--profile-file, shared by ``plan`` and ``build``."""
    return _apply(
        fn,
        [
            click.option("--min", "min_size", type=int, help="Smallest image side in pixels (>= 32)."),
            click.option("--max", "max_size", type=int, help="Largest image side in pixels (<= 4096)."),
            click.option(
                "--profiles",
                type=int,
                help=f"Number of optimization profiles. Default: one per {BAND_RATIO}x step in side length "
                "(2x pixels), at most 6; 224..800 gives 4.",
            ),
            click.option(
                "--batch", default="1", show_default=True, help="Batch range: 8 (1..8, tuned for 8), 1-32, or 1:8:32."
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
        ],
    )


engines_dir_argument = click.argument(
    "engines_dir", metavar="[DIR]", required=False, default=ENGINES_DIR, type=click.Path(file_okay=False)
)
threads_option = click.option(
    "--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads for ONNX Runtime. Default: usable cores."
)
weights_option = click.option("--weights", default=None, help=WEIGHTS_HELP)
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Seed for --weights random.")
num_classes_option = click.option(
    "--num-classes",
    type=int,
    help="Classes of the --weights random head (default 1000). A checkpoint's own head (fc.weight's rows) sets "
    "the count; given with one, it is checked against it.",
)
OUTPUTS_HELP = (
    "What the model gives: logits (the classifier); features (the body's stage outputs layer1..layer4, strides "
    "4..32, from any ResNet-50 checkpoint); fpn (torchvision's BackboneWithFPN, outputs 0,1,2,3,pool, strides "
    "4..64, from a detector checkpoint such as fasterrcnn_resnet50_fpn's). See README 'As a backbone'."
)


def outputs_option(default: str | None):
    """``--outputs logits|features|fpn``; ``default`` None: the profile file's, else logits."""
    from rsz_export.interface import OUTPUT_KINDS

    extra = " Default: the profile file's, else logits." if default is None else ""
    return click.option("--outputs", type=click.Choice(OUTPUT_KINDS), default=default,
                        show_default=default is not None, help=OUTPUTS_HELP + extra)


sizes_option = click.option("--sizes", help="Sizes, comma-separated: 224 (square) or 227x341 (height x width).")
batches_option = click.option("--batches", help="Batch sizes to run, comma-separated, e.g. 1,8. Default: 1.")


def preprocess_help(default: str) -> str:
    """What ``--preprocess`` means, the same for every command that turns image files into inputs."""
    return (
        "native: each image at its own size (refused when no profile covers it); fit: aspect ratio kept, resized "
        "into the range when outside it; crop: the weights' evaluation transform (shorter side to S/0.875, centre "
        f"S). {default}"
    )


def json_option(what: str = "every result"):
    """``--json PATH``: ``what`` as JSON in PATH, or on stdout with ``-`` (then instead of the table)."""
    return click.option(
        "--json", "json_path", metavar="PATH", help=f"Write {what} as JSON to PATH ('-': stdout, instead of the table)."
    )


def images_option(help_text: str, required: bool = False):
    """``--images DIR``: a folder of the user's images, sub-folders included, links inside it not followed."""
    return click.option("--images", "images_dir", type=click.Path(file_okay=False), required=required, help=help_text)


backend_option = click.option(
    "--backend",
    type=click.Choice(tuple(BACKENDS)),
    help="Serve from this backend's engines (torch: the PyTorch reference). "
    "Default: every engine in the manifest that can run here.",
)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value) -> None:
    """-v/-q given after the subcommand: they change the Console the group made, as they do before it."""
    if not value:
        return
    from rsz_export.cli.common import Console

    root = ctx.find_root()
    root.obj = root.obj or Console()
    root.obj.verbosity = -1 if param.name == "quiet" else max(root.obj.verbosity, 0) + value


def verbosity_options() -> list[click.Option]:
    """``-v``/``-q`` for a subcommand (``rsz-export sweep ... -v`` as well as ``rsz-export -v sweep ...``)."""
    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_set_verbosity, help=VERBOSE_HELP),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_verbosity, help=QUIET_HELP),
    ]
