"""Output drawing helpers checked against the scikit-image functions they replace."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from pipelines.detection.outputs import inner_edges


def test_inner_edges_are_find_boundaries_inner() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(64, 48)).astype(np.int32)
    labels[10:30, 10:30] = 7  # a block with an interior
    labels[0, :] = 5  # on the border
    expected = find_boundaries(labels, mode="inner", background=0)
    assert np.array_equal(inner_edges(labels), expected)
    assert not inner_edges(np.zeros((8, 8), dtype=np.int32)).any()
