"""h-maxima of maps that are zero between objects, solved on the object regions alone."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def sparse_h_maxima(values: np.ndarray, h: float) -> np.ndarray:
    """Boolean mask of the maxima of height >= ``h``: skimage's ``h_maxima``, made fast.

    skimage sorts every pixel of the image (two argsorts), so on a 2048² map where objects
    cover a few percent it spent 1-1.5 s on the empty background, and 7 s on a dense 4096²
    one. Where ``values`` is >= 0 and exactly zero between objects (a distance transform,
    or a map smoothed after zeroing its background), a path from one object region to
    another passes through a zero, so regions cannot raise each other's reconstruction
    above zero. The 8-connected regions of non-zero pixels are therefore cut out, packed
    into one mosaic with zeros between them and solved there in one call (one call per
    region costs more in call overhead than it saves on 10 000 objects): the same maxima.
    Where the regions' boxes would cover half the image or more, the image is solved whole.
    NaN pixels count as background here (skimage does not handle them either).
    """
    from skimage.morphology import h_maxima

    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"h-maxima need a height above 0, got {h}")
    values = np.asarray(values)
    maxima = np.zeros(values.shape, dtype=bool)
    if values.size == 0:
        return maxima
    if values.ndim != 2 or values.min() < 0:
        return h_maxima(values, h).astype(bool)
    regions, count = ndimage.label(values > 0, structure=_EIGHT_CONNECTED)
    if count == 0:
        return maxima
    boxes = ndimage.find_objects(regions)
    sizes = [(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes]
    area = sum((height + 1) * (width + 1) for height, width in sizes)
    if 2 * area > values.size:
        # Objects fill much of the image (a small crop, a dense field): no background to skip.
        return h_maxima(values, h).astype(bool)
    width = max(math.isqrt(area), max(width for _, width in sizes) + 1)  # about square
    corners, mosaic_shape = shelf_pack(sizes, width)
    owns = [regions[box] == index for index, box in enumerate(boxes, start=1)]
    places = [
        (slice(row, row + own.shape[0]), slice(col, col + own.shape[1]))
        for own, (row, col) in zip(owns, corners, strict=True)
    ]
    mosaic = np.zeros(mosaic_shape, dtype=values.dtype)
    for box, own, place in zip(boxes, owns, places, strict=True):
        mosaic[place][own] = values[box][own]
    solved = h_maxima(mosaic, h).astype(bool)
    for box, own, place in zip(boxes, owns, places, strict=True):
        maxima[box] |= solved[place] & own
    return maxima


def shelf_pack(
    sizes: list[tuple[int, int]], width: int
) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Top-left corners for boxes of ``sizes`` in rows of a mosaic ``width + 1`` wide (tallest
    first, so rows waste little), and the mosaic's shape.

    Every box gets a zero row above and a zero column left of it, and the mosaic a zero row
    and column at its far edges, so no two boxes touch, diagonally either.
    """
    corners: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    top = left = shelf = 0
    for index in sorted(range(len(sizes)), key=lambda i: -sizes[i][0]):
        height, box_width = sizes[index][0] + 1, sizes[index][1] + 1
        if left + box_width > width:
            top, left, shelf = top + shelf, 0, 0
        corners[index] = (top + 1, left + 1)
        left += box_width
        shelf = max(shelf, height)
    return corners, (top + shelf + 1, width + 1)
