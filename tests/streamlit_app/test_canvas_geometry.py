"""Fabric canvas objects ⇄ image pixels: known answers for drawn, moved, scaled, rotated shapes."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.formats.labelme import Shape
from streamlit_app.components.canvas_geometry import (
    CanvasFit,
    Region,
    contain_fit,
    fabric_click_points,
    fabric_object_canvas_points,
    fabric_to_shapes,
    normalise_colour,
    same_shapes,
    shapes_to_fabric,
)

COLOURS = {"#e69f00": "particle", "#56b4e9": "single_site"}
LABEL_OF = COLOURS.get


def colour_of(label: str) -> str:
    return {v: k for k, v in COLOURS.items()}.get(label, "#ff2a2a")


def _polygon(points, **transform):
    """A polygon as the drawing tool makes it (Fabric 6: origin left/top, stroke 2)."""
    pts = np.asarray(points, float)
    low, high = pts.min(axis=0), pts.max(axis=0)
    obj = {
        "type": "Polygon",
        "left": low[0] - 1,
        "top": low[1] - 1,
        "width": high[0] - low[0],
        "height": high[1] - low[1],
        "points": [{"x": x, "y": y} for x, y in pts],
        "strokeWidth": 2,
        "stroke": "#e69f00",
    }
    obj.update(transform)
    return obj


def test_untouched_polygon_keeps_its_points() -> None:
    points = [[10, 10], [50, 12], [30, 40]]
    assert np.allclose(fabric_object_canvas_points(_polygon(points)), points)


def test_moved_polygon_follows_left_top() -> None:
    obj = _polygon([[10, 10], [50, 12], [30, 40]])
    obj["left"] += 7
    obj["top"] -= 3
    assert np.allclose(fabric_object_canvas_points(obj), [[17, 7], [57, 9], [37, 37]])


def test_scaled_polygon_scales_about_its_anchor() -> None:
    # Scaling with the left/top handle fixed: the stroke box grows by the same factor.
    obj = _polygon([[10, 10], [50, 10], [50, 30]], scaleX=2.0, scaleY=0.5)
    got = fabric_object_canvas_points(obj)
    width, height = 40, 20
    stroke_box_left, stroke_box_top = 9, 9
    centre = (stroke_box_left + (width + 2) * 2 / 2, stroke_box_top + (height + 2) * 0.5 / 2)
    local = np.array([[-20, -10], [20, -10], [20, 10]]) * [2.0, 0.5]
    assert np.allclose(got, local + centre)


def test_rotated_rect_about_centre_origin() -> None:
    rect = {
        "type": "Rect",
        "left": 100,
        "top": 100,
        "width": 40,
        "height": 20,
        "originX": "center",
        "originY": "center",
        "angle": 90,
        "strokeWidth": 0,
    }
    got = fabric_object_canvas_points(rect)
    assert np.allclose(
        sorted(map(tuple, np.round(got, 6))), [(90, 80), (90, 120), (110, 80), (110, 120)]
    )


def test_canvas_to_image_uses_fit_region_and_pixel_centres() -> None:
    # Picture of a 100x50 region at (200, 300), shown twice as large with a 10 px left margin.
    region = Region(200, 300, 100, 50, 100, 50)
    fit = CanvasFit(2.0, 2.0, 10.0, 0.0)
    rect = {"type": "Rect", "left": 10, "top": 0, "width": 200, "height": 100, "strokeWidth": 0}
    (crop,) = fabric_to_shapes([rect], fit, region, LABEL_OF, rectangle_label="crop")
    assert crop.label == "crop" and crop.shape_type == "rectangle"
    assert np.allclose(crop.points, [[199.5, 299.5], [299.5, 349.5]])


def test_polygon_class_comes_from_its_colour_and_unknown_colours_are_dropped() -> None:
    fit, region = CanvasFit(1, 1), Region(0, 0, 100, 100, 100, 100)
    blue = _polygon([[10, 10], [20, 10], [15, 20]], stroke="rgb(86, 180, 233)")
    grey = _polygon([[30, 30], [40, 30], [35, 40]], stroke="#999999")
    shapes = fabric_to_shapes([blue, grey], fit, region, LABEL_OF)
    assert [s.label for s in shapes] == ["single_site"]
    assert normalise_colour("#ABC") == "#aabbcc"


def test_click_marker_centre_is_the_click() -> None:
    # The point tool puts left = x - (radius + stroke/2), origin left/center.
    circle = {
        "type": "Circle",
        "left": 50 - 4 - 1,
        "top": 20,
        "radius": 4,
        "originX": "left",
        "originY": "center",
        "strokeWidth": 2,
    }
    (click,) = fabric_click_points([circle], CanvasFit(1, 1), Region(0, 0, 100, 100, 100, 100))
    assert np.allclose(click, (49.5, 19.5))


def test_contain_fit_matches_the_component_formula() -> None:
    fit = contain_fit(200, 100, 400, 400)
    assert fit == CanvasFit(2.0, 2.0, 0.0, 100.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 99), st.floats(0, 59)), min_size=3, max_size=12, unique=True),
    st.integers(0, 500),
    st.integers(0, 500),
    st.floats(0.2, 8.0),
)
def test_round_trip_image_canvas_image(points, left, top, zoom) -> None:
    region = Region(left, top, 100, 60, round(100 * zoom), round(60 * zoom))
    fit = contain_fit(region.picture_width_px, region.picture_height_px, 700, 700)
    shapes = [
        Shape("particle", np.array(points) + np.array([left - 0.5, top - 0.5]), "polygon"),
        Shape("crop", [[left, top], [left + 50, top + 30]], "rectangle"),
    ]
    drawing = shapes_to_fabric(shapes, fit, region, colour_of)
    back = fabric_to_shapes(drawing["objects"], fit, region, LABEL_OF, rectangle_label="crop")
    assert same_shapes(back, shapes, tolerance_px=1e-6)
    assert math.isclose(back[1].points[0][0], left, abs_tol=1e-9)
