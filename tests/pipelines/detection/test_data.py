"""Training data from crops: only the crops supervise, unlabelled pixels inside are background."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.detection.augment import AugmentConfig, PatchSampler
from pipelines.detection.data import centre_distance, load_training_set, objects_are_dark
from pipelines.errors import InvalidLabels
from pipelines.formats.labelme import Box, new_document, write_labelme

from .conftest import make_sample, write_labelled


def test_crop_masking_marks_only_crops_valid_and_unlabelled_crop_pixels_background(tmp_path):
    sample = make_sample(96, seed=1, n_particles=8)
    box = Box(left=10, top=20, right=60, bottom=70)
    data = load_training_set([write_labelled(tmp_path, sample, [box])])
    item = data.images[0]
    valid = item.valid_mask()
    assert valid[box.slices()].all()
    assert valid.sum() == box.area_px
    # Objects outside the crop are not in the labels: outside is unknown, not background.
    outside = np.setdiff1d(np.unique(sample.truth.labels[~valid]), [0])
    only_outside = [i for i in outside if not (sample.truth.labels[box.slices()] == i).any()]
    assert only_outside, "the test image needs objects outside the crop"
    for instance in only_outside:
        assert not (item.instances.labels[sample.truth.labels == instance]).any()

    sampler = PatchSampler(data, patch_px=32, invert=False, augment=AugmentConfig(), seed=0)
    for _ in range(20):
        patch = sampler.sample()
        assert patch.image.shape == patch.classes.shape == patch.valid.shape == (32, 32)
        assert patch.valid.any()
        # Every object pixel the loss sees is a labelled object; the rest inside is background.
        assert set(np.unique(patch.classes[patch.valid])) <= {0, 1}


def test_file_without_crop_counts_as_labelled_everywhere(tmp_path):
    sample = make_sample(64, seed=2, n_particles=4)
    data = load_training_set([write_labelled(tmp_path, sample, None)])
    assert data.images[0].valid_mask().all()
    assert data.object_count() == {"particle": sample.truth.count}


def test_no_crops_and_no_objects_is_a_clear_error(tmp_path):
    sample = make_sample(64, seed=3, n_particles=3)
    json_path = write_labelled(tmp_path, sample, [])
    document = new_document([], "image.tif", 64, 64)
    write_labelme(json_path, document)
    with pytest.raises(InvalidLabels, match="no outlined object"):
        load_training_set([json_path])


def test_objects_only_outside_crops_is_a_clear_error(tmp_path):
    sample = make_sample(96, seed=4, n_particles=3, radius_px=(3, 4))
    empty = next(
        Box(c, r, c + 12, r + 12)
        for r in range(0, 84, 4)
        for c in range(0, 84, 4)
        if not sample.truth.labels[r : r + 12, c : c + 12].any()
    )
    json_path = write_labelled(tmp_path, sample, None)
    from pipelines.formats.labelme import crop_rectangle, read_labelme

    document = read_labelme(json_path)
    document.shapes.append(crop_rectangle(empty))
    write_labelme(json_path, document)
    with pytest.raises(InvalidLabels, match="inside a crop"):
        load_training_set([json_path])


def test_centre_distance_is_one_at_centres_and_splits_touching_objects():
    labels = np.zeros((20, 30), dtype=np.int32)
    labels[5:15, 5:15] = 1
    labels[5:15, 15:25] = 2  # touches object 1 along a column
    centre = centre_distance(labels)
    assert centre.max() == pytest.approx(1.0)
    for instance in (1, 2):
        assert centre[labels == instance].max() == pytest.approx(1.0)
    assert centre[labels == 0].max() == 0.0
    # At the shared edge both objects fall to their lowest value: a valley the watershed splits.
    assert centre[10, 14] < 0.25 and centre[10, 15] < 0.25


def test_dark_objects_are_detected_from_the_crops(tmp_path):
    bright = make_sample(64, seed=5, n_particles=5)
    dark = make_sample(64, seed=5, n_particles=5, dark=True)
    box = [Box(0, 0, 64, 64)]
    assert not objects_are_dark(load_training_set([write_labelled(tmp_path / "b", bright, box)]))
    assert objects_are_dark(load_training_set([write_labelled(tmp_path / "d", dark, box)]))
