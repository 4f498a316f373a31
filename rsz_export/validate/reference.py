"""The reference side of validation: the inputs (photographs and seeded noise) and PyTorch's outputs for them
(logits, or a backbone's feature maps), computed once per (size, batch) and shared by every stage and engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rsz_export.artifacts.manifest import WeightsRecord
from rsz_export.images.loading import load_photos
from rsz_export.images.preprocess import random_input, to_input
from rsz_export.shapes import Resolution

STACK_PIXELS = 6 * 512 * 512
"""Most pixels stacked into one reference or export-check batch (about 2 GB of activations in eager PyTorch)."""


def named_inputs(photos: list[tuple[str, object]], seeds: list[int], size: Resolution,
                 batch: int = 1) -> list[tuple[str, np.ndarray]]:
    """Every source at ``size``: one [1,3,h,w] array per photo and seed, or for ``batch`` > 1 a single
    [batch,3,h,w] stack that cycles through them (named ``mixed-batchN``)."""
    singles = [(name, to_input(img, size)) for name, img in photos]
    singles += [(f"random{s}", random_input(size, s)) for s in seeds]
    if batch == 1 or not singles:
        return singles
    stack = np.concatenate([singles[k % len(singles)][1] for k in range(batch)])
    return [(f"mixed-batch{batch}", stack)]


@dataclass
class Inputs:
    """Named input sources (photographs and seeded noise) and the reference outputs computed so far.

    ``per_size``: how many sources each size runs (None: every one), taken in turn along ``turns`` (each size's
    place in the grid), so successive sizes take successive sources and every source is run at some size."""

    images: list[tuple[str, object]]
    random_seeds: list[int]
    reference_model: object
    per_size: int | None = None
    turns: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.images] + [f"random{s}" for s in self.random_seeds]

    def sources(self, size: Resolution, batch: int = 1,
                images_only: bool = False) -> tuple[list[tuple[str, object]], list[int]]:
        """(photographs, seeds) that ``size`` runs: all of them, or ``per_size`` in turn (``batch`` of them for a
        stacked batch, so its rows differ where there are that many)."""
        pool = [(True, p) for p in self.images] + ([] if images_only else [(False, s) for s in self.random_seeds])
        if self.per_size is not None and pool:
            start = self.turns.get(size, 0) * self.per_size
            pool = [pool[(start + k) % len(pool)] for k in range(min(len(pool), max(self.per_size, batch)))]
        return [p for photo, p in pool if photo], [s for photo, s in pool if not photo]

    def reference(self, size: Resolution, batch: int,
                  images_only: bool = False) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, input, reference output) at ``size``; PyTorch runs once per size and batch, inputs stacked.
        ``images_only``: without the seeded noise inputs (for batch 1 and every input per size, the same entries
        as with them)."""
        if images_only and batch == 1 and self.per_size is None:
            photos = {name for name, _ in self.images}
            return [entry for entry in self.reference(size, batch) if entry[0] in photos]
        key = (size, batch, images_only)
        if key not in self._cache:
            feeds = named_inputs(*self.sources(size, batch, images_only), size, batch)
            logits = stacked_forward(self.reference_model, [x for _, x in feeds])
            self._cache[key] = [(n, x, y) for (n, x), y in zip(feeds, logits, strict=True)]
        return self._cache[key]


def chunks(arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Group inputs so each stack holds at most STACK_PIXELS pixels (bounds memory at large sizes)."""
    groups: list[list[np.ndarray]] = [[]]
    for x in arrays:
        if groups[-1] and sum(a.shape[0] * a.shape[2] * a.shape[3] for a in groups[-1] + [x]) > STACK_PIXELS:
            groups.append([])
        groups[-1].append(x)
    return [g for g in groups if g]


def stacked_forward(model, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The PyTorch reference on each input, run as a few stacked batches in channels-last layout.

    Why: eager PyTorch on a CPU is several times faster on one stacked channels-last batch than on single
    images; rows do not interact in eval mode.
    """
    import torch

    outputs = []
    with torch.inference_mode():
        for group in chunks(arrays):
            x = torch.from_numpy(np.concatenate(group)).contiguous(memory_format=torch.channels_last)
            out = model(x)
            outputs += split_rows([o.float().contiguous().numpy() for o in out] if isinstance(out, tuple)
                                  else out.float().numpy(), group)
    return outputs


def split_rows(stacked, group: list[np.ndarray]) -> list:
    """The outputs of a stacked batch, split back into one entry per input of ``group``: an array for a model
    with one output, a list of arrays (one per output) for a model with several (a backbone's feature maps)."""
    cuts = np.cumsum([a.shape[0] for a in group])[:-1]
    if not isinstance(stacked, list):
        return np.split(stacked, cuts)
    return [list(maps) for maps in zip(*(np.split(o, cuts) for o in stacked), strict=True)]


def load_inputs(spec, reference_model, outputs: str = "logits",
                sizes: Sequence[Resolution] = ()) -> tuple[Inputs, list[tuple[str, str]]]:
    """The bundled photographs (or --images DIR) plus seeded random inputs, and the files skipped. ``sizes``: the
    sizes to check, in order, which take the inputs in turn when each size runs only some of them."""
    photos, skipped = load_photos(spec.images_dir)
    seeds = [spec.seed + k for k in range(spec.random_inputs)]
    turns = {size: k for k, size in enumerate(dict.fromkeys(sizes))}
    inputs = Inputs(photos, seeds, reference_model, spec.per_size(outputs), turns)
    return inputs, [(str(s.path), s.reason) for s in skipped]


_SEEDED_REFERENCES: dict = {}


def reference_model(record: WeightsRecord, directory: Path, outputs: str = "logits"):
    """The PyTorch reference for a manifest's weights, in channels-last layout (faster on CPUs).

    Seeded random weights take ~10 s to regenerate (a float64 calibration pass), so within one process
    they are kept per WeightsRecord (seed and sha256 included): regenerating them gives the same bytes.
    Weights from files are re-read and re-verified every time.
    """
    import torch

    from rsz_export.model.weights import reference_from_record

    if record.id == "random" and (record, outputs) in _SEEDED_REFERENCES:
        return _SEEDED_REFERENCES[record, outputs]
    model = reference_from_record(record, directory, outputs).to(memory_format=torch.channels_last)
    if record.id == "random":
        _SEEDED_REFERENCES.clear()
        _SEEDED_REFERENCES[record, outputs] = model
    return model
