"""h-maxima solved on the object regions alone are exactly skimage's on maps that are zero
between objects: blobs of two peaks, a ring round a hole, faint blobs under h, blobs on the
image edge."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import h_maxima

from pipelines.detection import maxima
from pipelines.detection.maxima import shelf_pack, sparse_h_maxima


def _sparse_map(seed: int, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Bumpy blobs of varied height on a zero background, some cut by the image edge, and a
    ring; on a larger ``shape`` the same blobs leave most of the image empty."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    values = np.zeros(shape)
    for _ in range(14):
        cy, cx = rng.uniform(-4, shape[0] + 4), rng.uniform(-4, shape[1] + 4)
        radius, height = rng.uniform(3, 11), rng.uniform(0.05, 1.0)
        values = np.maximum(
            values, height * np.clip(1 - np.hypot(rows - cy, cols - cx) / radius, 0, 1)
        )
    ring = (np.hypot(rows - 48, cols - 64) > 6) & (np.hypot(rows - 48, cols - 64) < 12)
    values[ring] = np.maximum(values[ring], 0.3 + 0.2 * np.sin(cols[ring] / 3.0))
    values += 0.02 * rng.random(values.shape) * (values > 0)
    return ndimage.gaussian_filter(values.astype(np.float32), 0.5)


@pytest.mark.parametrize(
    ("shape", "seed", "packed"),
    [((96, 128), 0, True), ((96, 128), 2, False), ((300, 360), 1, True), ((300, 360), 2, True)],
)
@pytest.mark.parametrize("h", [0.01, 0.08, 0.3, 0.9])
def test_same_maxima_as_skimage(
    shape: tuple[int, int], seed: int, packed: bool, h: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths: the mosaic, and the whole image where the object boxes fill half of it."""
    calls = []
    monkeypatch.setattr(maxima, "shelf_pack", lambda *a: calls.append(a) or shelf_pack(*a))
    values = _sparse_map(seed, shape)
    expected = h_maxima(values, h).astype(bool)
    if h < 0.5:  # the comparison covers several maxima, not an empty mask
        assert ndimage.label(expected)[1] >= 3
    assert np.array_equal(sparse_h_maxima(values, h), expected)
    assert bool(calls) == packed


def test_distance_transform_of_touching_disks() -> None:
    rows, cols = np.mgrid[0:60, 0:90]
    mask = (np.hypot(rows - 30, cols - 30) < 14) | (np.hypot(rows - 30, cols - 52) < 12)
    mask |= np.hypot(rows - 2, cols - 85) < 5  # cut by the image's corner
    distance = ndimage.distance_transform_edt(mask)
    for h in (0.5, 1.0, 3.0):
        assert np.array_equal(sparse_h_maxima(distance, h), h_maxima(distance, h).astype(bool))
    _, n_maxima = ndimage.label(sparse_h_maxima(distance, 1.0))
    assert n_maxima == 3


def test_empty_and_negative_maps_and_bad_heights() -> None:
    assert not sparse_h_maxima(np.zeros((8, 8), np.float32), 0.1).any()
    for h in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="height above 0"):
            sparse_h_maxima(np.ones((8, 8)), h)
    signed = _sparse_map(3) - 0.05  # no zero background: the whole-image path
    assert np.array_equal(sparse_h_maxima(signed, 0.2), h_maxima(signed, 0.2).astype(bool))


def test_mosaic_boxes_never_touch() -> None:
    sizes = [(5, 9), (12, 3), (1, 1), (7, 7), (12, 20), (2, 30), (4, 4)]
    corners, (height, width) = shelf_pack(sizes, 31)
    taken = np.zeros((height, width), dtype=int)
    for (rows, cols), (top, left) in zip(sizes, corners, strict=True):
        assert top >= 1 and left >= 1 and top + rows < height and left + cols < width
        grown = taken[top - 1 : top + rows + 1, left - 1 : left + cols + 1]
        assert not grown.any()  # not even diagonally next to an earlier box
        taken[top : top + rows, left : left + cols] = 1
