"""Per-object measurements against analytic geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.formats.labelme import Shape
from pipelines.stats.measure import (
    feret_diameters,
    measure_objects,
    object_groups,
    pack_objects,
)

from .builders import circle, regular_polygon, square


def measure(shapes: list[Shape]):
    arrays = pack_objects(object_groups(shapes))
    return arrays, measure_objects(arrays)


def test_circle_shape_has_area_pi_r2_and_diameter_2r() -> None:
    _, m = measure([circle("p", 40.0, 30.0, 7.5)])
    assert m.area_px[0] == pytest.approx(math.pi * 7.5**2)
    assert m.diameter_px[0] == pytest.approx(15.0)
    assert (m.cx[0], m.cy[0]) == pytest.approx((40.0, 30.0))
    assert m.feret_max_px[0] == pytest.approx(15.0)
    assert m.feret_min_px[0] == pytest.approx(15.0)
    assert m.circularity[0] == pytest.approx(1.0)


def test_fine_polygon_circle_matches_analytic_area_and_diameter() -> None:
    r, n = 10.0, 720
    _, m = measure([regular_polygon("p", 1000.0, 2000.0, r, n)])
    exact_polygon_area = 0.5 * n * r**2 * math.sin(2 * math.pi / n)
    assert m.area_px[0] == pytest.approx(exact_polygon_area, rel=1e-12)
    assert m.area_px[0] == pytest.approx(math.pi * r**2, rel=1e-4)
    assert m.diameter_px[0] == pytest.approx(2 * r, rel=1e-4)
    assert (m.cx[0], m.cy[0]) == pytest.approx((1000.0, 2000.0), abs=1e-9)
    assert m.perimeter_px[0] == pytest.approx(2 * math.pi * r, rel=1e-4)


def test_rectangle_area_is_width_times_height() -> None:
    _, m = measure([Shape("p", [[10, 20], [14, 29]], "rectangle")])
    assert m.area_px[0] == pytest.approx(36.0)
    assert (m.cx[0], m.cy[0]) == pytest.approx((12.0, 24.5))
    assert m.feret_max_px[0] == pytest.approx(math.hypot(4, 9))
    assert m.feret_min_px[0] == pytest.approx(4.0)


def test_point_has_no_area_but_a_centre() -> None:
    _, m = measure([Shape("atom", [[5.0, 6.0]], "point")])
    assert m.area_px[0] == 0.0
    assert (m.cx[0], m.cy[0]) == (5.0, 6.0)
    assert np.isnan(m.aspect_ratio[0])


def test_grouped_shapes_form_one_object_with_summed_area_and_weighted_centre() -> None:
    shapes = [
        square("p", 0, 0, 2, group_id=1),  # area 4, centre (1, 1)
        square("p", 10, 0, 4, group_id=1),  # area 16, centre (12, 2)
        square("p", 50, 50, 1),
        square("q", 0, 0, 2, group_id=1),  # another label: another object
    ]
    arrays, m = measure(shapes)
    assert arrays.n_objects == 3
    assert m.area_px[0] == pytest.approx(20.0)
    assert m.cx[0] == pytest.approx((4 * 1 + 16 * 12) / 20)
    assert m.cy[0] == pytest.approx((4 * 1 + 16 * 2) / 20)
    assert m.n_shapes.tolist() == [2, 1, 1]
    assert m.feret_max_px[0] == pytest.approx(math.hypot(14, 4))


def test_overlapping_parts_of_one_object_cover_their_union() -> None:
    """Two grouped squares overlapping by half: the object is their union, as its mask is."""
    shapes = [
        square("a", 60, 60, 10, group_id=2),
        square("a", 65, 60, 10, group_id=2),
        square("b", 0, 0, 4, group_id=1),
        circle("b", 20, 20, 2, group_id=1),  # disjoint parts keep the exact sum
    ]
    _, m = measure(shapes)
    assert m.area_px[0] == pytest.approx(150.0)
    assert (m.cx[0], m.cy[0]) == pytest.approx((67.5, 65.0))
    assert m.perimeter_px[0] == pytest.approx(50.0)
    assert m.area_px[1] == pytest.approx(16.0 + math.pi * 4.0)


def test_crops_and_lines_are_not_objects() -> None:
    shapes = [
        Shape("crop", [[0, 0], [50, 50]], "rectangle"),
        Shape("scale", [[0, 0], [5, 0]], "line"),
        square("p", 1, 1, 3),
    ]
    arrays, _ = measure(shapes)
    assert arrays.labels.tolist() == ["p"]


def test_collinear_polygon_has_zero_area() -> None:
    _, m = measure([Shape("p", [[0, 0], [1, 1], [2, 2]])])
    assert m.area_px[0] == 0.0
    assert (m.cx[0], m.cy[0]) == pytest.approx((1.0, 1.0))
    assert m.feret_max_px[0] == pytest.approx(math.hypot(2, 2))
    assert m.feret_min_px[0] == 0.0


def test_empty_shape_list_measures_nothing() -> None:
    arrays, m = measure([])
    assert arrays.n_objects == 0
    assert m.area_px.shape == (0,)


@st.composite
def star_polygons(draw) -> np.ndarray:
    n = draw(st.integers(3, 30))
    angles = np.sort(
        np.array(
            draw(st.lists(st.floats(0, 2 * math.pi - 1e-3), min_size=n, max_size=n, unique=True))
        )
    )
    radii = np.array(draw(st.lists(st.floats(0.5, 50), min_size=n, max_size=n)))
    cx, cy = draw(st.floats(-1e4, 1e4)), draw(st.floats(-1e4, 1e4))
    return np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


@settings(max_examples=60, deadline=None)
@given(st.lists(star_polygons(), min_size=1, max_size=6))
def test_area_centroid_and_feret_match_shapely(polygons: list[np.ndarray]) -> None:
    shapes = [Shape("p", p) for p in polygons]
    _arrays, m = measure(shapes)
    for index, points in enumerate(polygons):
        reference = shapely.Polygon(points)
        if not reference.is_valid or reference.area < 1e-3:
            continue
        assert m.area_px[index] == pytest.approx(reference.area, rel=1e-7, abs=1e-6)
        centroid = reference.centroid
        assert m.cx[index] == pytest.approx(centroid.x, rel=1e-7, abs=1e-5)
        assert m.cy[index] == pytest.approx(centroid.y, rel=1e-7, abs=1e-5)
        pairwise = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
        assert m.feret_max_px[index] == pytest.approx(pairwise.max(), rel=1e-9)
        expected_min = shapely.length(shapely.minimum_width(reference))
        assert m.feret_min_px[index] == pytest.approx(expected_min, rel=1e-6, abs=1e-6)


def test_feret_of_a_needle_is_its_length_and_thickness() -> None:
    arrays = pack_objects([[Shape("p", [[0, 0], [100, 0], [100, 2], [0, 2]], "polygon")]])
    longest, narrowest = feret_diameters(arrays)
    assert longest[0] == pytest.approx(math.hypot(100, 2))
    assert narrowest[0] == pytest.approx(2.0)
