"""The one comparison of logits: a candidate against a reference, as full statistics. Pure (numpy).

Used by export verification, the reduced-precision check, validate, and accuracy sweeps (``top_k``). The
statistics never depend on a tolerance, so a report can say both what happened and what tolerance would
have passed; ``policy`` judges them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from rsz_export.errors import UsageError

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
    """Mean fraction of the reference's top-5 classes that are also in the candidate's top-5 (top-C for a model
    with C < 5 classes)."""
    nonfinite: int
    """NaN/Inf values in the candidate (the reference is checked to have none)."""
    decisive_flips: int = 0
    """Rows whose top-1 class differs although the reference's margin between its two best classes exceeds
    twice the row's largest logit error outside the two classes concerned (the reference's and the candidate's
    top-1): errors the size of those elsewhere in the row could not have flipped it, so the error is
    concentrated on those classes (a wrong weight or bias, not rounding). With fewer than three classes the
    whole row's largest error is used, and then no flip counts (a flip needs an error of half the margin)."""
    top1_in_top5: float = 1.0
    """Fraction of rows whose reference top-1 class is among the candidate's top-5 (top-5 containment)."""

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
    if array.ndim != 2 or array.shape[1] < 1 or array.shape[0] < 1:
        raise UsageError(f"{what} logits must be [rows, classes] with at least one of each, got shape {array.shape}")
    return array.astype(np.float64)


SORT_UP_TO = 4096
"""Rows up to this long are ranked by a full sort; longer rows (a backbone's feature map compared whole: tens of
millions of values at detector sizes, where three sorts per map took most of validate's time) by a partition."""


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k largest logits of each row, largest first (ties: lower index): [rows, k]."""
    array = np.asarray(logits)
    array = array if array.ndim == 2 else array.reshape(1, -1)
    if array.shape[1] <= SORT_UP_TO:
        return np.argsort(-array, axis=1, kind="stable")[:, :k]
    return np.stack([_row_top_k(row, k) for row in array])


def _row_top_k(row: np.ndarray, k: int) -> np.ndarray:
    """What the stable sort gives for one long row, in linear time: every value at or above the k-th largest
    (found by a partition), then those few sorted stably."""
    k = min(k, row.size)
    kth = np.partition(row, row.size - k)[row.size - k]
    if not np.isfinite(kth):  # NaN sorts apart: keep the sort's own order
        return np.argsort(-row, kind="stable")[:k]
    candidates = np.flatnonzero(row >= kth)  # ascending indices: ties keep the lower index first
    return candidates[np.argsort(-row[candidates], kind="stable")[:k]]


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
        return _nonfinite_stats(ref, nonfinite)
    diff = cand - ref
    error_norm = float(np.linalg.norm(diff))
    diff = np.abs(diff, out=diff)  # in place: a map compared whole is hundreds of MB in float64
    ref_norm = float(np.linalg.norm(ref))
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosines = np.where(norms > 0, (ref * cand).sum(axis=1) / np.where(norms > 0, norms, 1.0), 0.0)
    k = min(TOP_K, ref.shape[1])
    ref_top, cand_top = top_k(ref, k), top_k(cand, k)
    overlap = [len(set(r) & set(c)) / k for r, c in zip(ref_top, cand_top, strict=True)]
    flipped = ref_top[:, 0] != cand_top[:, 0]
    rows = np.arange(ref.shape[0])
    margin = (ref[rows, ref_top[:, 0]] - ref[rows, ref_top[:, 1]] if k > 1  # the two largest values
              else np.full(ref.shape[0], np.inf))
    return ParityStats(
        rows=ref.shape[0],
        max_abs=float(diff.max()),
        mean_abs=float(diff.mean()),
        rel_l2=error_norm / ref_norm if ref_norm > 0 else float(np.linalg.norm(cand)),
        cosine=float(cosines.min()),
        top1=float(np.mean(ref_top[:, 0] == cand_top[:, 0])),
        top5=float(np.mean(overlap)),
        nonfinite=0,
        decisive_flips=int((flipped & (margin > 2 * _error_elsewhere(diff, ref_top[:, 0], cand_top[:, 0]))).sum()),
        top1_in_top5=float(np.mean([r[0] in c for r, c in zip(ref_top, cand_top, strict=True)])),
    )


def _error_elsewhere(diff: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Each row's largest error outside its classes ``first`` and ``second`` (the whole row's when it has fewer
    than three classes)."""
    if diff.shape[1] < 3:
        return diff.max(axis=1)
    rows = np.arange(diff.shape[0])
    others = diff.copy()
    others[rows, first] = 0.0
    others[rows, second] = 0.0
    return others.max(axis=1)


def _nonfinite_stats(ref: np.ndarray, nonfinite: int) -> ParityStats:
    """Any NaN/Inf makes every error statistic infinite and every agreement zero: nothing can be trusted."""
    return ParityStats(ref.shape[0], math.inf, math.inf, math.inf, 0.0, 0.0, 0.0, nonfinite, ref.shape[0], 0.0)


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
        decisive_flips=sum(s.decisive_flips for s in stats),
        top1_in_top5=weighted("top1_in_top5"),
    )
