"""After the watershed: fragments of one object are joined (touching objects and other classes
are not), objects of a few pixels are trimmed to their cores, and holes one object encloses
are filled."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipelines.detection.postprocess import (
    WatershedParams,
    fill_enclosed_holes,
    instances_from_maps,
    merge_fragments,
    trim_to_cores,
)


def _disk(shape: tuple[int, int], cy: float, cx: float, radius: float) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2


def _two_core_particle() -> tuple[np.ndarray, np.ndarray]:
    """A 12-px-radius particle whose centre-ness has two cores with a high ridge between."""
    disk = _disk((48, 48), 24, 24, 12)
    rows, cols = np.mgrid[0:48, 0:48]
    bumps = np.exp(-((rows - 24) ** 2 + (cols - 18) ** 2) / 18.0)
    bumps += np.exp(-((rows - 24) ** 2 + (cols - 30) ** 2) / 18.0)
    edge = ndimage.distance_transform_edt(disk)
    centre = np.where(disk, np.minimum(0.75 + 0.25 * bumps, edge / 3.0), 0.0)
    return disk, centre.astype(np.float32)


def test_a_particle_with_two_cores_is_one_object_when_its_class_merges() -> None:
    disk, centre = _two_core_particle()
    probability = np.where(disk, 0.95, 0.0).astype(np.float32)[None]
    split, _ = instances_from_maps(probability, centre, ["particle"], WatershedParams(0.5, 0.9))
    assert split.count == 2
    params = WatershedParams(0.5, 0.9, merge_classes=(True,))
    joined, scores = instances_from_maps(probability, centre, ["particle"], params)
    assert joined.count == 1 and scores.size == 1
    assert np.array_equal(joined.labels > 0, disk)


def test_touching_particles_and_other_classes_stay_apart() -> None:
    shape = (40, 60)
    left, right = _disk(shape, 20, 18, 9), _disk(shape, 20, 36, 9)  # touching at column 27
    labels = np.where(left, 1, 0) + np.where(right & ~left, 2, 0)
    centre = np.zeros(shape, np.float32)
    for index in (1, 2):
        distance = ndimage.distance_transform_edt(labels == index)
        centre += (distance / distance.max()).astype(np.float32)
    merge = np.array([True, True])
    same_class = np.array([0, 0, 0])
    kept, count = merge_fragments(labels.astype(np.int32), 2, centre, same_class, merge)
    assert count == 2 and np.array_equal(kept, labels)
    # a ridge across the contact joins them, but never across two classes
    centre[:, 26:29] = np.maximum(centre[:, 26:29], 0.9 * (labels[:, 26:29] > 0))
    joined, count = merge_fragments(labels.astype(np.int32), 2, centre, same_class, merge)
    assert count == 1 and set(np.unique(joined)) == {0, 1}
    two_classes = np.array([0, 0, 1])
    kept, count = merge_fragments(labels.astype(np.int32), 2, centre, two_classes, merge)
    assert count == 2
    kept, count = merge_fragments(labels.astype(np.int32), 2, centre, same_class, ~merge)
    assert count == 2


def test_regions_without_centre_ness_or_with_id_gaps_are_handled() -> None:
    labels = np.array([[1, 1, 3, 3], [1, 1, 3, 3]], dtype=np.int32)  # id 2 has no pixels
    merge, same_class = np.array([True]), np.zeros(4, dtype=np.int64)
    flat = np.zeros(labels.shape, np.float32)
    kept, count = merge_fragments(labels, 3, flat, same_class, merge)
    assert count == 3 and np.array_equal(kept, labels)  # no peaks: nothing joins
    ridge = np.full(labels.shape, 0.9, np.float32)
    joined, count = merge_fragments(labels, 3, ridge, same_class, merge)
    assert count == 1 and set(np.unique(joined)) == {1}


def _particle_and_halo_atom() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maps of a particle (class 1) and a 2x2 atom (class 2) whose foreground covers its 6x6
    blurred halo while its centre-ness stays on the atom (0.3 on the halo)."""
    shape = (40, 64)
    disk = _disk(shape, 20, 20, 8)
    atom = np.zeros(shape, bool)
    atom[20:22, 50:52] = True
    halo = np.zeros(shape, bool)
    halo[18:24, 48:54] = True
    probs = np.zeros((2, *shape), np.float32)
    probs[0][disk] = 0.95
    probs[1][halo] = 0.95
    edge = ndimage.distance_transform_edt(disk)
    centre = np.where(disk, edge / edge.max(), 0.0) + np.where(halo, 0.3, 0.0)
    centre[atom] = 1.0
    return probs, centre.astype(np.float32), disk, atom


def test_a_few_pixel_object_is_trimmed_to_its_core_and_other_classes_keep_every_pixel() -> None:
    probs, centre, disk, atom = _particle_and_halo_atom()
    names = ["particle", "single_site"]
    whole, _ = instances_from_maps(probs, centre, names, WatershedParams(0.5, 0.5))
    assert whole.count == 2 and (whole.labels > 0).sum() == disk.sum() + 36
    params = WatershedParams(0.5, 0.5, core_shares=(0.0, 0.5))
    trimmed, scores = instances_from_maps(probs, centre, names, params)
    assert trimmed.count == 2 and scores.size == 2
    site = trimmed.labels == 1 + int(np.flatnonzero(trimmed.class_ids == 2)[0])
    assert np.array_equal(site, atom)
    particle = trimmed.labels == 1 + int(np.flatnonzero(trimmed.class_ids == 1)[0])
    assert np.array_equal(particle, disk)


def test_trimming_keeps_each_regions_peak_and_skips_the_background() -> None:
    labels = np.array([[1, 1, 0, 2], [1, 1, 0, 2]], dtype=np.int32)
    centre = np.array([[0.2, 0.3, 0.0, 0.5], [0.1, 0.2, 0.0, 0.5]], dtype=np.float32)
    kept = trim_to_cores(labels, 2, centre, np.array([0.9, 0.9, 0.9]))
    # Region 1 keeps only its peak; region 2, flat, keeps everything; background stays 0.
    assert kept.tolist() == [[0, 1, 0, 2], [0, 0, 0, 2]]
    assert np.array_equal(trim_to_cores(labels, 2, centre, np.zeros(3)), labels)


def test_a_trimmed_object_keeps_only_the_piece_around_its_peak() -> None:
    # One region (id 2; id 1 has no pixels) with its core and a second bump above the share.
    labels = np.array([[2, 2, 2, 2, 2, 2]], dtype=np.int32)
    centre = np.array([[0.9, 1.0, 0.2, 0.2, 0.45, 0.45]], dtype=np.float32)
    kept = trim_to_cores(labels, 2, centre, np.array([0.0, 0.4, 0.4]))
    assert kept.tolist() == [[2, 2, 0, 0, 0, 0]]
    # A diagonal neighbour of the peak belongs to its piece.
    labels = np.ones((2, 2), dtype=np.int32)
    centre = np.array([[1.0, 0.1], [0.1, 0.8]], dtype=np.float32)
    assert trim_to_cores(labels, 1, centre, np.array([0.0, 0.5])).tolist() == [[1, 0], [0, 1]]
    empty = np.zeros((2, 2), dtype=np.int32)
    assert not trim_to_cores(empty, 0, centre, np.array([0.5])).any()


def test_a_hole_inside_one_object_is_filled_and_a_gap_between_objects_is_not() -> None:
    labels = np.zeros((12, 20), dtype=np.int32)
    labels[1:6, 1:6] = 4  # a ring with a one-pixel hole
    labels[3, 3] = 0
    labels[1:6, 8:11] = 5  # two objects enclosing a gap between them
    labels[1:6, 12:15] = 7
    labels[1, 11] = labels[5, 11] = 5
    labels[8:11, 1:4] = 2  # whole, untouched
    filled, count = fill_enclosed_holes(labels)
    assert count == 1 and filled[3, 3] == 4
    assert filled[2:5, 11].tolist() == [0, 0, 0]
    assert (filled != labels).sum() == 1
    whole = labels[7:, :]
    result, count = fill_enclosed_holes(whole)
    assert count == 0 and result is whole  # nothing to fill: the same array back
    # A ring open at the image edge encloses nothing.
    open_ring = labels[3:, :]
    assert fill_enclosed_holes(open_ring)[1] == 0


def test_a_ring_shaped_prediction_becomes_one_solid_object() -> None:
    """A particle whose bright centre the network did not recognise comes out whole."""
    disk = _disk((40, 40), 20, 20, 9)
    ring = disk & ~_disk((40, 40), 20, 20, 4)
    thin = disk & ~_disk((40, 40), 20, 20, 7)
    for shape in (ring, thin):
        probs = np.where(shape, 0.9, 0.1)[None].astype(np.float32)
        centre = np.where(shape, 0.8, 0.0).astype(np.float32)
        params = WatershedParams(0.5, 0.5)
        found, scores = instances_from_maps(
            probs, centre, ["particle"], params, score_threshold=0.5
        )
        assert found.count == 1
        assert np.array_equal(found.labels > 0, disk)
        # Scored on the pixels the network saw: a thin ring is not diluted by its hole.
        assert scores[0] == pytest.approx(0.9)
        # The size filters see the whole object.
        too_big, _ = instances_from_maps(
            probs, centre, ["particle"], params, max_area_px=shape.sum()
        )
        assert too_big.count == 0
