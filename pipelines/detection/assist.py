"""Assisted outlining: click on an object, get its polygon (for the app's labelling page).

Local and instant, no model needed: in a window around the click the image is smoothed, cut at
half-way between the object's peak and the local background (the half-maximum edge, which keeps
blurred objects at their true size), and the blob under the click is split from touching
neighbours by a distance-transform watershed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipelines.formats.masks import mask_to_polygon

_MAX_WINDOW_PX = 512


def propose_outline(
    image: np.ndarray,
    x: float,
    y: float,
    *,
    window_px: int = 64,
    dark_objects: bool | None = None,
    smoothing_px: float = 1.0,
) -> np.ndarray | None:
    """Polygon ``(N, 2)`` of ``(x, y)`` image coordinates around the clicked object, or None.

    ``dark_objects`` None guesses the polarity from the click (darker than the window's median
    means a dark object). Returns None when the click is outside the image or on background.
    The window doubles (up to 512 px) while the object touches its border.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {image.shape}")
    height, width = image.shape
    col, row = round(x), round(y)
    if not (0 <= row < height and 0 <= col < width):
        return None
    size = max(16, int(window_px))
    while True:
        half = size // 2
        top, left = max(0, row - half), max(0, col - half)
        bottom, right = min(height, row + half + 1), min(width, col + half + 1)
        mask = _object_mask(
            image[top:bottom, left:right].astype(np.float32),
            row - top,
            col - left,
            dark_objects,
            smoothing_px,
        )
        if mask is None:
            return None
        touches = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        at_image_edge = top == 0 or left == 0 or bottom == height or right == width
        if not touches or size >= _MAX_WINDOW_PX or (at_image_edge and size >= max(height, width)):
            break
        size *= 2
    polygon = mask_to_polygon(mask)
    if polygon is None or len(polygon) < 3:
        return None
    polygon[:, 0] += left
    polygon[:, 1] += top
    return polygon


def _object_mask(
    window: np.ndarray, row: int, col: int, dark_objects: bool | None, smoothing_px: float
) -> np.ndarray | None:
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    smooth = ndimage.gaussian_filter(window, smoothing_px) if smoothing_px > 0 else window
    background = float(np.median(smooth))
    if dark_objects is None:
        dark_objects = smooth[row, col] < background
    if dark_objects:
        smooth = 2 * background - smooth
    # The object's peak: the brightest value within 2 px of the click.
    near = smooth[max(0, row - 2) : row + 3, max(0, col - 2) : col + 3]
    peak = float(near.max())
    noise = 1.4826 * float(np.median(np.abs(smooth - background)))
    if peak - background < 3 * max(noise, 1e-6):
        return None
    blob = smooth > (peak + background) / 2
    parts, _ = ndimage.label(blob)
    clicked = _part_under(parts, row, col)
    if clicked == 0:
        return None
    component = parts == clicked
    distance = ndimage.distance_transform_edt(component)
    markers, count = ndimage.label(h_maxima(distance, 1.0))
    if count > 1:
        split = watershed(-distance, markers, mask=component)
        piece = _part_under(split, row, col)
        if piece:
            component = split == piece
    return component


def _part_under(parts: np.ndarray, row: int, col: int) -> int:
    """Label under the click, or the nearest label within 2 px (a click just off the edge)."""
    if parts[row, col]:
        return int(parts[row, col])
    near = parts[max(0, row - 2) : row + 3, max(0, col - 2) : col + 3]
    values = near[near > 0]
    return int(np.bincount(values).argmax()) if values.size else 0
