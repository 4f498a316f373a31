"""``rsz-export predict`` and ``rsz-export sweep``: serve images from built engines, and accuracy per resolution."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rsz_export.cli.common import console, handles_errors, out_dir_argument, parse_or_usage
from rsz_export.errors import UsageError
from rsz_export.manifest import MANIFEST_NAME
from rsz_export.runtime import OVERSIZE_POLICIES, STRIDE_POLICIES

BACKEND_CHOICES = ("onnxruntime", "tensorrt", "torch")
DEFAULT_DIR = "engines"


def split_dir_and_images(paths: tuple[str, ...]) -> tuple[str, list[Path], set[Path]]:
    """``[DIR] IMAGE...``: the first path is the engines folder when it holds a manifest; folders of images expand.

    Returns the folder, the images, and those of them that came from a folder (skipped when unreadable)."""
    paths = list(paths)
    out_dir = DEFAULT_DIR
    if paths and (Path(paths[0]) / MANIFEST_NAME).is_file():
        out_dir = paths.pop(0)
    if not paths:
        raise UsageError("give at least one image: rsz-export predict [DIR] IMAGE...")
    images: list[Path] = []
    from_folders: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            images += found
            from_folders.update(found)
        else:
            images.append(p)
    return out_dir, images, from_folders


def _load_or_skip(path: Path, skippable: bool):
    """The decoded image; for a file found in a folder, None (with a warning) when it is not a readable image."""
    from rsz_export.errors import IntegrityError
    from rsz_export.images import load_rgb

    try:
        return load_rgb(path)
    except IntegrityError as exc:
        if not skippable:
            raise
        console().warn(f"skipped {path}: {exc.message}")
        return None


def render_prediction(p) -> str:
    """One image's answer: where it ran, how long it took, then its top labels."""
    original = f"{p.original[0]}x{p.original[1]}"
    size = original if str(p.input) == original else f"{original} -> {p.input}"
    head = (
        f"{p.source}: {size}, engine {p.engine} ({p.backend}) profile {p.profile}, {p.latency_ms:.1f} ms "
        f"(total {p.total_ms:.1f} ms)"
    )
    return "\n".join([head] + [f"  {label.score:7.2%}  {label.name} ({label.index})" for label in p.top])


backend_option = click.option(
    "--backend",
    type=click.Choice(BACKEND_CHOICES),
    help="Serve from this backend's engines (torch: the PyTorch reference). "
    "Default: every engine in the manifest that can run here.",
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", "top", type=click.IntRange(1, 1000), default=5, show_default=True, help="Labels per image.")
@click.option(
    "--oversize",
    type=click.Choice(OVERSIZE_POLICIES),
    default="error",
    show_default=True,
    help="An image outside every profile: error (naming the covered range) or shrink (resize it in).",
)
@click.option(
    "--stride",
    type=click.Choice(STRIDE_POLICIES),
    default="exact",
    show_default=True,
    help="exact: run each image at its own size; snap: round sides to multiples of 32 first.",
)
@backend_option
@click.option("--threads", type=click.IntRange(1, 256), help="CPU threads per ONNX Runtime session.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every prediction.")
@handles_errors
def predict(paths, top, oversize, stride, backend, threads, as_json):
    """Classify images of any size in range: PATHS is [DIR] IMAGE... (DIR defaults to ./engines).

    Each image keeps its own size when a profile covers it and goes to the covering profile with the least
    compute; prints the top labels with probabilities, the engine and profile that served it, and latency.
    A folder given as IMAGE stands for the image files in it (others are skipped with a warning).
    """
    from rsz_export.runtime import Session

    out_dir, images, from_folders = split_dir_and_images(paths)
    results = []
    with Session(out_dir, backend=backend, oversize=oversize, stride=stride, threads=threads) as session:
        for path in images:
            image = _load_or_skip(path, path in from_folders)
            if image is None:
                continue
            prediction = session.predict(image, top, source=str(path))
            results.append(prediction)
            if not as_json:
                click.echo(render_prediction(prediction))
    if not results:
        raise UsageError(f"none of the {len(images)} file(s) given is a readable image", hint="give JPEG/PNG files")
    if as_json:
        click.echo(json.dumps({"engines": out_dir, "predictions": [p.to_dict() for p in results]}, indent=2))


@click.command()
@out_dir_argument
@click.option(
    "--images",
    "labeled",
    required=True,
    type=click.Path(file_okay=False),
    help="Labeled images in ImageFolder layout: LABELED_DIR/<ImageNet class name or index>/<files>.",
)
@click.option("--sizes", required=True, help="Comma-separated sizes to evaluate, e.g. 224,256,288,320 or 227x341.")
@click.option(
    "--crop-ratio",
    type=click.FloatRange(0.1, 1.0),
    default=0.875,
    show_default=True,
    help="Resize to size / ratio, then centre-crop the size (torchvision's evaluation transform).",
)
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@handles_errors
def sweep(out_dir, labeled, sizes, crop_ratio, backend, as_json):
    """Top-1/top-5 accuracy and latency per input size for the built engines, with the Pareto front marked."""
    from rsz_export.runtime import Session
    from rsz_export.shapes import parse_sizes
    from rsz_export.sweep import load_labeled, render_sweep, rows_to_json, run_sweep

    size_list = parse_or_usage(parse_sizes, sizes, "--sizes")
    data = load_labeled(labeled)
    log = console().debug
    with Session(out_dir, backend=backend) as session:
        rows = run_sweep(session, data, size_list, crop_ratio, log)
    click.echo(json.dumps(rows_to_json(rows, data), indent=2) if as_json else render_sweep(rows, data))


COMMANDS = (predict, sweep)
