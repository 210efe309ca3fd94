"""Post-processing choices made after training: tie-breaking, core shares of few-pixel
objects and the minimum object size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipelines.detection.data import LabelledImage, TrainingSet
from pipelines.detection.postprocess import MatchCounts, WatershedParams
from pipelines.detection.tuning import (
    PRIOR_SHARE,
    SHARE_GRID,
    TIE_TOLERANCE,
    CropMaps,
    _crop_object_counts,
    _middle_of_best,
    _score_crops,
    _share_margin,
    _tune_core_shares,
    weak_classes,
)
from pipelines.formats.labelme import Box
from pipelines.formats.masks import InstanceMasks
from pipelines.progress import StageTimer


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


def _haloed_atoms_crop(
    halo_centreness: float = 0.35, labelled_halo: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop of nine 2x2 atoms whose foreground spreads over a 6x6 halo each (centre-ness
    ``halo_centreness`` there, 1 on the atom): the maps of a network that follows the blur.
    ``labelled_halo``: the labels outline the whole 6x6 halo, not the 2x2 atom."""
    size = 60
    truth = np.zeros((size, size), np.int32)
    maps = np.zeros((2, size, size), np.float32)
    for index in range(9):
        top, left = 8 + 18 * (index // 3), 8 + 18 * (index % 3)
        if labelled_halo:
            truth[top - 2 : top + 4, left - 2 : left + 4] = index + 1
        else:
            truth[top : top + 2, left : left + 2] = index + 1
        maps[0, top - 2 : top + 4, left - 2 : left + 4] = 0.95
        maps[1, top - 2 : top + 4, left - 2 : left + 4] = halo_centreness
        maps[1, top : top + 2, left : left + 2] = 1.0
    return maps, truth, np.ones(9, np.int32)


def _tuned_share(
    crop: tuple[np.ndarray, np.ndarray, np.ndarray], eligible: bool = True
) -> tuple[WatershedParams, MatchCounts]:
    crops = CropMaps([crop], ["single_site"], [1.0])
    params = WatershedParams(fg_threshold=0.5, core_threshold=0.5)
    timer = StageTimer(None, "tune", len(SHARE_GRID))
    untrimmed = _score_crops(crops, params)[1]
    return _tune_core_shares(crops, params, untrimmed, [eligible], timer, 0)


def test_core_shares_are_tuned_only_for_classes_of_few_pixel_objects() -> None:
    tuned, counts = _tuned_share(_haloed_atoms_crop())
    # 0.3 keeps the halo (IoU 4/36); 0.4 drops it.
    assert tuned.core_shares == (0.4,) and counts.true_positives == 9 and counts.f1 == 1.0
    untouched, counts = _tuned_share(_haloed_atoms_crop(), eligible=False)
    assert untouched.core_shares == (0.0,) and counts.true_positives == 0


def test_the_prior_share_holds_unless_the_crops_clearly_favour_another() -> None:
    assert PRIOR_SHARE in SHARE_GRID
    # A bright halo: only 0.6 drops it, and the crops say so by far more than one atom's worth.
    tuned, counts = _tuned_share(_haloed_atoms_crop(halo_centreness=0.55))
    assert tuned.core_shares == (0.6,) and counts.f1 == 1.0
    # Atoms outlined with their halo: shares of 0.4 and more cut them; 0 and 0.3 tie, and the
    # smaller is taken.
    tuned, counts = _tuned_share(_haloed_atoms_crop(labelled_halo=True))
    assert tuned.core_shares == (0.0,) and counts.f1 == 1.0
    # No halo at all: every share scores the same, and the prior is kept.
    maps, truth, classes = _haloed_atoms_crop()
    maps[0] = np.where(maps[1] == 1.0, 0.95, 0.0)
    tuned, counts = _tuned_share((maps, truth, classes))
    assert tuned.core_shares == (PRIOR_SHARE,) and counts.f1 == 1.0


def test_one_object_of_the_crops_is_the_margin_over_the_prior_share() -> None:
    assert _share_margin(32) == 1 / 32
    assert _share_margin(1000) == TIE_TOLERANCE  # never below a tie
    # One atom with a 2x1 shoulder of centre-ness 0.45: at 0.4 it keeps 6 px instead of 4
    # (22 % too wide, the crops score 0.9875 against 1.0 at 0.5), less than one atom of nine.
    maps, truth, classes = _haloed_atoms_crop()
    maps[1, 8:10, 10] = 0.45
    assert _tuned_share((maps, truth, classes))[0].core_shares == (PRIOR_SHARE,)
    # Two atoms whose whole halo is at 0.45 fail IoU 0.5 at 0.4 (F1 0.78): clearly worse.
    maps, truth, classes = _haloed_atoms_crop()
    for top, left in ((8, 8), (8, 26)):
        halo = maps[1, top - 2 : top + 4, left - 2 : left + 4]
        halo[halo < 1.0] = 0.45
    assert _tuned_share((maps, truth, classes))[0].core_shares == (0.5,)


def test_crop_objects_are_counted_by_the_class_of_their_label() -> None:
    truth = np.zeros((10, 10), np.int32)
    truth[1:3, 1:3], truth[5:7, 5:7] = 3, 7  # labels of the whole image, with gaps
    class_ids = np.array([1, 1, 2, 1, 1, 1, 1], np.int32)
    crop = (np.zeros((2, 10, 10), np.float32), truth, class_ids)
    crops = CropMaps([crop, crop], ["particle", "site", "other"], [1.0, 1.0, 1.0])
    assert _crop_object_counts(crops).tolist() == [2, 2, 0]


def test_a_class_is_of_few_pixels_when_its_median_object_is_at_most_6_px_wide() -> None:
    box = Box(0, 0, 40, 40)
    atoms = [(slice(2 + 4 * i, 4 + 4 * i), slice(2, 4)) for i in range(5)]  # 4 px each
    particles = [(slice(2 + 8 * i, 8 + 8 * i), slice(20, 27)) for i in range(3)]  # 42 px
    labels = np.zeros((40, 40), np.int32)
    class_ids = []
    for index, (rows, cols) in enumerate([*atoms, *particles], start=1):
        labels[rows, cols] = index
        class_ids.append(2 if index <= len(atoms) else 1)
    instances = InstanceMasks(labels, np.array(class_ids, np.int32), ["particle", "site"])
    item = LabelledImage("x", np.zeros((40, 40), np.uint16), instances, [box])
    assert TrainingSet([item], ["particle", "site", "none"]).few_pixels() == [False, True, False]


def test_a_class_its_own_crops_reproduce_poorly_is_reported() -> None:
    crops = CropMaps([_haloed_atoms_crop()], ["single_site"], [1.0])
    params = WatershedParams(fg_threshold=0.5, core_threshold=0.5)
    # Untrimmed, every atom comes out with its 6x6 halo and fails IoU 0.5: F1 0.
    assert weak_classes(crops, params) == {"single_site": 0.0}
    assert weak_classes(crops, replace(params, core_shares=(0.4,))) == {}
