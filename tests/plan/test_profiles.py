import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsz_export.errors import UsageError
from rsz_export.plan.grid import size_grid
from rsz_export.plan.profile_file import profile_file_from_dict
from rsz_export.plan.profiles import Plan, PlanSpec, default_profile_count, plan_profiles, route, uncovered_example
from rsz_export.shapes import MIN_SIZE, BatchRange, Resolution


def test_default_quickstart_plan():
    plan = plan_profiles(PlanSpec(224, 800))
    assert len(plan.profiles) == 4 == default_profile_count(224, 800)
    assert [p.max.h for p in plan.profiles] == [320, 416, 576, 800]
    assert all(p.min.h == p.min.w == 224 for p in plan.profiles)
    assert all(p.opt.h % 32 == 0 for p in plan.profiles)
    assert uncovered_example(plan) is None


def test_routing_takes_smallest_covering_profile():
    plan = plan_profiles(PlanSpec(224, 800))
    assert route(plan.profiles, 1, 224, 224) == 0
    assert route(plan.profiles, 1, 320, 224) == 0
    assert route(plan.profiles, 1, 224, 321) == 1
    assert route(plan.profiles, 1, 800, 224) == 3
    assert route(plan.profiles, 1, 801, 224) is None
    assert route(plan.profiles, 2, 224, 224) is None  # batch 1 only


def test_square_plan_is_tighter_but_misses_mixed_bands():
    plan = plan_profiles(PlanSpec(224, 800, aspect="square"))
    assert [p.min.h for p in plan.profiles] == [224, 321, 417, 577]
    assert uncovered_example(plan) is not None
    assert all(route(plan.profiles, 1, s, s) is not None for s in range(224, 801))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"min_size": 800, "max_size": 224}, "above --max"),
        ({"min_size": 16, "max_size": 224}, "32..4096"),
        ({"min_size": 224, "max_size": 10**6}, "32..4096"),
        ({"min_size": 224, "max_size": 800, "profiles": 0}, r"--profiles for 224..800 must be a whole number in 1..16"),
        ({"min_size": 224, "max_size": 226, "profiles": 5}, r"in 1..3, got 5"),
        ({"min_size": 224, "max_size": 800, "aspect": "wide"}, "aspect"),
    ],
)
def test_bad_specs(kwargs, match):
    with pytest.raises(UsageError, match=match):
        PlanSpec(**kwargs)


def test_plan_json_round_trip():
    plan = plan_profiles(PlanSpec(224, 800, batch=BatchRange(1, 8, 32)))
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert all(p.max.batch == 32 and p.opt.batch == 8 for p in again.profiles)


def test_size_grid_has_edges_opt_and_odd_non_square_sizes():
    plan = plan_profiles(PlanSpec(224, 800))
    grid = size_grid(plan)
    for index, profile in enumerate(plan.profiles):
        mine = {g.role: g.size for g in grid if g.profile == index}
        assert mine["min"].h == profile.min.h and mine["max"].h == profile.max.h and mine["opt"].h == profile.opt.h
        odd = mine["odd"]
        assert odd.h != odd.w and odd.h % 2 == 1 and odd.w % 32 != 0
        assert profile.covers(1, odd.h, odd.w)
        assert route(plan.profiles, 1, odd.h, odd.w) == index  # the odd size exercises its own profile


def test_profile_file_explicit_profiles_and_errors():
    loaded = profile_file_from_dict(
        {
            "min": 224,
            "max": 512,
            "precision": "fp16",
            "profile": [{"min": "224", "opt": "256", "max": "320"}, {"min": "224", "opt": "448", "max": "512"}],
        }
    )
    plan = loaded.plan()
    assert len(plan.profiles) == 2 and plan.profiles[1].max.h == 512 and loaded.precision == "fp16"
    with pytest.raises(UsageError, match="unknown key"):
        profile_file_from_dict({"min": 224, "max": 512, "colour": "red"})
    with pytest.raises(UsageError, match="missing key 'max'"):
        profile_file_from_dict({"min": 224})
    with pytest.raises(UsageError, match="outside"):
        profile_file_from_dict({"min": 224, "max": 512, "profile": [{"min": "224", "opt": "256", "max": "640"}]})
    with pytest.raises(UsageError, match="precision"):
        profile_file_from_dict({"min": 224, "max": 512, "precision": "int3"})


ranges = st.tuples(st.integers(MIN_SIZE, 1200), st.integers(MIN_SIZE, 1200)).map(sorted)


@settings(max_examples=150, deadline=None)
@given(ranges, st.integers(1, 6), st.sampled_from(["free", "square"]))
def test_planner_properties(bounds, count, aspect):
    lo, hi = bounds
    count = min(count, hi - lo + 1)
    plan = plan_profiles(PlanSpec(lo, hi, count, aspect=aspect))
    assert plan == plan_profiles(PlanSpec(lo, hi, count, aspect=aspect))  # deterministic
    assert len(plan.profiles) == count
    edges = [p.max.h for p in plan.profiles]
    assert edges == sorted(set(edges)) and edges[-1] == hi
    for p in plan.profiles:
        assert p.min.h <= p.opt.h <= p.max.h and p.min.w <= p.opt.w <= p.max.w
        assert lo <= p.min.h and p.max.h <= hi
    if aspect == "free":
        assert uncovered_example(plan) is None
    for side in {lo, hi, (lo + hi) // 2}:
        assert route(plan.profiles, 1, side, side) is not None


@settings(max_examples=60, deadline=None)
@given(ranges, st.data())
def test_every_size_in_free_range_is_routed(bounds, data):
    lo, hi = bounds
    plan = plan_profiles(PlanSpec(lo, hi))
    h = data.draw(st.integers(lo, hi))
    w = data.draw(st.integers(lo, hi))
    index = route(plan.profiles, 1, h, w)
    assert index is not None and plan.profiles[index].covers(1, h, w)
    smaller = [
        i for i, p in enumerate(plan.profiles) if p.covers(1, h, w) and p.max_pixels < plan.profiles[index].max_pixels
    ]
    assert not smaller


def _plan_of(*bands: tuple[int, int]) -> Plan:
    """A 224..800 plan with one square profile per (lo, hi) band, for coverage edge cases."""
    from rsz_export.shapes import InputShape, Profile

    profiles = tuple(Profile(InputShape(1, lo, lo), InputShape(1, lo, lo), InputShape(1, hi, hi)) for lo, hi in bands)
    return Plan(224, 800, "square", BatchRange(), profiles)


def test_uncovered_example_is_the_first_size_no_profile_takes():
    """Exact: the smallest uncovered height, then width, wherever the gap is: one pixel past a profile's top, the
    range's own minimum, or its maximum."""
    assert uncovered_example(_plan_of((224, 400), (403, 800))) == Resolution(224, 401)
    assert uncovered_example(_plan_of((226, 800))) == Resolution(224, 224)
    assert uncovered_example(_plan_of((224, 799))) == Resolution(224, 800)
    assert uncovered_example(_plan_of((224, 800))) is None


def test_a_narrow_range_gets_one_profile():
    assert default_profile_count(224, 224) == default_profile_count(224, 256) == 1
    assert default_profile_count(224, 320) == 2


def test_a_plan_describes_its_profiles_and_reduces_to_one_fixed_shape():
    plan = plan_profiles(PlanSpec(224, 416, 2))
    assert plan.covered_ranges() == ("profile 0: h,w 224..320 opt 256x256, batch 1..1; "
                                     "profile 1: h,w 224..416 opt 352x352, batch 1..1")
    assert plan.covered_ranges([1]) == "profile 1: h,w 224..416 opt 352x352, batch 1..1"
    from rsz_export.plan.profiles import single_profile_plan
    from rsz_export.shapes import InputShape, Profile

    shape = InputShape(2, 256, 320)
    fixed = single_profile_plan(plan, shape)
    assert fixed == Plan(224, 416, "free", BatchRange(2, 2, 2), (Profile(shape, shape, shape),))


def test_band_edges_round_to_32_then_8_then_1_as_the_range_allows():
    """Edges are multiples of 32 once the range spans 64 pixels per band, of 8 from 16 per band, else exact;
    a range as narrow as its band count still gets strictly increasing edges, the last one at the top."""
    from rsz_export.plan.profiles import band_edges

    assert band_edges(224, 352, 2) == [288, 352]  # exactly 64 per band: multiples of 32
    assert band_edges(224, 260, 2) == [240, 260]  # 18 per band: multiples of 8
    assert band_edges(224, 240, 3) == [229, 235, 240]  # under 16 per band: exact
    assert band_edges(224, 232, 5) == [226, 227, 229, 230, 232]
    assert band_edges(224, 227, 4) == [224, 225, 226, 227]
    # 32..416 in 6 bands: the first two edges both round to 64; the second moves one pixel up to stay above it
    assert band_edges(32, 416, 6) == [64, 65, 128, 192, 256, 416]


def test_opt_points_snap_to_32_even_at_a_bands_end():
    from rsz_export.plan.profiles import opt_side

    assert (opt_side(224, 232), opt_side(250, 256), opt_side(224, 300)) == (224, 256, 256)


def test_default_counts_at_the_cap_and_at_an_exact_step():
    assert default_profile_count(32, 4096) == 6  # the cap
    assert default_profile_count(250, 350) == 1  # exactly one 1.4x step is one band


def test_range_errors_name_the_option():
    with pytest.raises(UsageError, match=r"^--min 16 is outside"):
        PlanSpec(16, 800)
    with pytest.raises(UsageError, match=r"^--max 100000 is outside"):
        PlanSpec(224, 100_000)
    with pytest.raises(UsageError, match=r"^unknown aspect 'wide'; choose one of free, square$"):
        PlanSpec(224, 800, aspect="wide")


def test_a_plan_records_its_routing_rule_and_refuses_a_malformed_one():
    from rsz_export.plan.profiles import ROUTING_RULE

    assert plan_profiles(PlanSpec(224, 320)).to_dict()["routing"] == ROUTING_RULE
    with pytest.raises(UsageError, match=r"^malformed plan: 'min_size'"):
        Plan.from_dict({})
