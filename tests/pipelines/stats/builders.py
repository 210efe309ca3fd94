"""Shared builders for statistics tests: LabelMe documents made from analytic shapes."""

from __future__ import annotations

import math

import numpy as np

from pipelines.formats.labelme import LabelMeDocument, Shape, new_document


def circle(label: str, cx: float, cy: float, r: float, group_id: int | None = None) -> Shape:
    return Shape(label, [[cx, cy], [cx + r, cy]], "circle", group_id=group_id)


def regular_polygon(
    label: str, cx: float, cy: float, r: float, n: int = 720, group_id: int | None = None
) -> Shape:
    angle = np.linspace(0, 2 * math.pi, n, endpoint=False)
    points = np.column_stack([cx + r * np.cos(angle), cy + r * np.sin(angle)])
    return Shape(label, points, "polygon", group_id=group_id)


def square(label: str, x0: float, y0: float, side: float, group_id: int | None = None) -> Shape:
    points = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]]
    return Shape(label, points, "polygon", group_id=group_id)


def document(shapes: list[Shape], height: int = 200, width: int = 200) -> LabelMeDocument:
    return new_document(shapes, "image.png", height, width)


def lattice_document(
    spacing: float, rows: int, cols: int, radius: float = 2.0, margin: float | None = None
) -> LabelMeDocument:
    """Circles on a square lattice; the image extends half a spacing beyond the outer rows."""
    margin = spacing / 2 if margin is None else margin
    shapes = [
        circle("particle", margin + c * spacing - 0.5, margin + r * spacing - 0.5, radius)
        for r in range(rows)
        for c in range(cols)
    ]
    height = round(2 * margin + (rows - 1) * spacing)
    width = round(2 * margin + (cols - 1) * spacing)
    return new_document(shapes, "lattice.png", height, width)
