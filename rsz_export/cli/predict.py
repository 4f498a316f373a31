"""``rsz-export predict``: classify image files (or folders of them) through the engine and profile that fit each."""

from __future__ import annotations

import click

from rsz_export.cli.common import check_writable, console, handles_errors, parse_or_usage, progress_bar
from rsz_export.cli.options import backend_option, json_option, preprocess_help, threads_option
from rsz_export.errors import shown
from rsz_export.plan.routing import STRIDE_POLICIES
from rsz_export.serve.preprocess_policy import PREPROCESS_MODES

HOW = {"none": "at its own size", "shrink": "shrunk to {}", "upscale": "upscaled to {}", "crop": "cropped to {}"}


def render_prediction(p) -> str:
    """One image's answer: its size and what was done to it, where it ran, how long it took, its top labels."""
    how = HOW[p.resize].format(p.input)
    batch = f", batch of {p.batch}" if p.batch > 1 else ""
    head = (
        f"{shown(p.source)}: {p.original[0]}x{p.original[1]} {how} ({p.preprocess}), engine {p.engine} ({p.backend}) "
        f"profile {p.profile}{batch}, {p.latency_ms:.1f} ms (total {p.total_ms:.1f} ms)"
    )
    return "\n".join([head] + [f"  {label.score:7.2%}  {shown(label.name)} ({label.index})" for label in p.top])


class Display:
    """Each answer on stdout (unless the JSON goes there), each skipped image on stderr, and a progress bar on
    stderr when it is a terminal, there is more than one image and -q is not given."""

    def __init__(self, total: int, table: bool):
        self.table, self.skipped, self.classified = table, [], 0
        self.bar = progress_bar(total)

    def __enter__(self) -> Display:
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.__exit__(*exc)

    def add(self, outcome, warn_skipped: bool) -> None:
        if self.bar:
            click.echo("\r\033[K", nl=False, err=True)  # clear the bar's line; update() draws it again below
        if hasattr(outcome, "reason"):
            self.skipped.append(outcome)
            if warn_skipped:
                console().warn(f"skipped {shown(outcome.source)}: {outcome.reason}")
        else:
            self.classified += 1
            if self.table:
                click.echo(render_prediction(outcome))
        if self.bar:
            self.bar.update(1)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="[DIR] IMAGE...")
@click.option("--top-k", "top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Labels per image (every class when the model has fewer).")
@click.option("--preprocess", type=click.Choice(PREPROCESS_MODES), help=preprocess_help("Default: fit."))
@click.option("--size", help="fit: the shorter side to aim for (e.g. 320); crop: the crop, 224 or HxW "
              "(default: the plan's first opt point).")
@click.option("--stride", type=click.Choice(STRIDE_POLICIES), default="exact", show_default=True,
              help="native/fit: exact runs the size as it is; snap rounds sides to multiples of 32 first.")
@backend_option
@threads_option
@json_option("every prediction")
@click.option("--csv", "csv_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Write one row per image as CSV (rewritten as the run goes).")
@handles_errors
def predict(paths, top, preprocess, size, stride, backend, threads, json_path, csv_path):
    """Classify images of any size through the engines in DIR (default ./engines).

    DIR is taken as the engines folder when it holds a manifest; a folder given as IMAGE stands for every file
    under it. By default (--preprocess fit) an image runs at its own size when a profile covers it, and is
    otherwise resized with its aspect ratio kept into the profile that fits it; each line says what was done
    (original size, size run, profile), then the top labels. An unusable file found in a folder is skipped
    with its reason; one named on the command line makes the exit code non-zero after the others ran. Images
    of the same run size share one inference call up to the profile's max batch. --json/--csv are rewritten
    as the run goes, so an interrupted run keeps what it did.
    """
    from rsz_export.serve.predict import final_error, predict_files, split_arguments
    from rsz_export.serve.preprocess_policy import Preprocess
    from rsz_export.serve.results import ResultFiles
    from rsz_export.serve.session import Session, require_classes
    from rsz_export.shapes import Resolution

    arguments = split_arguments(paths)
    policy = Preprocess(preprocess or "fit", parse_or_usage(Resolution.parse, size, "--size"), stride)
    check_writable(json_path, csv_path)
    total = len(arguments.images) + len(arguments.passed_over)
    with Session(arguments.engines_dir, backend=backend, preprocess=policy, threads=threads) as session:
        require_classes(session.manifest, "predict")
        warning = session.manifest.random_weights_warning
        if warning:
            console().warn(warning)
        header = {"engines": arguments.engines_dir, "preprocess": session.preprocess.describe(), "images": total,
                  "weights_warning": warning}
        with ResultFiles(json_path, csv_path, header) as files, Display(total, json_path != "-") as display:
            for outcome in predict_files(session, arguments, top):
                files.add(outcome)
                display.add(outcome, warn_skipped=total > 1)
    if arguments.from_folders:
        console().info(summary(display.classified, len(display.skipped), json_path, csv_path))
    error = final_error(display.skipped, display.classified, total)
    if error:
        raise error


def summary(classified: int, skipped: int, *paths: str | None) -> str:
    """The closing line of a run over folders: how many images were classified and skipped, and where written."""
    written = [p for p in paths if p and p != "-"]
    return f"{classified} image(s) classified, {skipped} skipped" + (f"; written: {', '.join(written)}" if written
                                                                      else "")


COMMANDS = (predict,)
