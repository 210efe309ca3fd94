"""Post-processing choices made after training: tie-breaking and the minimum object size."""

from __future__ import annotations

import numpy as np

from pipelines.detection.data import LabelledImage, TrainingSet
from pipelines.detection.unet import _middle_of_best
from pipelines.formats.labelme import Box
from pipelines.formats.masks import InstanceMasks


def test_ties_are_broken_towards_the_middle_of_the_tied_run():
    grid = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    scores = dict(zip(grid, [0.80, 0.89, 0.947, 0.947, 0.946, 0.91], strict=True))
    assert _middle_of_best(grid, scores) == 0.5
    # A clear winner stays the winner.
    scores[0.4] = 0.99
    assert _middle_of_best(grid, scores) == 0.4
    # A run at the end of the grid.
    assert _middle_of_best([1, 2, 3], {1: 0.1, 2: 0.5, 3: 0.5}) == 3


def _image_with(objects: list[tuple[slice, slice]], box: Box, size: int = 40) -> LabelledImage:
    labels = np.zeros((size, size), np.int32)
    for index, (rows, cols) in enumerate(objects, start=1):
        labels[rows, cols] = index
    instances = InstanceMasks(labels, np.ones(len(objects), np.int32), ["particle"])
    return LabelledImage("x", np.zeros((size, size), np.uint16), instances, [box])


def test_objects_cut_by_a_crop_edge_do_not_set_the_minimum_size():
    box = Box(10, 10, 30, 30)
    whole = [(slice(12 + 3 * i, 14 + 3 * i), slice(12, 17)) for i in range(2)]  # 10 px each
    sliver = (slice(20, 22), slice(29, 31))  # on the right edge: 2 px inside the crop
    item = _image_with([*whole, sliver], box)
    assert item.instances_cut_by_boxes() == {3}
    data = TrainingSet([item], ["particle"])
    assert sorted(data.object_areas_px()["particle"]) == [4.0, 10.0, 10.0]
    assert sorted(data.object_areas_px(whole_only=True)["particle"]) == [10.0, 10.0]
    # Few examples: a wide margin (0.1 of the smallest whole object).
    assert data.min_object_area_px() == [1.0]


def test_ten_examples_narrow_the_margin_and_all_cut_objects_still_count():
    box = Box(0, 0, 40, 40)
    many = [(slice(2 + 4 * i, 4 + 4 * i), slice(2, 7)) for i in range(10)]  # 10 px each
    data = TrainingSet([_image_with(many, box)], ["particle"])
    assert data.min_object_area_px() == [4.0]  # 0.4 of 10 px
    # Every object cut by the crop edge: their areas are all there is.
    cut = _image_with([(slice(10, 13), slice(9, 14))], Box(10, 10, 30, 30))
    assert TrainingSet([cut], ["particle"]).min_object_area_px() == [1.5]  # 0.1 of 15 px


def test_a_crop_at_the_image_edge_does_not_cut_objects():
    item = _image_with([(slice(0, 3), slice(5, 9))], Box(0, 0, 20, 20))
    assert item.instances_cut_by_boxes() == set()
