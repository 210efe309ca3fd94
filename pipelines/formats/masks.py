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


def _ring_is_faithful(ring: np.ndarray, mask: np.ndarray) -> bool:
    """A simplified outline must keep the area and rasterise back to exactly the same pixels."""
    area = polygon_area_px(ring[:, ::-1])
    count = int(mask.sum())
    if abs(area - count) > max(0.5, 0.02 * count):
        return False
    rows, cols = draw.polygon(ring[:, 0], ring[:, 1], shape=mask.shape)
    if rows.size != count:
        return False
    return bool(mask[rows, cols].all())


def _simplify_ring(ring: np.ndarray, mask: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Douglas–Peucker (GEOS, topology-preserving) with the largest tolerance up to
    ``tolerance_px`` that keeps the outline faithful to the mask."""
    import shapely

    if len(ring) < 8:
        return ring
    polygon = shapely.Polygon(ring)
    for tolerance in (tolerance_px, tolerance_px / 2, tolerance_px / 4):
        if tolerance <= 0.05:
            break
        simplified = shapely.get_coordinates(
            shapely.simplify(polygon, tolerance, preserve_topology=True).exterior
        )
        if len(simplified) >= 4 and _ring_is_faithful(simplified, mask):
            return simplified
    return ring


def mask_to_polygon(mask: np.ndarray, tolerance_px: float = 0.5) -> np.ndarray | None:
    """Outline of the largest connected part of a boolean mask as ``(N, 2)`` ``(x, y)``.

    The contour follows pixel edges (traced on a 2× nearest-neighbour upsampling), so the
    polygon's area matches the pixel count instead of shrinking small objects as a contour
    through pixel centres would; simplification is kept only where the outline still covers
    exactly the same pixels. Returns ``None`` for an empty mask.
    """
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    top, left = rows.min(), cols.min()
    crop = mask[top : rows.max() + 1, left : cols.max() + 1]
    parts, count = ndimage.label(crop)
    if count > 1:
        sizes = np.bincount(parts.ravel())[1:]
        crop = parts == (int(np.argmax(sizes)) + 1)
    up = np.kron(crop.astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
    padded = np.pad(up, 1)
    contours = measure.find_contours(padded.astype(np.float32), 0.5)
    ring = max(contours, key=len)
    # padded index u -> image coordinate (u - 1) / 2 - 0.25 + offset
    ring = (ring - 1.0) / 2.0 - 0.25
    ring = _simplify_ring(ring, crop, tolerance_px)
    if np.allclose(ring[0], ring[-1]):
        ring = ring[:-1]
    ring[:, 0] += top
    ring[:, 1] += left
    return ring[:, ::-1].copy()


def instances_to_shapes(
    labels: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    tolerance_px: float = 0.5,
    scores: Sequence[float] | None = None,
) -> list[Shape]:
    """Polygons for every instance of a label image (instance ``k`` has class ``class_ids[k-1]``).

    Instance ids need not be contiguous: ids with no pixels are skipped. ``scores`` (one per
    instance) are written into each shape's ``description`` so users see the confidence in
    labelme.
    """
    shapes: list[Shape] = []
    objects = ndimage.find_objects(labels)
    for index, slices in enumerate(objects):
        if slices is None or index >= len(class_ids):
            continue
        instance = index + 1
        region = labels[slices] == instance
        polygon = mask_to_polygon(region, tolerance_px)
        if polygon is None or len(polygon) < 3:
            continue
        polygon[:, 0] += slices[1].start
        polygon[:, 1] += slices[0].start
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
    """Shoelace area of a polygon given as ``(N, 2)`` vertices."""
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
