"""sizeplan: cost model fit, range choice, optimal bands (checked by brute force), and the profile file it writes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsz_export.errors import UsageError
from rsz_export.plan.from_images import (
    DEFAULT_TIMINGS,
    CostModel,
    choose_range,
    fit_cost_model,
    parse_cost_points,
    proposal_plan,
    proposal_profiles,
    propose,
    render_proposal,
    run_size,
    to_profile_toml,
)
from rsz_export.plan.profile_file import load_profile_file
from rsz_export.plan.profiles import route, uncovered_example
from tests.helpers import REPO

BIMODAL = [(240, 320)] * 30 + [(375, 500)] * 10 + [(768, 1024)] * 20


def expected_cost(sizes, proposal) -> float:
    """Mean cost recomputed independently: route each run size with planning.route, price it at that profile's opt."""
    plan = proposal_plan(proposal)
    total = 0.0
    for h, w in sizes:
        rh, rw = run_size(h, w, proposal.min_size, proposal.max_size)
        index = route(plan.profiles, 1, rh, rw)
        opt = plan.profiles[index].opt
        total += proposal.cost.ms(rh * rw, opt.h * opt.w)
    return total / len(sizes)


def test_default_timings_are_the_recorded_bench_numbers():
    """The default points are the p50s that ``rsz-export bench`` recorded for ONNX Runtime's dynamic engine at
    batch 1 (read back from the result file), and the default model passes through them (a is clamped at 0)."""
    record = json.loads((REPO / "benchmarks/results/amd-epyc-2c-2026-11-26.json").read_text())
    recorded = {int(r["size"].split("x")[0]): r["p50_ms"] for r in record["rows"]
                if (r["backend"], r["variant"], r["batch"]) == ("onnxruntime", "dynamic", 1)}
    points = parse_cost_points(DEFAULT_TIMINGS)
    assert [side for side, _ in points] == [224, 800]
    for side, ms in points:
        assert ms == pytest.approx(recorded[side], abs=0.05)
    model = fit_cost_model(points)
    assert model.a_ms == 0.0 and model.b_ms_per_kpx == pytest.approx(1.046, abs=1e-3)
    assert all(model.ms(side * side) == pytest.approx(ms, rel=0.01) for side, ms in points)


def test_cost_fit_is_least_squares_over_several_points():
    truth = CostModel(2.0, 0.5)
    points = [(s, truth.ms(s * s)) for s in (224, 320, 512, 800)]
    fitted = fit_cost_model(points)
    assert (fitted.a_ms, fitted.b_ms_per_kpx) == pytest.approx((2.0, 0.5), rel=1e-9)


@pytest.mark.parametrize("points", [[(224, 22.0)], [(224, 22.0), (224, 30.0)], [(224, 50.0), (800, 20.0)]])
def test_cost_fit_refuses_points_it_cannot_fit(points):
    with pytest.raises(UsageError):
        fit_cost_model(points)


def test_cost_points_parse_and_errors():
    assert parse_cost_points("224=22, 800=270.5") == [(224, 22.0), (800, 270.5)]
    for bad in ("224:22", "x=1", "224=-1", "16=3"):
        with pytest.raises(UsageError):
            parse_cost_points(bad)


def test_tuning_penalty_grows_with_distance_from_opt():
    model = CostModel(1.0, 0.4, tuning_penalty=0.1)
    at_opt = model.ms(256 * 256, 256 * 256)
    assert at_opt == model.ms(256 * 256)
    assert model.ms(256 * 256, 512 * 512) == pytest.approx(at_opt * (1 + 0.1 * math.log(4)))


def test_range_covers_the_requested_share_in_multiples_of_32():
    sizes = [(300, 400)] * 96 + [(40, 50), (2000, 3000), (100, 4000), (500, 500)]
    assert choose_range(sizes, 1.0) == (32, 4000)
    lo, hi = choose_range(sizes, 0.9)
    assert (lo, hi) == (288, 416)
    with pytest.raises(UsageError):
        choose_range(sizes, 0.0)


def test_run_size_keeps_inside_and_resizes_outside_with_aspect():
    assert run_size(300, 400, 224, 800) == (300, 400)
    assert run_size(1200, 1600, 224, 800) == (600, 800)
    assert run_size(100, 150, 224, 800) == (224, 336)


def test_bimodal_sizes_get_several_profiles_cheaper_than_one():
    proposal = propose(BIMODAL)
    assert (proposal.min_size, proposal.max_size) == (224, 1024)
    assert proposal.count >= 2
    assert proposal.covered_share == 1.0
    assert proposal.expected_ms < proposal.single_profile_ms < proposal.static_max_ms
    assert proposal.expected_ms == pytest.approx(expected_cost(BIMODAL, proposal), rel=1e-9)
    edges = [proposal.min_size, *proposal.edges]
    assert edges == sorted(set(edges)) and proposal.edges[-1] == proposal.max_size
    for low, (opt, high) in zip(edges, zip(proposal.opts, proposal.edges)):
        assert low <= opt <= high
    assert "expected cost per image" in render_proposal(proposal)


def test_two_band_split_is_optimal_by_brute_force():
    sizes = [(230, 250), (260, 300), (400, 420), (600, 640), (620, 500), (300, 300)]
    cost = CostModel(1.0, 0.4, tuning_penalty=0.3)
    proposal = propose(sizes, cost, coverage=1.0, profiles=2)
    lo, hi = proposal.min_size, proposal.max_size

    def best_total(opt_step: int) -> float:
        best = math.inf
        for edge in range(lo + 32 - lo % 32, hi, 32):
            total = 0.0
            for band_lo, band_hi in ((lo - 1, edge), (edge, hi)):
                members = [h * w for h, w in sizes if band_lo < max(h, w) <= band_hi]
                opts = [o for o in range(max(lo, band_lo + 1), band_hi + 1) if o % opt_step == 0]
                total += min(sum(cost.ms(p, o * o) for p in members) for o in opts) if members else 0.0
            best = min(best, total)
        return best

    # opt points are multiples of 32 (or the band's geometric middle): between the two brute-force optima
    found = proposal.expected_ms * len(sizes)
    assert best_total(1) - 1e-9 <= found <= best_total(32) + 1e-9
    assert found == pytest.approx(best_total(1), rel=0.01)


def test_profile_count_can_be_fixed_and_is_checked():
    assert propose(BIMODAL, profiles=4).count == 4
    with pytest.raises(UsageError):
        propose(BIMODAL, profiles=200)
    with pytest.raises(UsageError):
        propose([])


def test_profile_file_round_trips_through_the_loader(tmp_path):
    proposal = propose(BIMODAL)
    path = tmp_path / "mine.toml"
    path.write_text(to_profile_toml(proposal, "mine", precision="fp16"))
    loaded = load_profile_file(path)
    assert loaded.name == "mine" and loaded.precision == "fp16"
    plan = loaded.plan()
    assert plan.profiles == proposal_profiles(proposal)
    assert (plan.min_size, plan.max_size) == (proposal.min_size, proposal.max_size)
    assert uncovered_example(plan) is None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(40, 1500), st.integers(40, 1500)), min_size=1, max_size=40))
def test_proposals_never_cost_more_than_one_profile(sizes):
    proposal = propose(sizes, coverage=0.9)
    assert proposal.expected_ms <= proposal.single_profile_ms * (1 + 1e-9)
    assert proposal.expected_ms == pytest.approx(expected_cost(sizes, proposal), rel=1e-9)
    covered = sum(proposal.min_size <= min(s) and max(s) <= proposal.max_size for s in sizes) / len(sizes)
    assert proposal.covered_share == covered


def test_opt_points_follow_the_images():
    small_heavy = propose([(256, 256)] * 50 + [(900, 900)], CostModel(1.0, 0.4, 0.3), coverage=1.0, profiles=1)
    assert small_heavy.opts == (256,)
    large_heavy = propose([(256, 256)] + [(900, 900)] * 50, CostModel(1.0, 0.4, 0.3), coverage=1.0, profiles=1)
    assert large_heavy.opts == (896,)


def test_one_photo_gets_a_range_around_it_and_a_note_that_it_needs_more_images():
    proposal = propose([(3000, 4000)])
    assert proposal.min_size <= 3000 < 4000 <= proposal.max_size and proposal.min_size >= 2048
    assert "note: the 1 image(s) have one size" in render_proposal(proposal)
    assert "note:" not in render_proposal(propose([(3000, 4000), (480, 640)]))
