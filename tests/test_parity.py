"""parity: statistics on known arrays, the tolerance that would have passed, and the separate policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsz_export.errors import UsageError
from rsz_export.parity import ParityStats, combine, compare, top_k
from rsz_export.validate.tolerance import FEATURE_FP32_RTOL, PRESETS, TolerancePolicy, feature_policy, judge


def _logits(rows: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 3.0, size=(rows, 1000)).astype(np.float32)


def test_identical_outputs_are_exact():
    ref = _logits()
    stats = compare(ref, ref.copy())
    assert (stats.max_abs, stats.mean_abs, stats.rel_l2, stats.nonfinite) == (0.0, 0.0, 0.0, 0)
    assert stats.cosine == pytest.approx(1.0, abs=1e-12)
    assert (stats.top1, stats.top5, stats.rows) == (1.0, 1.0, 3)


def test_statistics_match_hand_computation():
    ref = np.zeros((1, 10), dtype=np.float32)
    ref[0, :] = np.arange(10)
    cand = ref.copy()
    cand[0, 9] = 0.0  # the top class drops to the bottom: top-1 flips, top-5 loses one member
    stats = compare(ref, cand)
    assert stats.max_abs == 9.0
    assert stats.mean_abs == pytest.approx(0.9)
    assert stats.rel_l2 == pytest.approx(9.0 / math.sqrt(sum(i * i for i in range(10))))
    assert stats.top1 == 0.0 and stats.decisive_flips == 1  # margin 1, no error outside classes 9 and 8
    assert stats.top5 == pytest.approx(4 / 5)
    expected_cos = float(ref[0] @ cand[0]) / (np.linalg.norm(ref[0]) * np.linalg.norm(cand[0]))
    assert stats.cosine == pytest.approx(expected_cos)
    assert stats.needed_rtol == stats.rel_l2 and stats.needed_atol == 9.0


def test_nan_and_inf_are_counted_and_poison_everything():
    ref = _logits(2)
    cand = ref.copy()
    cand[0, 3] = np.nan
    cand[1, 7] = np.inf
    stats = compare(ref, cand)
    assert stats.nonfinite == 2
    assert math.isinf(stats.rel_l2) and stats.top1 == 0.0 and stats.decisive_flips == 2
    verdict = judge(stats, PRESETS["bf16"])
    assert not verdict.passed and any("NaN/Inf" in f for f in verdict.failures)


def test_shape_mismatch_and_broken_reference_are_usage_errors():
    with pytest.raises(UsageError, match=r"differs from reference shape"):
        compare(_logits(2), _logits(3))
    bad = _logits(1)
    bad[0, 0] = np.nan
    with pytest.raises(UsageError) as error:
        compare(bad, _logits(1))
    assert str(error.value) == "the reference logits contain NaN or Inf: the PyTorch reference itself is broken"
    for reference, candidate, which in ((np.zeros((0, 10)), np.zeros((0, 10)), "reference"),
                                        (_logits(2), np.zeros((2, 3, 4)), "candidate")):
        with pytest.raises(UsageError, match=f"^{which} logits must be \\[rows, classes\\] with at least one of each"):
            compare(reference, candidate)


def test_one_dimensional_logits_are_one_row():
    ref = _logits(1)[0]
    assert compare(ref, ref + 0.5).rows == 1


def test_decisive_flips_are_flips_that_errors_elsewhere_in_the_row_could_not_cause():
    """Row 0: one class pushed past a margin of 5 while every other logit moves by 0.01: decisive. Row 1: a
    margin of 0.1 flipped by noise of 0.2 spread over the row: not decisive. Row 2: no flip. Row 3: a flip by
    two opposite errors on the classes concerned, margin 1.0 against 0.4 elsewhere: decisive."""
    rng = np.random.default_rng(2)
    ref = rng.uniform(-1.0, 0.0, size=(4, 10))
    ref[0, 2], ref[1, [4, 5]], ref[2, 7], ref[3, [0, 1]] = 5.0, (1.0, 0.9), 3.0, (2.0, 1.0)
    cand = ref.copy()
    cand[0] += 0.01
    cand[0, 6] = 6.0
    cand[1] += rng.choice([-0.2, 0.2], size=10)
    cand[1, [4, 5]] = (0.8, 1.1)
    cand[2] += 0.5
    cand[3, [0, 1]] = (1.3, 1.7)
    cand[3, 9] += 0.4
    stats = compare(ref, cand)
    assert stats.top1 == 0.25 and stats.decisive_flips == 2
    assert compare(ref[1:3], cand[1:3]).decisive_flips == 0
    assert compare(ref[3:], cand[3:]).decisive_flips == 1
    cand[3, 9] += 0.2  # the rest of the row now errs by 0.6: twice that exceeds the margin
    assert compare(ref[3:], cand[3:]).decisive_flips == 0


def test_combine_takes_worst_error_and_row_weighted_agreement():
    a = ParityStats(rows=1, max_abs=0.1, mean_abs=0.01, rel_l2=1e-3, cosine=0.999, top1=1.0, top5=1.0, nonfinite=0,
                    decisive_flips=1)
    b = ParityStats(rows=3, max_abs=0.3, mean_abs=0.05, rel_l2=5e-4, cosine=0.99, top1=0.0, top5=0.6, nonfinite=1,
                    decisive_flips=2)
    c = combine([a, b])
    assert (c.rows, c.max_abs, c.rel_l2, c.cosine, c.nonfinite, c.decisive_flips) == (4, 0.3, 1e-3, 0.99, 1, 3)
    assert c.top1_in_top5 == 1.0
    c = combine([a, ParityStats(**{**b.__dict__, "top1_in_top5": 0.5})])
    assert c.top1_in_top5 == pytest.approx(0.625)
    assert c.top1 == pytest.approx(0.25) and c.top5 == pytest.approx(0.7) and c.mean_abs == pytest.approx(0.04)
    with pytest.raises(UsageError, match="^nothing to combine: at least one comparison is needed$"):
        combine([])


def test_judge_lists_every_violated_criterion():
    stats = ParityStats(rows=4, max_abs=0.5, mean_abs=0.1, rel_l2=2e-3, cosine=0.99, top1=0.75, top5=0.9, nonfinite=0)
    policy = TolerancePolicy("fp32", rtol=1e-3, atol=0.1, min_top1=1.0)
    verdict = judge(stats, policy)
    assert not verdict.passed and len(verdict.failures) == 3
    assert verdict.failures == (
        "relative L2 error 0.002 > rtol 0.001",
        "max |difference| 0.5 > atol 0.1",
        "top-1 agreement 0.75 < min_top1 1",
    )
    # The tolerance the stats report as needed is exactly the one that passes.
    exact = policy.override(rtol=stats.needed_rtol, atol=stats.needed_atol, min_top1=stats.top1)
    assert judge(stats, exact).passed
    assert not judge(stats, exact.override(rtol=stats.needed_rtol * 0.999)).passed


def test_presets_loosen_with_precision():
    order = [PRESETS[p] for p in ("fp32", "fp16", "bf16")]
    assert [p.rtol for p in order] == sorted(p.rtol for p in order)
    assert PRESETS["tf32"].rtol == PRESETS["fp16"].rtol  # both keep a 10-bit mantissa
    assert TolerancePolicy.preset("fp16") is PRESETS["fp16"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "int4"}, "unknown precision 'int4'"),
        ({"min_cosine": 1.5}, "--min-cosine must be a finite number in -1..1, got 1.5"),
        ({"min_top5": -0.1}, "--min-top5 must be a finite number in 0..1, got -0.1"),
        ({"rtol": -1.0}, "--rtol must be a finite number >= 0, got -1.0"),
        ({"atol": math.inf}, "--atol must be a finite number"),
        ({"min_top1": 1.5}, "--min-top1 must be a finite number in 0..1, got 1.5"),
    ],
)
def test_policy_rejects_bad_values_naming_them(kwargs, message):
    base = {"precision": "fp32", "rtol": 1e-4, "atol": 1e-3, "min_top1": 1.0} | kwargs
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TolerancePolicy(**base)


def test_int8_preset_judges_direction_and_ranking_not_single_logits():
    """Logits with int8-sized noise: far outside fp32's per-logit bounds, inside the int8 preset; a row pointing
    elsewhere (low cosine) or a reference top-1 class pushed out of the top-5 fails it, each reason named."""
    rng = np.random.default_rng(3)
    reference = rng.standard_normal((8, 1000)) * 2
    noisy = reference + rng.standard_normal(reference.shape) * 0.15
    stats = compare(reference, noisy)
    assert stats.cosine > 0.99 and stats.top1_in_top5 == 1.0 and stats.max_abs > 0.3
    assert judge(stats, PRESETS["int8"]).passed and not judge(stats, PRESETS["fp32"]).passed
    wrong = noisy.copy()
    wrong[0] = rng.standard_normal(1000)
    for row in (1, 2, 3):  # the reference's best class drops to the bottom
        wrong[row, reference[row].argmax()] = wrong[row].min() - 1
    failures = judge(compare(reference, wrong), PRESETS["int8"]).failures
    assert any(f.startswith("cosine ") for f in failures) and any("top-5 containment 0.5" in f for f in failures)
    assert "atol -" in str(PRESETS["int8"]) and PRESETS["int8"].atol is None


def test_unknown_preset_is_usage_error():
    with pytest.raises(UsageError, match="unknown precision for a tolerance preset 'fp8'; choose one of fp32"):
        TolerancePolicy.preset("fp8")


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(1e-4, 1.0), seed=st.integers(0, 1000))
def test_relative_l2_scales_linearly_and_cosine_stays_bounded(scale, seed):
    ref = _logits(2, seed).astype(np.float64)
    noise = np.random.default_rng(seed + 1).normal(size=ref.shape)
    one = compare(ref, ref + scale * noise)
    two = compare(ref, ref + 2 * scale * noise)
    assert two.rel_l2 == pytest.approx(2 * one.rel_l2, rel=1e-6)
    assert -1.0 - 1e-9 <= two.cosine <= one.cosine <= 1.0 + 1e-9


@pytest.mark.parametrize("classes", [1, 2, 3])
def test_models_with_fewer_classes_than_top_5_compare(classes):
    ref = np.random.default_rng(classes).normal(0.0, 3.0, size=(4, classes))
    same = compare(ref, ref)
    assert (same.top1, same.top5, same.rel_l2, same.decisive_flips) == (1.0, 1.0, 0.0, 0)
    off = compare(ref, ref + 1e-3)
    assert off.max_abs == pytest.approx(1e-3) and off.top5 == 1.0  # top-C of C classes always agree
    with pytest.raises(UsageError, match="at least one of each"):
        compare(np.zeros((2, 0)), np.zeros((2, 0)))


def test_nonfinite_candidates_poison_every_statistic():
    ref = _logits(3)
    cand = ref.copy()
    cand[1, 0] = -np.inf
    poisoned = ParityStats(rows=3, max_abs=math.inf, mean_abs=math.inf, rel_l2=math.inf, cosine=0.0, top1=0.0,
                           top5=0.0, nonfinite=1, decisive_flips=3, top1_in_top5=0.0)
    assert compare(ref, cand) == poisoned


def test_zero_and_tiny_logits_keep_cosine_and_relative_error_defined():
    """A reference row of zeros has cosine 0 and a relative error equal to the candidate's norm; logits whose
    norms are below 1 are compared like any others."""
    zero = compare(np.zeros((1, 4)), np.array([[0.0, 3.0, 4.0, 0.0]]))
    assert (zero.cosine, zero.rel_l2) == (0.0, 5.0)
    tiny = np.array([[0.01, 0.02, 0.03, 0.0]])
    stats = compare(tiny, tiny * 1.1)
    assert stats.cosine == pytest.approx(1.0) and stats.rel_l2 == pytest.approx(0.1)


def test_decisive_flips_with_two_and_three_classes_and_at_the_exact_bound():
    """Three classes: the error outside the two classes concerned is the third's. Two classes: no class is
    left, and no flip counts. A margin of exactly twice the error elsewhere is not decisive."""
    three = compare(np.array([[2.0, 0.0, 0.0]]), np.array([[0.0, 2.5, 0.1]]))
    assert three.top1 == 0.0 and three.decisive_flips == 1
    two = compare(np.array([[2.0, 0.0]]), np.array([[0.0, 2.5]]))
    assert two.top1 == 0.0 and two.decisive_flips == 0
    tie = compare(np.array([[0.0, 1.0, 0.0]]), np.array([[0.5, 0.5, 0.5]]))  # a tie goes to the lower index
    assert tie.top1 == 0.0 and tie.decisive_flips == 0


def test_top_k_breaks_ties_by_index_and_takes_one_row():
    assert top_k(np.zeros((2, 1000)), 5).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert top_k(np.array([3.0, 1.0, 3.0, 2.0]), 3).tolist() == [[0, 2, 3]]


def test_long_rows_rank_and_compare_as_a_full_sort_would(monkeypatch):
    """Rows longer than SORT_UP_TO (a feature map compared whole) are ranked by a partition: the indices the
    stable sort gives, ties at the top included, and the statistics (flips, margins) a full sort gives."""
    from rsz_export import parity

    rng = np.random.default_rng(3)
    n = parity.SORT_UP_TO + 37
    ties = rng.integers(0, 4, (3, n)).astype(np.float32)  # hundreds of values share the largest
    smooth = rng.standard_normal((3, n)).astype(np.float32)
    rows = [ties, smooth, np.zeros((1, n), np.float32), np.arange(n, dtype=np.float32)[None, ::-1]]
    for array in rows:
        assert top_k(array, 5).tolist() == np.argsort(-array, axis=1, kind="stable")[:, :5].tolist()
    peak = smooth.copy()
    peak[:, 100] = 10.0
    moved = peak.copy()
    moved[:, 100], moved[:, 200] = -10.0, 20.0  # a decisive flip: no error elsewhere in the row
    pairs = [(ties, ties[::-1]), (smooth, smooth + rng.standard_normal(smooth.shape).astype(np.float32) * 0.3),
             (ties, np.where(ties == 3, ties + 0.5, ties)), (peak, moved)]
    partitioned = [compare(a, b) for a, b in pairs]
    monkeypatch.setattr(parity, "SORT_UP_TO", 10 * n)  # the full sort
    assert partitioned == [compare(a, b) for a, b in pairs]
    assert any(s.top1 < 1 for s in partitioned) and any(s.decisive_flips for s in partitioned)


def test_statistics_serialise_with_what_would_have_passed():
    stats = compare(np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 3.5]]))
    data = stats.to_dict()
    assert data["rows"] == 1 and data["max_abs"] == 0.5 and data["decisive_flips"] == 0
    assert data["needed"] == {"rtol": stats.rel_l2, "atol": 0.5, "min_top1": 1.0}
    assert set(data) == {*ParityStats.__dataclass_fields__, "needed"}


def test_a_statistic_exactly_at_its_bound_passes():
    policy = PRESETS["int8"]
    at_bounds = ParityStats(rows=4, max_abs=9.0, mean_abs=1.0, rel_l2=policy.rtol, cosine=policy.min_cosine,
                            top1=policy.min_top1, top5=1.0, nonfinite=0, top1_in_top5=policy.min_top5)
    assert judge(at_bounds, policy).passed
    below = ParityStats(**{**at_bounds.__dict__, "cosine": policy.min_cosine - 1e-9, "top1_in_top5": 0.5})
    assert judge(below, policy).failures == ("cosine 0.9850 < min_cosine 0.985",
                                             "top-5 containment 0.5 < min_top5 0.75")


def test_policies_print_and_override_every_bound():
    assert str(PRESETS["int8"]) == "int8: rtol 0.3, atol -, min_top1 0.5, min_cosine 0.985, min_top5 0.75"
    assert str(PRESETS["fp16"]) == "fp16: rtol 0.01, atol 1, min_top1 0.8"
    changed = PRESETS["int8"].override(min_cosine=0.9, min_top5=0.5)
    assert (changed.min_cosine, changed.min_top5, changed.rtol) == (0.9, 0.5, PRESETS["int8"].rtol)


def test_a_policy_is_recorded_with_every_bound():
    policy = TolerancePolicy("fp32", rtol=1e-3, atol=0.1, min_top1=1.0)
    assert TolerancePolicy(**policy.to_dict()) == policy
    assert set(policy.to_dict()) == {"precision", "rtol", "atol", "min_top1", "min_cosine", "min_top5", "images_only"}


def test_a_feature_map_is_judged_by_relative_l2_and_cosine_only():
    """A backbone's feature map: 1e-5 relative L2 in fp32, the precision's own bound otherwise; no atol and no
    ranking; the precision, cosine and images-only setting stay the preset's."""
    assert FEATURE_FP32_RTOL == 1e-5
    assert feature_policy(PRESETS["fp32"]) == TolerancePolicy("fp32", rtol=1e-5, atol=None, min_top1=0.0)
    for precision in ("tf32", "fp16", "bf16", "int8"):
        preset = PRESETS[precision]
        assert feature_policy(preset).to_dict() == {**preset.to_dict(), "atol": None, "min_top1": 0.0,
                                                    "min_top5": 0.0}, precision
