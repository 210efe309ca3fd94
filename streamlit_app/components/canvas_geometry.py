"""Fabric.js canvas objects ⇄ LabelMe shapes in image pixels (pure functions, no Streamlit).

The drawing canvas (streamlit-drawable-canvas, Fabric 6) reports objects in *canvas* pixels with
their own transform: ``left/top`` anchored at ``originX/originY`` of a box that includes the stroke,
``scaleX/scaleY``, ``angle`` (degrees), ``flipX/flipY``, and for polygons ``points`` relative to a
``pathOffset`` (the centre of the points' bounding box). A shape the user moved or resized keeps
its original ``points`` and only changes that transform, so raw ``points`` are wrong after an edit;
these functions apply the full transform.

Coordinate chain: canvas px → background-image px (``fit``: scale and offset of the displayed
picture) → image px of the labelled region (the picture may be a down-scaled view of the region
``region`` of the full image). LabelMe puts pixel centres at integer coordinates, so the left edge
of pixel 0 is x = -0.5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.formats.labelme import Shape

_ORIGIN_OFFSET = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}


@dataclass(frozen=True)
class CanvasFit:
    """How the background picture sits on the canvas: canvas = offset + scale · picture px."""

    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    @classmethod
    def from_component(cls, fit: Mapping[str, float]) -> CanvasFit:
        """From ``CanvasResult.background_fit`` (snake case) or the raw camelCase value."""
        get = fit.get
        return cls(
            scale_x=float(get("scale_x", get("scaleX", 1.0))),
            scale_y=float(get("scale_y", get("scaleY", 1.0))),
            offset_x=float(get("offset_x", get("offsetX", 0.0))),
            offset_y=float(get("offset_y", get("offsetY", 0.0))),
        )


def contain_fit(
    picture_width_px: int, picture_height_px: int, canvas_width_px: int, canvas_height_px: int
) -> CanvasFit:
    """The fit ``background_image_fit="contain"`` applies (same formula as the component)."""
    scale = min(canvas_width_px / picture_width_px, canvas_height_px / picture_height_px)
    return CanvasFit(
        scale_x=scale,
        scale_y=scale,
        offset_x=(canvas_width_px - picture_width_px * scale) / 2,
        offset_y=(canvas_height_px - picture_height_px * scale) / 2,
    )


@dataclass(frozen=True)
class Region:
    """The part of the full image shown on the canvas: pixel box ``[left, left+width)`` etc.

    ``picture_width_px`` is the width of the picture actually sent to the canvas (smaller than
    ``width_px`` when the view is down-scaled, larger when it is zoomed in).
    """

    left_px: int
    top_px: int
    width_px: int
    height_px: int
    picture_width_px: int
    picture_height_px: int

    @property
    def px_per_picture_x(self) -> float:
        return self.width_px / self.picture_width_px

    @property
    def px_per_picture_y(self) -> float:
        return self.height_px / self.picture_height_px


def _object_matrix(obj: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(A, t)`` so that canvas = A @ local + t, where local is relative to the object centre."""
    scale_x = float(obj.get("scaleX", 1.0) or 1.0) * (-1.0 if obj.get("flipX") else 1.0)
    scale_y = float(obj.get("scaleY", 1.0) or 1.0) * (-1.0 if obj.get("flipY") else 1.0)
    angle = math.radians(float(obj.get("angle", 0.0) or 0.0))
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    stroke = float(obj.get("strokeWidth", 0.0) or 0.0)
    width = float(obj.get("width", 0.0) or 0.0)
    height = float(obj.get("height", 0.0) or 0.0)
    # Fabric's bounding box includes the stroke; a uniform stroke does not scale with the object.
    if obj.get("strokeUniform"):
        box_w, box_h = abs(width * scale_x) + stroke, abs(height * scale_y) + stroke
    else:
        box_w, box_h = abs((width + stroke) * scale_x), abs((height + stroke) * scale_y)
    origin_x = _ORIGIN_OFFSET.get(str(obj.get("originX", "left")), 0.0)
    origin_y = _ORIGIN_OFFSET.get(str(obj.get("originY", "top")), 0.0)
    anchor = np.array([float(obj.get("left", 0.0)), float(obj.get("top", 0.0))])
    centre = anchor + rotation @ np.array([(0.5 - origin_x) * box_w, (0.5 - origin_y) * box_h])
    return rotation @ np.diag([scale_x, scale_y]), centre


def fabric_object_canvas_points(obj: Mapping[str, Any]) -> np.ndarray | None:
    """Vertices of a Fabric rect or polygon in canvas pixels, ``(N, 2)``; ``None`` for others."""
    kind = str(obj.get("type", "")).lower()
    matrix, centre = _object_matrix(obj)
    if kind in ("rect", "labeledrect"):
        half_w = float(obj.get("width", 0.0)) / 2
        half_h = float(obj.get("height", 0.0)) / 2
        local = np.array(
            [[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]]
        )
    elif kind in ("polygon", "polyline"):
        raw = obj.get("points") or []
        points = np.array([[float(p["x"]), float(p["y"])] for p in raw], dtype=np.float64)
        if len(points) == 0:
            return None
        offset = obj.get("pathOffset")
        if offset:
            path_offset = np.array([float(offset["x"]), float(offset["y"])])
        else:
            path_offset = (points.min(axis=0) + points.max(axis=0)) / 2
        local = points - path_offset
    else:
        return None
    return local @ matrix.T + centre


def canvas_to_image(points: np.ndarray, fit: CanvasFit, region: Region) -> np.ndarray:
    """Canvas pixels → LabelMe image coordinates (pixel centres at integers)."""
    picture_x = (points[:, 0] - fit.offset_x) / fit.scale_x
    picture_y = (points[:, 1] - fit.offset_y) / fit.scale_y
    x = region.left_px - 0.5 + picture_x * region.px_per_picture_x
    y = region.top_px - 0.5 + picture_y * region.px_per_picture_y
    return np.column_stack([x, y])


def image_to_canvas(points: np.ndarray, fit: CanvasFit, region: Region) -> np.ndarray:
    """Inverse of :func:`canvas_to_image`."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    picture_x = (points[:, 0] - region.left_px + 0.5) / region.px_per_picture_x
    picture_y = (points[:, 1] - region.top_px + 0.5) / region.px_per_picture_y
    return np.column_stack(
        [fit.offset_x + picture_x * fit.scale_x, fit.offset_y + picture_y * fit.scale_y]
    )


def normalise_colour(colour: str) -> str:
    """``#AbC``/``#aabbcc``/``rgb(…)`` → ``#aabbcc`` so stroke colours can be compared."""
    text = str(colour).strip().lower()
    match = re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+).*\)", text)
    if match:
        return "#" + "".join(f"{int(v):02x}" for v in match.groups())
    if re.fullmatch(r"#[0-9a-f]{3}", text):
        return "#" + "".join(ch * 2 for ch in text[1:])
    return text[:7]


def fabric_to_shapes(
    objects: Iterable[Mapping[str, Any]],
    fit: CanvasFit,
    region: Region,
    label_for_colour: Callable[[str], str | None],
    rectangle_label: str | None = None,
) -> list[Shape]:
    """Canvas objects → LabelMe shapes in image pixels.

    Polygons get the class whose colour is their stroke colour (``label_for_colour``; objects
    with an unknown colour are dropped). Rectangles become axis-aligned ``rectangle`` shapes
    labelled ``rectangle_label`` (e.g. ``crop``), or are dropped when it is ``None``; a rotated
    rectangle keeps its bounding box. Vertices are clipped to the region.
    """
    shapes: list[Shape] = []
    x_low, y_low = region.left_px - 0.5, region.top_px - 0.5
    x_high, y_high = x_low + region.width_px, y_low + region.height_px
    for obj in objects:
        canvas_points = fabric_object_canvas_points(obj)
        if canvas_points is None:
            continue
        points = canvas_to_image(canvas_points, fit, region)
        points[:, 0] = np.clip(points[:, 0], x_low, x_high)
        points[:, 1] = np.clip(points[:, 1], y_low, y_high)
        kind = str(obj.get("type", "")).lower()
        if kind in ("rect", "labeledrect"):
            if rectangle_label is None:
                continue
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            shapes.append(
                Shape(label=rectangle_label, points=[[x0, y0], [x1, y1]], shape_type="rectangle")
            )
            continue
        label = label_for_colour(normalise_colour(str(obj.get("stroke", ""))))
        if label is None or len(points) < 3:
            continue
        shapes.append(Shape(label=label, points=points, shape_type="polygon"))
    return shapes


def shapes_to_fabric(
    shapes: Sequence[Shape],
    fit: CanvasFit,
    region: Region,
    colour_for_label: Callable[[str], str],
    stroke_width_px: float = 2.0,
    fill_alpha: float = 0.15,
) -> dict[str, Any]:
    """LabelMe polygons and rectangles → an ``initial_drawing`` for the canvas.

    The inverse of :func:`fabric_to_shapes` (round trip within floating-point error).
    """
    objects: list[dict[str, Any]] = []
    half = stroke_width_px / 2
    for shape in shapes:
        colour = colour_for_label(shape.label)
        red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        fill = f"rgba({red}, {green}, {blue}, {fill_alpha})"
        if shape.shape_type == "rectangle":
            (x0, y0), (x1, y1) = image_to_canvas(shape.points, fit, region)
            left, right = sorted((x0, x1))
            top, bottom = sorted((y0, y1))
            objects.append(
                {
                    "type": "Rect",
                    "left": left - half,
                    "top": top - half,
                    "width": right - left,
                    "height": bottom - top,
                    "originX": "left",
                    "originY": "top",
                    "scaleX": 1,
                    "scaleY": 1,
                    "angle": 0,
                    "stroke": colour,
                    "strokeWidth": stroke_width_px,
                    "fill": "rgba(0, 0, 0, 0)",
                }
            )
        elif shape.shape_type == "polygon":
            canvas_points = image_to_canvas(shape.points, fit, region)
            low, high = canvas_points.min(axis=0), canvas_points.max(axis=0)
            objects.append(
                {
                    "type": "Polygon",
                    "left": float(low[0]) - half,
                    "top": float(low[1]) - half,
                    "width": float(high[0] - low[0]),
                    "height": float(high[1] - low[1]),
                    "originX": "left",
                    "originY": "top",
                    "scaleX": 1,
                    "scaleY": 1,
                    "angle": 0,
                    "points": [{"x": float(x), "y": float(y)} for x, y in canvas_points],
                    "stroke": colour,
                    "strokeWidth": stroke_width_px,
                    "fill": fill,
                }
            )
    return {"version": "6.0.0", "objects": objects}


def fabric_click_points(
    objects: Iterable[Mapping[str, Any]], fit: CanvasFit, region: Region
) -> list[tuple[float, float]]:
    """Centres of the point markers (Fabric circles) in image pixels: where the user clicked."""
    clicks = []
    for obj in objects:
        if str(obj.get("type", "")).lower() != "circle":
            continue
        radius = float(obj.get("radius", 0.0) or 0.0)
        shape = {
            **obj,
            "width": obj.get("width", 2 * radius),
            "height": obj.get("height", 2 * radius),
        }
        _, centre = _object_matrix(shape)
        ((x, y),) = canvas_to_image(centre.reshape(1, 2), fit, region)
        clicks.append((float(x), float(y)))
    return clicks


def same_shapes(
    first: Sequence[Shape], second: Sequence[Shape], tolerance_px: float = 0.01
) -> bool:
    """Whether two shape lists are equal up to ``tolerance_px`` (order matters)."""
    if len(first) != len(second):
        return False
    for a, b in zip(first, second, strict=True):
        if a.label != b.label or a.shape_type != b.shape_type or a.points.shape != b.points.shape:
            return False
        if not np.allclose(a.points, b.points, atol=tolerance_px, rtol=0):
            return False
    return True
