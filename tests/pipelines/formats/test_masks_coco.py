"""Shapes ⇄ instance masks and COCO export, checked against exact geometry and pycocotools."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.draw import disk, ellipse

from pipelines.errors import InvalidLabels
from pipelines.formats.coco import write_coco
from pipelines.formats.labelme import Shape, new_document
from pipelines.formats.masks import (
    instances_to_shapes,
    mask_to_polygon,
    polygon_area_px,
    shape_to_mask,
    shapes_to_instances,
)


def test_square_polygon_covers_the_pixels_whose_centres_it_contains() -> None:
    square = Shape("p", [[1.5, 2.5], [5.5, 2.5], [5.5, 4.5], [1.5, 4.5]])
    mask = shape_to_mask(square, 8, 8)
    assert mask.sum() == 8
    assert mask[3:5, 2:6].all()


def test_circle_and_point_shapes() -> None:
    circle = Shape("p", [[20, 20], [30, 20]], shape_type="circle")
    assert abs(shape_to_mask(circle, 64, 64).sum() - math.pi * 100) < 10
    point = Shape("s", [[5, 5]], shape_type="point")
    assert 5 <= shape_to_mask(point, 16, 16).sum() <= 9


@settings(max_examples=40, deadline=None)
@given(
    cy=st.floats(10, 54),
    cx=st.floats(10, 54),
    r_row=st.floats(1.5, 9),
    r_col=st.floats(1.5, 9),
    angle=st.floats(0, math.pi),
)
# A thin, tilted ellipse rasterises to a 40-px run plus two pixels that touch it only at a
# corner: the outline is of the largest edge-connected part, as documented.
@example(cy=10.5, cx=10.5, r_row=1.5, r_col=8.625, angle=0.875)
def test_mask_polygon_mask_round_trip_is_exact(
    cy: float, cx: float, r_row: float, r_col: float, angle: float
) -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[ellipse(cy, cx, r_row, r_col, shape=mask.shape, rotation=angle)] = True
    parts = ndimage.label(mask)[0]  # edge (4-) connected
    largest = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
    polygon = mask_to_polygon(mask)
    assert polygon is not None
    back = shape_to_mask(Shape("p", polygon), 64, 64)
    assert np.array_equal(back, largest)
    # the outline follows pixel edges, so its area is the pixel count within a corner's worth
    assert abs(polygon_area_px(polygon) - largest.sum()) <= 0.05 * largest.sum() + 1.0


def test_instances_round_trip_with_classes() -> None:
    labels = np.zeros((80, 80), dtype=np.int32)
    labels[disk((20, 20), 8, shape=labels.shape)] = 1
    labels[disk((20, 36), 8, shape=labels.shape)] = 2  # touching neighbour
    labels[disk((60, 60), 2, shape=labels.shape)] = 3
    class_ids = np.array([1, 1, 2], dtype=np.int32)
    shapes = instances_to_shapes(
        labels, class_ids, ["particle", "single_site"], scores=[0.9, 0.8, 0.7]
    )
    assert [s.label for s in shapes] == ["particle", "particle", "single_site"]
    assert shapes[0].description == "score=0.900"
    again = shapes_to_instances(shapes, 80, 80, ["particle", "single_site"])
    assert np.array_equal(again.labels, labels)
    assert again.class_ids.tolist() == [1, 1, 2]
    assert again.class_of(3) == "single_site"


def test_grouped_shapes_are_one_instance() -> None:
    shapes = [
        Shape("particle", [[2, 2], [6, 2], [6, 6], [2, 6]], group_id=1),
        Shape("particle", [[10, 10], [14, 10], [14, 14]], group_id=1),
        Shape("particle", [[20, 20], [24, 20], [24, 24]]),
    ]
    instances = shapes_to_instances(shapes, 30, 30)
    assert instances.count == 2
    assert set(np.unique(instances.labels)) == {0, 1, 2}


def test_unknown_class_is_an_error() -> None:
    shapes = [Shape("dust", [[2, 2], [6, 2], [6, 6]])]
    with pytest.raises(InvalidLabels, match="label 'dust' is not one of the model's classes"):
        shapes_to_instances(shapes, 10, 10, ["particle"])


def test_coco_export_loads_in_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    shapes = [
        Shape("crop", [[0, 0], [40, 40]], shape_type="rectangle"),
        Shape("particle", [[5.5, 5.5], [15.5, 5.5], [15.5, 15.5], [5.5, 15.5]]),
        Shape("particle", [[30, 30], [35, 30]], shape_type="circle"),
        Shape("single_site", [[20, 20], [23, 20], [23, 23]]),
    ]
    document = new_document(shapes, "image.png", 48, 48)
    path = write_coco(tmp_path / "coco.json", [document])
    coco = COCO(str(path))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["particle", "single_site"]
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(annotations) == 3
    square = coco.annToMask(annotations[0])
    assert square.sum() == annotations[0]["area"] == 100


def test_outlines_of_many_objects_equal_one_by_one_outlines_and_rasterise_exactly() -> None:
    labels = np.zeros((90, 90), dtype=np.int32)
    labels[disk((20, 20), 9, shape=labels.shape)] = 1
    labels[disk((20, 38), 9, shape=labels.shape)] = 2  # touches 1
    labels[disk((60, 20), 10, shape=labels.shape)] = 3
    labels[disk((60, 20), 4, shape=labels.shape)] = 0  # 3 has a hole
    labels[disk((60, 55), 5, shape=labels.shape)] = 4
    labels[disk((80, 75), 3, shape=labels.shape)] = 4  # 4 has two parts
    labels[5, 80] = 5  # one pixel
    labels[0:3, 60:90] = 6  # on the image border
    labels[40:42, 70] = 7  # two pixels
    shapes = instances_to_shapes(labels, np.ones(7, dtype=np.int32), ["particle"])
    assert len(shapes) == 7
    for instance, shape in enumerate(shapes, start=1):
        mask = labels == instance
        parts, _ = ndimage.label(mask)
        largest = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
        filled = ndimage.binary_fill_holes(largest)  # an outline has no holes
        assert np.array_equal(shape.points, mask_to_polygon(mask))
        assert np.array_equal(shape_to_mask(shape, 90, 90), filled)


def test_outline_is_the_outer_edge_even_when_a_hole_has_the_longer_edge() -> None:
    mask = np.ones((21, 21), dtype=bool)
    mask[1:20, 1:20] = False  # a one-pixel frame ...
    for col in range(2, 19, 2):
        mask[1:19, col] = True  # ... with comb teeth, so the hole's edge is the longer one
    polygon = mask_to_polygon(mask)
    xs, ys = polygon[:, 0], polygon[:, 1]
    assert xs.min() < 0 and ys.min() < 0 and xs.max() > 20 and ys.max() > 20
    filled = ndimage.binary_fill_holes(mask)
    assert np.array_equal(shape_to_mask(Shape("p", polygon), 21, 21), filled)
    assert polygon_area_px(np.zeros((0, 2))) == 0.0
