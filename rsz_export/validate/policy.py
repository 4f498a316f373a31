"""Judging parity statistics: a tolerance policy per precision, and the verdict. Pure.

* ``rtol``: the largest relative L2 error allowed, ``||candidate - reference|| / ||reference||``;
* ``atol``: the largest absolute difference allowed in any single logit;
* ``min_top1``: the smallest fraction of rows whose top-1 class must agree;
* no NaN or Inf is ever allowed.

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
    from rsz_export.validate.parity import ParityStats

@dataclass(frozen=True)
class TolerancePolicy:
    """What counts as a pass: relative L2 <= rtol, every |difference| <= atol, top-1 agreement >= min_top1."""

    precision: str
    rtol: float
    atol: float
    min_top1: float

    def __post_init__(self) -> None:
        check_choice(self.precision, "precision", PRECISIONS)
        check_number(self.rtol, "--rtol", 0.0)
        check_number(self.atol, "--atol", 0.0)
        check_number(self.min_top1, "--min-top1", 0.0, 1.0)

    @classmethod
    def preset(cls, precision: str) -> TolerancePolicy:
        """The preset for a precision (see PRESETS and docs/validate.md for the measurements behind them)."""
        return PRESETS[check_choice(precision, "precision for a tolerance preset", tuple(PRESETS))]

    def override(
        self, rtol: float | None = None, atol: float | None = None, min_top1: float | None = None
    ) -> TolerancePolicy:
        """A copy with the given fields replaced (None keeps the preset's value)."""
        changes = {k: v for k, v in {"rtol": rtol, "atol": atol, "min_top1": min_top1}.items() if v is not None}
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.precision}: rtol {self.rtol:g}, atol {self.atol:g}, min_top1 {self.min_top1:g}"


# Bounds per precision; docs/validate.md has the measurements they come from and how to re-measure them.
# fp32 allows about 50x (rtol) and 15x (atol) what ONNX Runtime fp32 measures against PyTorch fp32: summation
# order differs, nothing else should. fp16 allows about 3-5x its measurements; TF32 rounds matmul/conv inputs
# to fp16's 10-bit mantissa but keeps fp32 range, accumulation and storage, so fp16's bounds hold for it.
# bf16's 7-bit mantissa has 8x fp16's rounding error, hence 8x fp16's bounds. Top-1 may flip on an input whose
# two best classes are nearly tied, which reduced precision makes likelier: with the default 6 inputs per
# case, fp16/tf32 allow one flip per case and bf16 two; fp32 allows none.
PRESETS = {
    "fp32": TolerancePolicy("fp32", rtol=1e-4, atol=5e-3, min_top1=1.0),
    "tf32": TolerancePolicy("tf32", rtol=1e-2, atol=1.0, min_top1=0.8),
    "fp16": TolerancePolicy("fp16", rtol=1e-2, atol=1.0, min_top1=0.8),
    "bf16": TolerancePolicy("bf16", rtol=8e-2, atol=8.0, min_top1=0.65),
}


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
    if not stats.max_abs <= policy.atol:
        failures.append(f"max |difference| {stats.max_abs:.3g} > atol {policy.atol:g}")
    if not stats.top1 >= policy.min_top1:
        failures.append(f"top-1 agreement {stats.top1:.3g} < min_top1 {policy.min_top1:g}")
    return Verdict(not failures, tuple(failures))
