"""Shapes ⇄ instance masks: the one place where LabelMe ``(x, y)`` becomes ``(row, col)``.

Data contract for instance masks (as torchvision's Mask R-CNN docstring states its own):
``labels``: ``(H, W) int32``, 0 = background, ``k`` = instance ``k``; ``class_ids``:
``(n_instances,) int32``, ``class_ids[k - 1]`` = 1-based index into ``class_names``.
Pixel centres sit at integer coordinates; a pixel belongs to a polygon when its centre does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import draw, measure

from pipelines.errors import InvalidLabels
from pipelines.formats.labelme import AREA_SHAPE_TYPES, Shape

POINT_RADIUS_PX = 1.0  # a point label (e.g. a single atom) rasterises as a 3x3 plus


@dataclass(eq=False)
class InstanceMasks:
    """Instance label image with one class per instance (see the module contract)."""

    labels: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]

    @property
    def count(self) -> int:
        return int(self.class_ids.size)

    def class_of(self, instance: int) -> str:
        return self.class_names[int(self.class_ids[instance - 1]) - 1]


def shape_pixels(shape: Shape, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pixels a shape covers (clipped to the image)."""
    points = shape.points
    if shape.shape_type == "polygon":
        return draw.polygon(points[:, 1], points[:, 0], shape=(height, width))
    if shape.shape_type == "rectangle":
        (x0, y0), (x1, y1) = points[0], points[1]
        xs, ys = sorted((x0, x1)), sorted((y0, y1))
        corners = np.array([[xs[0], ys[0]], [xs[1], ys[0]], [xs[1], ys[1]], [xs[0], ys[1]]])
        return draw.polygon(corners[:, 1], corners[:, 0], shape=(height, width))
    if shape.shape_type == "circle":
        (cx, cy), (px, py) = points[0], points[1]
        radius = math.hypot(px - cx, py - cy)
        return draw.disk((cy, cx), radius, shape=(height, width))
    if shape.shape_type in ("point", "points"):
        cx, cy = points[0]
        return draw.disk((cy, cx), POINT_RADIUS_PX + 0.5, shape=(height, width))
    return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)


def shape_to_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """``(H, W) bool`` mask of one shape."""
    mask = np.zeros((height, width), dtype=bool)
    rows, cols = shape_pixels(shape, height, width)
    mask[rows, cols] = True
    return mask


def group_objects(shapes: Sequence[Shape]) -> list[list[Shape]]:
    """Shapes sharing ``(label, group_id)`` (group_id set) form one object, as in labelme."""
    objects: list[list[Shape]] = []
    grouped: dict[tuple[str, int], list[Shape]] = {}
    for shape in shapes:
        if shape.group_id is None:
            objects.append([shape])
            continue
        key = (shape.label, shape.group_id)
        if key not in grouped:
            grouped[key] = []
            objects.append(grouped[key])
        grouped[key].append(shape)
    return objects


def shapes_to_instances(
    shapes: Sequence[Shape],
    height: int,
    width: int,
    class_names: Sequence[str] | None = None,
    include_points: bool = True,
) -> InstanceMasks:
    """Rasterise object shapes (crops excluded) into an :class:`InstanceMasks`.

    Later shapes overwrite earlier ones where they overlap, as labelme's own ``shapes_to_label``
    does. ``class_names`` fixes the class order (an unknown label is an error); by default the
    sorted labels present are used.
    """
    kinds = (*AREA_SHAPE_TYPES, "point", "points") if include_points else AREA_SHAPE_TYPES
    objects = [
        group
        for group in group_objects([s for s in shapes if not s.is_crop])
        if group[0].shape_type in kinds
    ]
    names = list(class_names) if class_names is not None else sorted({g[0].label for g in objects})
    index = {name: i + 1 for i, name in enumerate(names)}
    labels = np.zeros((height, width), dtype=np.int32)
    class_ids = np.zeros(len(objects), dtype=np.int32)
    for instance, group in enumerate(objects, start=1):
        label = group[0].label
        if label not in index:
            raise InvalidLabels(
                f"label '{label}' is not one of the model's classes ({', '.join(names)})"
            )
        class_ids[instance - 1] = index[label]
        for shape in group:
            rows, cols = shape_pixels(shape, height, width)
            labels[rows, cols] = instance
    return InstanceMasks(labels=labels, class_ids=class_ids, class_names=names)


# Douglas–Peucker tolerances tried in turn until an outline stays faithful to its mask.
SIMPLIFY_STEPS = (1.0, 0.5, 0.25)
MIN_SIMPLIFY_TOLERANCE_PX = 0.05


def _pixel_edge_ring(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(N, 2)`` ``(row, col)`` outline along the pixel edges of the largest connected part,
    and that part's mask.

    Traced on a 2× nearest-neighbour upsampling, so the polygon's area matches the pixel count
    instead of shrinking small objects as a contour through pixel centres would. The part is
    found with a labelling only when the outline has more than one contour (several parts or
    a hole), which predicted objects rarely have.
    """
    height, width = mask.shape
    padded = np.zeros((2 * height + 2, 2 * width + 2), dtype=np.float32)
    padded[1:-1, 1:-1] = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)
    contours = measure.find_contours(padded, 0.5)
    if not contours:
        return None
    if len(contours) > 1:
        parts, count = ndimage.label(mask)
        if count > 1:
            largest = int(np.argmax(np.bincount(parts.ravel())[1:])) + 1
            return _pixel_edge_ring(parts == largest)
    # The outer edge encloses the most area (a hole's edge can be the longer one).
    ring = contours[0] if len(contours) == 1 else max(contours, key=polygon_area_px)
    # padded index u -> pixel coordinate (u - 1) / 2 - 0.25
    return (ring - 1.0) / 2.0 - 0.25, mask


def _faithful(ring: np.ndarray, mask: np.ndarray, pixels: int) -> bool:
    """An outline rasterises back to exactly the ``pixels`` pixels of ``mask``."""
    rows, cols = draw.polygon(ring[:, 0], ring[:, 1], shape=mask.shape)
    return rows.size == pixels and bool(mask[rows, cols].all())


def _simplify_rings(
    rings: list[np.ndarray], masks: list[np.ndarray], tolerance_px: float
) -> list[np.ndarray]:
    """Douglas–Peucker (GEOS) on every ring at once, with the largest tolerance up to
    ``tolerance_px`` that keeps each outline valid, of the same area (within 2 %, at least
    half a pixel) and rasterising back to exactly its mask; rings that no tolerance keeps
    faithful, and rings under 8 points, stay as traced.

    One vectorised GEOS call per tolerance instead of one per object: tracing and simplifying
    10 000 outlines went from 3.0 s to 1.1 s on the 2-core benchmark CPU.
    """
    import shapely

    result = list(rings)
    pixel_counts = [int(mask.sum()) for mask in masks]
    pending = np.array([i for i, ring in enumerate(rings) if len(ring) >= 8], dtype=np.int64)
    for step in SIMPLIFY_STEPS:
        tolerance = tolerance_px * step
        if pending.size == 0 or tolerance <= MIN_SIMPLIFY_TOLERANCE_PX:
            break
        lengths = np.array([len(rings[i]) for i in pending])
        polygons = shapely.polygons(
            shapely.linearrings(
                np.concatenate([rings[i] for i in pending]),
                indices=np.repeat(np.arange(pending.size), lengths),
            )
        )
        simplified = shapely.simplify(polygons, tolerance, preserve_topology=False)
        coordinates, owner = shapely.get_coordinates(
            shapely.get_exterior_ring(simplified), return_index=True
        )
        counts = np.bincount(owner, minlength=pending.size)
        candidates = np.split(coordinates, np.cumsum(counts)[:-1])
        areas = shapely.area(simplified)
        valid = shapely.is_valid(simplified)
        left = []
        for k, index in enumerate(pending):
            pixels = pixel_counts[index]
            if (
                counts[k] >= 4
                and valid[k]
                and abs(areas[k] - pixels) <= max(0.5, 0.02 * pixels)
                and _faithful(candidates[k], masks[index], pixels)
            ):
                result[index] = candidates[k]
            else:
                left.append(index)
        pending = np.array(left, dtype=np.int64)
    return result


def _closed_to_xy(ring: np.ndarray, top: int, left: int) -> np.ndarray:
    """``(row, col)`` ring in window coordinates -> open ``(x, y)`` polygon in the image."""
    if len(ring) > 1 and np.allclose(ring[0], ring[-1]):
        ring = ring[:-1]
    points = ring[:, ::-1] + np.array([left, top], dtype=np.float64)
    return np.ascontiguousarray(points)


def mask_to_polygon(mask: np.ndarray, tolerance_px: float = 0.5) -> np.ndarray | None:
    """Outline of the largest connected part of a boolean mask as ``(N, 2)`` ``(x, y)``.

    The contour follows pixel edges, so the polygon's area matches the pixel count;
    simplification is kept only where the outline still covers exactly the same pixels.
    Returns ``None`` for an empty mask.
    """
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    top, left = int(rows.min()), int(cols.min())
    crop = mask[top : rows.max() + 1, left : cols.max() + 1].astype(bool, copy=False)
    traced = _pixel_edge_ring(crop)
    if traced is None:
        return None
    (ring,) = _simplify_rings([traced[0]], [traced[1]], tolerance_px)
    return _closed_to_xy(ring, top, left)


def instances_to_shapes(
    labels: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    tolerance_px: float = 0.5,
    scores: Sequence[float] | None = None,
) -> list[Shape]:
    """Polygons for every instance of a label image (instance ``k`` has class ``class_ids[k-1]``).

    Instance ids need not be contiguous: ids with no pixels are skipped. ``scores`` (one per
    instance) are written into each shape's description so users see the confidence in
    labelme. Outlines are as :func:`mask_to_polygon` draws them, simplified all together.
    """
    kept: list[int] = []
    rings: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    corners: list[tuple[int, int]] = []
    for index, slices in enumerate(ndimage.find_objects(labels)):
        if slices is None or index >= len(class_ids):
            continue
        region = labels[slices] == index + 1
        traced = _pixel_edge_ring(region)
        if traced is None:
            continue
        kept.append(index)
        rings.append(traced[0])
        masks.append(traced[1])
        corners.append((slices[0].start, slices[1].start))
    rings = _simplify_rings(rings, masks, tolerance_px)
    shapes: list[Shape] = []
    for index, ring, (top, left) in zip(kept, rings, corners, strict=True):
        polygon = _closed_to_xy(ring, top, left)
        if len(polygon) < 3:
            continue
        description = f"score={scores[index]:.3f}" if scores is not None else ""
        shapes.append(
            Shape(
                label=class_names[int(class_ids[index]) - 1],
                points=polygon,
                shape_type="polygon",
                description=description,
            )
        )
    return shapes


def polygon_area_px(points: np.ndarray) -> float:
    """Shoelace area of a polygon given as ``(N, 2)`` vertices (0 below 3 vertices)."""
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    cross = np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:]) + x[-1] * y[0] - y[-1] * x[0]
    return float(0.5 * abs(cross))
