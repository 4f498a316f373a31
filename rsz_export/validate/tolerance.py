"""Judging parity statistics: a tolerance policy per precision, and the verdict. Pure.

* ``rtol``: the largest relative L2 error allowed, ``||candidate - reference|| / ||reference||``;
* ``atol``: the largest absolute difference allowed in any single logit;
* ``min_top1``: the smallest fraction of rows whose top-1 class must agree;
* ``min_cosine``: the smallest cosine similarity any row's logits may have to the reference's;
* ``min_top5``: the smallest fraction of rows whose reference top-1 class must be in the candidate's top-5;
* no NaN or Inf is ever allowed.

int8 cannot promise element-wise closeness, so its preset has no ``atol`` (None: not checked) and judges what
quantization keeps: the direction of the logit vector (cosine), its relative L2 error, and the ranking.

Relative L2 is the main criterion because it does not depend on the logit scale or on one near-zero
logit; ``atol`` catches a few logits that are far off while the rest hide them in the L2 norm. The presets
and the measurements behind them are in docs/validate.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from rsz_export.errors import check_choice, check_number
from rsz_export.interface import PRECISIONS

if TYPE_CHECKING:
    from rsz_export.parity import ParityStats

@dataclass(frozen=True)
class TolerancePolicy:
    """What counts as a pass: relative L2 <= rtol, every |difference| <= atol (unless None), top-1 agreement >=
    min_top1, every row's cosine >= min_cosine, top-5 containment >= min_top5."""

    precision: str
    rtol: float
    atol: float | None
    min_top1: float
    min_cosine: float = 0.0
    min_top5: float = 0.0
    images_only: bool = False
    """Run on images only, not on the seeded noise inputs: int8 ranges are calibrated on images, and noise
    drives activations no image does."""

    def __post_init__(self) -> None:
        check_choice(self.precision, "precision", PRECISIONS)
        check_number(self.rtol, "--rtol", 0.0)
        if self.atol is not None:
            check_number(self.atol, "--atol", 0.0)
        check_number(self.min_top1, "--min-top1", 0.0, 1.0)
        check_number(self.min_cosine, "--min-cosine", -1.0, 1.0)
        check_number(self.min_top5, "--min-top5", 0.0, 1.0)

    @classmethod
    def preset(cls, precision: str) -> TolerancePolicy:
        """The preset for a precision (see PRESETS and docs/validate.md for the measurements behind them)."""
        return PRESETS[check_choice(precision, "precision for a tolerance preset", tuple(PRESETS))]

    def override(self, rtol: float | None = None, atol: float | None = None, min_top1: float | None = None,
                 min_cosine: float | None = None, min_top5: float | None = None) -> TolerancePolicy:
        """A copy with the given fields replaced (None keeps the preset's value)."""
        given = {"rtol": rtol, "atol": atol, "min_top1": min_top1, "min_cosine": min_cosine, "min_top5": min_top5}
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        text = f"{self.precision}: rtol {self.rtol:g}, atol {'-' if self.atol is None else f'{self.atol:g}'}, "
        text += f"min_top1 {self.min_top1:g}"
        extra = [f"{k} {getattr(self, k):g}" for k in ("min_cosine", "min_top5") if getattr(self, k)]
        return ", ".join([text, *extra])


# Bounds per precision; docs/validate.md has the measurements they come from and how to re-measure them.
# fp32 allows about 50x (rtol) and 15x (atol) what ONNX Runtime fp32 measures against PyTorch fp32: summation
# order differs, nothing else should. fp16 allows about 3-5x its measurements; TF32 rounds matmul/conv inputs
# to fp16's 10-bit mantissa but keeps fp32 range, accumulation and storage, so fp16's bounds hold for it.
# bf16's 7-bit mantissa has 8x fp16's rounding error, hence 8x fp16's bounds. Top-1 may flip on an input whose
# two best classes are nearly tied, which reduced precision makes likelier: with the default 6 inputs per
# case, fp16/tf32 allow one flip per case and bf16 two; fp32 allows none.
# int8 (docs/validate.md has the measurements): worst cosine and relative L2 of the logits against the reference
# per case, over images (not noise: ``images_only``). The cosine bound is the worst a default build (held-out
# target 0.996) should show on photographs its calibration never saw (docs/int8.md, "Accuracy target"). Seeded
# random weights have nearly flat logits, where top-1 flips on small errors, so the top-1 bound is loose and the
# top-5 containment bound carries the ranking; with the 4 bundled photographs one image per case may fall out.
INT8_MIN_COSINE = 0.985
INT8_RTOL = 0.3
INT8_MIN_TOP1 = 0.5
INT8_MIN_TOP5 = 0.75
PRESETS = {
    "fp32": TolerancePolicy("fp32", rtol=1e-4, atol=5e-3, min_top1=1.0),
    "tf32": TolerancePolicy("tf32", rtol=1e-2, atol=1.0, min_top1=0.8),
    "fp16": TolerancePolicy("fp16", rtol=1e-2, atol=1.0, min_top1=0.8),
    "bf16": TolerancePolicy("bf16", rtol=8e-2, atol=8.0, min_top1=0.65),
    "int8": TolerancePolicy("int8", rtol=INT8_RTOL, atol=None, min_top1=INT8_MIN_TOP1, min_cosine=INT8_MIN_COSINE,
                            min_top5=INT8_MIN_TOP5, images_only=True),
}


FEATURE_FP32_RTOL = 1e-5
"""A backbone's feature maps in fp32: ONNX Runtime measures about 2e-6 relative L2 against PyTorch (the
``--outputs`` section of docs/validate.md)."""


def feature_policy(policy: TolerancePolicy) -> TolerancePolicy:
    """The preset for one feature map of a backbone at ``policy``'s precision: its relative L2 bound (1e-5 in fp32)
    and cosine, no ``atol`` (a map's scale depends on the weights) and no ranking (a map has no classes)."""
    rtol = FEATURE_FP32_RTOL if policy.precision == "fp32" else policy.rtol
    return replace(policy, rtol=rtol, atol=None, min_top1=0.0, min_top5=0.0)


@dataclass(frozen=True)
class Verdict:
    """Whether the statistics pass a policy, and each reason they do not (empty when they pass)."""

    passed: bool
    failures: tuple[str, ...] = ()


def judge(stats: ParityStats, policy: TolerancePolicy) -> Verdict:
    """Check statistics against a policy; every violated criterion is listed, not only the first."""
    failures = []
    if stats.nonfinite:
        failures.append(f"{stats.nonfinite} NaN/Inf value(s) in the output")
    if not stats.rel_l2 <= policy.rtol:
        failures.append(f"relative L2 error {stats.rel_l2:.3g} > rtol {policy.rtol:g}")
    if policy.atol is not None and not stats.max_abs <= policy.atol:
        failures.append(f"max |difference| {stats.max_abs:.3g} > atol {policy.atol:g}")
    if not stats.top1 >= policy.min_top1:
        failures.append(f"top-1 agreement {stats.top1:.3g} < min_top1 {policy.min_top1:g}")
    if not stats.cosine >= policy.min_cosine:
        failures.append(f"cosine {stats.cosine:.4f} < min_cosine {policy.min_cosine:g}")
    if not stats.top1_in_top5 >= policy.min_top5:
        failures.append(f"top-5 containment {stats.top1_in_top5:.3g} < min_top5 {policy.min_top5:g}")
    return Verdict(not failures, tuple(failures))
