"""Compare a candidate's logits with the reference's: full statistics first, a separate policy judges. Pure (numpy).

The statistics never depend on a tolerance, so a report can say both what happened and what tolerance
would have passed. The policy (``TolerancePolicy``) turns statistics into a verdict:

* ``rtol``: the largest relative L2 error allowed, ``||candidate - reference|| / ||reference||``;
* ``atol``: the largest absolute difference allowed in any single logit;
* ``min_top1``: the smallest fraction of rows whose top-1 class must agree;
* no NaN or Inf is ever allowed.

Relative L2 is the main criterion because it does not depend on the logit scale or on one near-zero
logit; ``atol`` catches a few logits that are far off while the rest hide them in the L2 norm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from rsz_export.errors import UsageError

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
TOP_K = 5


@dataclass(frozen=True)
class ParityStats:
    """How far a candidate's logits are from the reference's, over ``rows`` rows (images)."""

    rows: int
    max_abs: float
    mean_abs: float
    rel_l2: float
    cosine: float
    """The smallest per-row cosine similarity."""
    top1: float
    """Fraction of rows whose top-1 class agrees."""
    top5: float
    """Mean fraction of the reference's top-5 classes that are also in the candidate's top-5."""
    nonfinite: int
    """NaN/Inf values in the candidate (the reference is checked to have none)."""

    @property
    def needed_rtol(self) -> float:
        """The smallest ``rtol`` that would have passed."""
        return self.rel_l2

    @property
    def needed_atol(self) -> float:
        """The smallest ``atol`` that would have passed."""
        return self.max_abs

    def to_dict(self) -> dict:
        data = asdict(self)
        data["needed"] = {"rtol": self.needed_rtol, "atol": self.needed_atol, "min_top1": self.top1}
        return data


def _as_logits(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] < TOP_K:
        raise UsageError(f"{what} logits must be [rows, classes] with >= {TOP_K} classes, got shape {array.shape}")
    return array.astype(np.float64)


def _top_k(array: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-array, axis=1, kind="stable")[:, :k]


def compare(reference: np.ndarray, candidate: np.ndarray) -> ParityStats:
    """Statistics of ``candidate`` against ``reference`` (both [rows, classes] logits, same shape)."""
    ref = _as_logits(reference, "reference")
    cand = _as_logits(candidate, "candidate")
    if ref.shape != cand.shape:
        raise UsageError(f"candidate shape {cand.shape} differs from reference shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise UsageError("the reference logits contain NaN or Inf: the PyTorch reference itself is broken")
    nonfinite = int((~np.isfinite(cand)).sum())
    if nonfinite:
        return _nonfinite_stats(ref, cand, nonfinite)
    diff = np.abs(cand - ref)
    ref_norm = float(np.linalg.norm(ref))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosines = np.where(norms > 0, (ref * cand).sum(axis=1) / np.where(norms > 0, norms, 1.0), 0.0)
    ref_top, cand_top = _top_k(ref, TOP_K), _top_k(cand, TOP_K)
    overlap = [len(set(r) & set(c)) / TOP_K for r, c in zip(ref_top, cand_top, strict=True)]
    return ParityStats(
        rows=ref.shape[0],
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        rel_l2=float(np.linalg.norm(cand - ref)) / ref_norm if ref_norm > 0 else float(np.linalg.norm(cand)),
        cosine=float(cosines.min()),
        top1=float(np.mean(ref_top[:, 0] == cand_top[:, 0])),
        top5=float(np.mean(overlap)),
        nonfinite=0,
    )


def _nonfinite_stats(ref: np.ndarray, cand: np.ndarray, nonfinite: int) -> ParityStats:
    """Any NaN/Inf makes every error statistic infinite and every agreement zero: nothing can be trusted."""
    return ParityStats(ref.shape[0], math.inf, math.inf, math.inf, 0.0, 0.0, 0.0, nonfinite)


def combine(stats: list[ParityStats] | tuple[ParityStats, ...]) -> ParityStats:
    """The statistics of several comparisons taken together: worst errors, row-weighted agreement."""
    if not stats:
        raise UsageError("nothing to combine: at least one comparison is needed")
    rows = sum(s.rows for s in stats)

    def weighted(name: str) -> float:
        return sum(getattr(s, name) * s.rows for s in stats) / rows

    return ParityStats(
        rows=rows,
        max_abs=max(s.max_abs for s in stats),
        mean_abs=weighted("mean_abs"),
        rel_l2=max(s.rel_l2 for s in stats),
        cosine=min(s.cosine for s in stats),
        top1=weighted("top1"),
        top5=weighted("top5"),
        nonfinite=sum(s.nonfinite for s in stats),
    )


def _check_fraction(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UsageError(f"{name} must be a number from 0 to 1, got {value!r}")


def _check_tolerance(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise UsageError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class TolerancePolicy:
    """What counts as a pass: relative L2 <= rtol, every |difference| <= atol, top-1 agreement >= min_top1."""

    precision: str
    rtol: float
    atol: float
    min_top1: float

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        _check_tolerance(self.rtol, "--rtol")
        _check_tolerance(self.atol, "--atol")
        _check_fraction(self.min_top1, "--min-top1")

    @classmethod
    def preset(cls, precision: str) -> TolerancePolicy:
        """The preset for a precision (see PRESETS and docs/validate.md for the measurements behind them)."""
        if precision not in PRESETS:
            raise UsageError(f"no tolerance preset for precision {precision!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[precision]

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


# Measured on this project's 2-core CPU machine with the seeded calibrated weights, the 4 bundled photographs
# and 2 random inputs at 224x224..288x288 (docs/validate.md has the table and how to re-measure):
#   ONNX Runtime fp32 vs PyTorch fp32: relative L2 <= 2e-6, max |diff| <= 3e-4 logits;
#   ONNX Runtime fp16 (onnxconverter-common) vs fp32: relative L2 ~2e-3, max |diff| ~0.16;
#   PyTorch fp16 on CPU: relative L2 ~3e-3, max |diff| ~0.29;  PyTorch bf16 on CPU: ~2.2e-2 and ~1.8.
# fp32 allows ~50x (rtol) and ~15x (atol) what fp32 reaches: summation order differs, nothing else should.
# fp16 allows ~3-5x its measurements. TF32 rounds matmul/conv inputs to the same 10-bit mantissa as fp16
# but keeps fp32 range, accumulation and storage, so fp16's bounds hold for it too. bf16 has a 7-bit
# mantissa: 8x fp16's rounding error, hence 8x fp16's bounds (3.5-4x its own measurement). Top-1 may
# flip on an input whose two best classes are nearly tied, which reduced precision makes likelier: with the
# default 6 inputs per case, fp16/tf32 allow one flip per case and bf16 two; fp32 allows none.
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
