"""h-maxima of maps that are zero between objects, solved one object region at a time."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def sparse_h_maxima(values: np.ndarray, h: float) -> np.ndarray:
    """Boolean mask of the maxima of height >= ``h``: skimage's ``h_maxima``, made fast.

    skimage sorts every pixel of the image (two argsorts), so on a 2048² map where objects
    cover a few percent it spent 1-1.5 s on the empty background, 3 s on a GPU run's
    2048² image, 13 s on a 4096² one. Where ``values`` is >= 0 and exactly zero between
    objects (a distance transform, or a map smoothed after zeroing its background), a path
    from one object region to another passes through a zero, so regions cannot raise each
    other's reconstruction above zero. Each 8-connected region of non-zero pixels is then
    solved alone inside a one-pixel zero frame, which gives the same maxima.
    """
    from skimage.morphology import h_maxima

    values = np.asarray(values)
    maxima = np.zeros(values.shape, dtype=bool)
    if values.size == 0 or values.ndim != 2 or values.min() < 0:
        return h_maxima(values, h).astype(bool) if values.size else maxima
    regions, _ = ndimage.label(values > 0, structure=_EIGHT_CONNECTED)
    for index, box in enumerate(ndimage.find_objects(regions), start=1):
        if box is None:
            continue
        own = regions[box] == index
        local = np.pad(np.where(own, values[box], 0), 1)
        maxima[box] |= h_maxima(local, h)[1:-1, 1:-1].astype(bool) & own
    return maxima
