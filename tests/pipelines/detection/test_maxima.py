"""h-maxima solved on the object regions alone are exactly skimage's on maps that are zero
between objects: blobs of two peaks, a ring round a hole, faint blobs under h, blobs on the
image edge."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import h_maxima

from pipelines.detection.maxima import sparse_h_maxima


def _sparse_map(seed: int) -> np.ndarray:
    """Bumpy blobs of varied height on a zero background, some cut by the image edge."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:96, 0:128]
    values = np.zeros((96, 128))
    for _ in range(14):
        cy, cx = rng.uniform(-4, 100), rng.uniform(-4, 132)
        radius, height = rng.uniform(3, 11), rng.uniform(0.05, 1.0)
        values = np.maximum(
            values, height * np.clip(1 - np.hypot(rows - cy, cols - cx) / radius, 0, 1)
        )
    ring = (np.hypot(rows - 48, cols - 64) > 6) & (np.hypot(rows - 48, cols - 64) < 12)
    values[ring] = np.maximum(values[ring], 0.3 + 0.2 * np.sin(cols[ring] / 3.0))
    values += 0.02 * rng.random(values.shape) * (values > 0)
    return ndimage.gaussian_filter(values.astype(np.float32), 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("h", [0.01, 0.08, 0.3, 0.9])
def test_same_maxima_as_skimage(seed: int, h: float) -> None:
    values = _sparse_map(seed)
    expected = h_maxima(values, h).astype(bool)
    if h < 0.5:  # the comparison covers several maxima, not an empty mask
        assert ndimage.label(expected)[1] >= 3
    assert np.array_equal(sparse_h_maxima(values, h), expected)


def test_distance_transform_of_touching_disks() -> None:
    rows, cols = np.mgrid[0:60, 0:90]
    mask = (np.hypot(rows - 30, cols - 30) < 14) | (np.hypot(rows - 30, cols - 52) < 12)
    mask |= np.hypot(rows - 2, cols - 85) < 5  # cut by the image's corner
    distance = ndimage.distance_transform_edt(mask)
    for h in (0.5, 1.0, 3.0):
        assert np.array_equal(sparse_h_maxima(distance, h), h_maxima(distance, h).astype(bool))
    _, n_maxima = ndimage.label(sparse_h_maxima(distance, 1.0))
    assert n_maxima == 3


def test_empty_and_negative_maps() -> None:
    assert not sparse_h_maxima(np.zeros((8, 8), np.float32), 0.1).any()
    signed = _sparse_map(3) - 0.05  # no zero background: the whole-image path
    assert np.array_equal(sparse_h_maxima(signed, 0.2), h_maxima(signed, 0.2).astype(bool))
