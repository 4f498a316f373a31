"""validate.reference: the named inputs every stage runs at a size."""

from __future__ import annotations

import numpy as np

from rsz_export.images.loading import load_photos, sample_images
from rsz_export.shapes import Resolution
from rsz_export.validate.reference import named_inputs


def test_named_inputs_single_and_batched():
    photos, skipped = load_photos()
    assert [n for n, _ in photos] == [p.name for p in sample_images()] and skipped == []
    size = Resolution(33, 47)
    singles = named_inputs(photos[:2], [7], size)
    assert [n for n, _ in singles] == [photos[0][0], photos[1][0], "random7"]
    assert all(x.shape == (1, 3, 33, 47) for _, x in singles)
    [(name, stack)] = named_inputs(photos[:2], [7], size, batch=5)
    assert name == "mixed-batch5" and stack.shape == (5, 3, 33, 47)
    np.testing.assert_array_equal(stack[3], singles[0][1][0])  # cycles: photo0, photo1, random7, photo0, ...


def test_a_feature_build_checks_each_size_on_one_input_in_turn():
    """A backbone's default: one input per size, successive sizes taking successive inputs (every photograph and
    random input checked at some size); a stacked batch takes as many different inputs as it has rows; int8's
    image-only cases take the photographs in turn; logits keep every input at every size."""
    from rsz_export.validate.cases import FEATURE_INPUTS_PER_SIZE, ValidateSpec
    from rsz_export.validate.reference import load_inputs

    sizes = [Resolution(64 + 8 * k, 72 + 8 * k) for k in range(7)]
    inputs, _ = load_inputs(ValidateSpec(), lambda x: x, "fpn", sizes + sizes[:2])  # repeated sizes keep their turn
    assert FEATURE_INPUTS_PER_SIZE == 1 and inputs.per_size == 1
    pool = inputs.names  # the four bundled photographs, random0, random1
    picked = [[n for n, _ in named_inputs(*inputs.sources(s), s)] for s in sizes]
    assert picked == [[pool[k % 6]] for k in range(7)] and {n for [n] in picked} == set(pool)
    photos, seeds = inputs.sources(sizes[4], batch=2)  # turn 4: random0, then random1
    assert photos == [] and seeds == [0, 1]
    assert [n for n, _ in inputs.sources(sizes[4], images_only=True)[0]] == [pool[0]]  # photographs only, in turn

    everything, _ = load_inputs(ValidateSpec(), lambda x: x, "logits", sizes)
    assert everything.per_size is None and [len(part) for part in everything.sources(sizes[3])] == [4, 2]
    two, _ = load_inputs(ValidateSpec(inputs_per_size=2), lambda x: x, "features", sizes)
    assert [n for n, _ in named_inputs(*two.sources(sizes[1]), sizes[1])] == pool[2:4]
    all_of_them, _ = load_inputs(ValidateSpec(inputs_per_size=99), lambda x: x, "fpn", sizes)
    assert [len(part) for part in all_of_them.sources(sizes[0])] == [4, 2]
