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
