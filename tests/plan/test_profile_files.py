"""Every deployment preset in profiles/ loads, plans, covers its whole range and names a known precision."""

from __future__ import annotations

import pytest

from rsz_export.interface import PRECISIONS
from rsz_export.plan.profile_file import load_profile_file
from rsz_export.plan.profiles import route, uncovered_example
from tests.helpers import REPO

PROFILE_DIR = REPO / "profiles"
FILES = sorted(PROFILE_DIR.glob("*.toml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_preset_loads_plans_and_covers_its_range(path):
    loaded = load_profile_file(path)
    plan = loaded.plan()
    assert loaded.precision in PRECISIONS
    assert loaded.name == path.stem and loaded.description
    assert path.read_text().startswith("# Who it is for:")
    assert plan.profiles and plan.profiles[-1].max.h == plan.max_size
    assert uncovered_example(plan) is None
    for p in plan.profiles:
        assert plan.min_size <= p.min.h <= p.opt.h <= p.max.h <= plan.max_size
        assert plan.batch.min == p.min.batch and p.max.batch == plan.batch.max
    for side in (plan.min_size, (plan.min_size + plan.max_size) // 2, plan.max_size):
        assert route(plan.profiles, plan.batch.max, side, side) is not None


@pytest.mark.parametrize(
    ("name", "lo", "hi", "batch_max", "precision"),
    [("edge", 224, 512, 1, "fp16"), ("server", 224, 800, 32, "fp16"), ("detection-backbone", 600, 1344, 2, "fp32"),
     ("cifar-transfer", 32, 64, 256, "fp32")],
)
def test_the_issue_presets_exist_with_their_ranges(name, lo, hi, batch_max, precision):
    plan_file = load_profile_file(PROFILE_DIR / f"{name}.toml")
    plan = plan_file.plan()
    assert (plan.min_size, plan.max_size, plan.batch.max, plan_file.precision) == (lo, hi, batch_max, precision)
    assert plan_file.outputs == ("fpn" if name == "detection-backbone" else "logits")
