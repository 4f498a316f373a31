"""sweep: class folders to ImageNet indices, torchvision's eval crop, the Pareto front, and a real sweep."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsz_export.errors import UsageError
from rsz_export.images.imagenet import labels
from rsz_export.images.loading import load_rgb
from rsz_export.images.preprocess import crop_input
from rsz_export.plan.routing import Route
from rsz_export.serve.session import Session
from rsz_export.shapes import Resolution
from rsz_export.sweep.accuracy import class_index, load_labeled, pareto_front, run_sweep
from rsz_export.sweep.report import render_sweep


def test_folder_names_map_to_classes():
    names = labels()
    assert class_index("goldfish", names) == 1
    assert class_index("Great_White-Shark", names) == 2
    assert class_index("0", names) == 0 and class_index("1000", names) is None
    assert class_index("n01440764", names) is None  # WordNet ids are not class names
    assert class_index("hot-dog stand", names) is None


def test_pareto_front_keeps_only_undominated_points():
    points = [(0.70, 10.0), (0.75, 20.0), (0.72, 25.0), (0.75, 30.0), (0.80, 40.0), (0.70, 12.0)]
    assert pareto_front(points) == [True, True, False, False, True, False]




def make_labeled(root, classes: dict[str, list[tuple[int, int]]], seed: int = 0):
    rng = np.random.default_rng(seed)
    for name, sizes in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_labeled_set_errors_are_clear(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        load_labeled(tmp_path / "none")
    with pytest.raises(UsageError, match="no class folders"):
        load_labeled(tmp_path)
    make_labeled(tmp_path / "set", {"goldfish": [(64, 64)], "dragon": [(64, 64)], "unicorn": [(64, 64)]})
    listed = r"2 class folder\(s\).*: 'dragon' \(did you mean 'dragonfly'\?\), 'unicorn'\n"
    with pytest.raises(UsageError, match=listed):
        load_labeled(tmp_path / "set")
    (tmp_path / "empty" / "tench").mkdir(parents=True)
    with pytest.raises(UsageError, match="no readable images"):
        load_labeled(tmp_path / "empty")


def test_labeled_set_skips_unreadable_files(tmp_path):
    root = make_labeled(tmp_path, {"goldfish": [(300, 260)], "tench": [(280, 300)]})
    (root / "tench" / "broken.jpg").write_bytes(b"nope")
    data = load_labeled(root)
    assert sorted(label for _, label in data.items) == [0, 1]
    assert len(data.skipped) == 1


def test_sweep_measures_accuracy_per_size_on_a_real_build(small_engines_dir, tmp_path):
    """Label each image with the engine's own top-1 at 256: the sweep must score 100% top-1 there."""
    pool = make_labeled(tmp_path / "pool", {"all": [(300, 260), (280, 340), (400, 300), (256, 256), (333, 290)]}, 5)
    with Session(small_engines_dir) as session:
        for path in sorted((pool / "all").iterdir()):
            logits, _ = session.run(
                crop_input(load_rgb(path), Resolution(256, 256)), Route(0, 0, Resolution(256, 256), True)
            )
            target = tmp_path / "labeled" / str(int(np.argmax(logits[0])))
            target.mkdir(parents=True, exist_ok=True)
            path.rename(target / path.name)
        data = load_labeled(tmp_path / "labeled")
        rows = run_sweep(session, data, [Resolution(224, 224), Resolution(256, 256), Resolution(320, 320)])
    by_size = {r.size: r for r in rows}
    assert by_size["256x256"].top1 == 1.0 and by_size["256x256"].top5 == 1.0
    assert by_size["224x224"].images == 5 and 0 <= by_size["224x224"].top1 <= by_size["224x224"].top5 <= 1
    assert not by_size["320x320"].covered and by_size["320x320"].top1 is None
    small, large = by_size["224x224"], by_size["256x256"]
    faster = small.latency_ms < large.latency_ms  # (equal latencies would need a tie rule: not met in practice)
    assert small.pareto == faster  # 256 scores 100%: it beats a slower 224 on both counts
    assert large.pareto == (not (faster and small.top1 == 1.0))  # only a faster, equally right 224 beats it
    assert not by_size["320x320"].pareto
    text = render_sweep(rows, data)
    assert "outside every profile" in text and "100.0%" in text


def test_sweep_runs_native_once_per_engine_and_counts_what_no_profile_holds(colour_engines, tmp_path):
    """Blue images labelled great white shark (class 2 for the colour stand-in): native runs the covered ones at
    their own size, fit skips the panorama only, and fit refuses a non-square size before running anything."""
    (tmp_path / "2").mkdir()
    for name, (w, h) in {"in.png": (300, 250), "big.png": (1200, 900), "wide.png": (20000, 10)}.items():
        Image.new("RGB", (w, h), (20, 20, 230)).save(tmp_path / "2" / name)
    data = load_labeled(tmp_path)
    with Session(colour_engines) as session:
        rows = run_sweep(session, data, [Resolution(224, 224)], ("fit", "native", "crop"))
        with pytest.raises(UsageError, match="one side"):
            run_sweep(session, data, [Resolution(224, 300)], ("fit",))
    by_policy = {r.preprocess: r for r in rows}
    assert [r.preprocess for r in rows] == ["fit", "crop", "native"]  # per size, then native once
    assert (by_policy["native"].size, by_policy["native"].images, by_policy["native"].skipped) == ("native", 1, 2)
    assert (by_policy["fit"].images, by_policy["fit"].skipped, by_policy["fit"].top1) == (2, 1, 1.0)
    assert (by_policy["crop"].images, by_policy["crop"].profile, by_policy["crop"].top1) == (3, 0, 1.0)
    assert by_policy["native"].megapixels == pytest.approx(0.075)
    assert by_policy["fit"].profile is None and by_policy["fit"].covered


def test_the_sweep_plot_keeps_size_labels_apart_and_shows_the_pareto_front():
    import matplotlib.pyplot as plt

    from rsz_export.sweep.accuracy import SweepRow, mark_pareto
    from rsz_export.sweep.report import figure

    # Random weights: every top-1 near 0, latencies close together: the labels would all sit on one another.
    rows = mark_pareto([SweepRow("ort", "onnxruntime", mode, f"{s}x{s}", True, None, 4, 0, 0.25 * (s % 2), 1.0,
                                 10.0 + s / 100 + (0.01 if mode == "fit" else 0), s * s / 1e6)
                        for s in (224, 256, 288, 320, 352, 384) for mode in ("crop", "fit")])
    fig = figure(rows)
    try:
        ax_lat = fig.axes[1]
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in ax_lat.texts]
        assert len(boxes) == 12
        assert not [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[:i]) if a.overlaps(b)]
        band = next(line for line in ax_lat.lines if line.get_label() == "Pareto front")
        assert band.get_linewidth() >= 5 and len(band.get_xdata()) == sum(r.pareto for r in rows)
        assert any(c.get_offsets().shape[0] == sum(r.pareto for r in rows) for c in ax_lat.collections)  # ringed
    finally:
        plt.close(fig)
