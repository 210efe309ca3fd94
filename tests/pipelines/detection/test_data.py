"""Training data from crops: only the crops supervise, unlabelled pixels inside are background."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from pipelines.detection.augment import AugmentConfig, PatchSampler, object_contrast
from pipelines.detection.data import centre_distance, load_training_set, objects_are_dark
from pipelines.errors import InvalidLabels
from pipelines.formats.labelme import Box, new_document, write_labelme

from .conftest import make_sample, write_labelled

# Every intensity augmentation off: pixel values change only where a test lets them.
INTENSITY_OFF = AugmentConfig(
    gamma_range=(1.0, 1.0),
    contrast_range=(1.0, 1.0),
    offset_range=(0.0, 0.0),
    gradient_max=0.0,
    noise_sigma_max=0.0,
    blur_probability=0.0,
)


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


def test_object_contrast_scales_each_object_against_an_uneven_background():
    """Objects get their own contrast factor; the sloped background outside them is kept."""
    size = 96
    rows, cols = np.mgrid[:size, :size]
    background = 0.1 + 0.004 * cols  # a ramp across the patch
    instances = np.zeros((size, size), np.int32)
    instances[(rows - 30) ** 2 + (cols - 30) ** 2 <= 36] = 1
    instances[(rows - 60) ** 2 + (cols - 66) ** 2 <= 36] = 2
    image = (background + 0.8 * (instances > 0)).astype(np.float32)
    augment = AugmentConfig(object_contrast_range=(0.4, 1.2))
    valid = np.ones((size, size), dtype=bool)
    out = object_contrast(image, instances, valid, np.random.default_rng(3), augment)
    far = ndimage.distance_transform_edt(instances == 0) > 6
    assert np.allclose(out[far], image[far], atol=1e-5)
    gains = []
    for row, col in ((30, 30), (60, 66)):
        gain = (out[row, col] - background[row, col]) / 0.8
        assert 0.4 - 0.05 <= gain <= 1.2 + 0.05
        gains.append(gain)
    assert abs(gains[0] - gains[1]) > 1e-3  # each object its own factor
    empty = np.zeros((size, size), np.int32)
    assert object_contrast(image, empty, valid, np.random.default_rng(3), augment) is image
    # only the eligible object (a class with few examples) changes
    eligible = np.array([False, False, True])
    only_second = object_contrast(
        image, instances, valid, np.random.default_rng(3), augment, eligible
    )
    assert np.allclose(only_second[instances == 1], image[instances == 1], atol=1e-5)
    assert not np.allclose(only_second[instances == 2], image[instances == 2], atol=1e-3)
    none = np.zeros(3, dtype=bool)
    assert (
        object_contrast(image, instances, valid, np.random.default_rng(3), augment, none) is image
    )


def test_only_classes_with_few_examples_get_their_own_object_contrast(tmp_path):
    """12 labelled particles show the brightness range; 3 labelled sites do not."""
    sample = make_sample(160, seed=2, n_particles=12, n_sites=3)
    data = load_training_set([write_labelled(tmp_path, sample, [Box(0, 0, 160, 160)])])
    assert [data.object_areas_px(whole_only=True)[n].size for n in data.class_names] == [12, 3]
    sampler = PatchSampler(data, patch_px=32, invert=False, augment=AugmentConfig(), seed=0)
    item, instances = sampler.items[0], data.images[0].instances
    assert not item.few_examples[0]
    assert np.array_equal(item.few_examples[1:], instances.class_ids == 2)


def test_the_sampler_changes_the_contrast_of_rare_class_objects_only(tmp_path):
    """With every other augmentation off, only the 3 labelled sites' pixels change."""
    sample = make_sample(160, seed=2, n_particles=12, n_sites=3)
    data = load_training_set([write_labelled(tmp_path, sample, [Box(0, 0, 160, 160)])])
    plain = replace(
        INTENSITY_OFF,
        flips=False,
        rotations=False,
        scale_probability=0.0,
        object_contrast_range=(0.3, 0.3),
    )
    particle_ids = np.flatnonzero(data.images[0].instances.class_ids == 1) + 1
    sites_seen = 0
    for seed in range(30):  # one sample per seed: both samplers draw the same window
        never = replace(plain, object_contrast_probability=0.0)
        always = replace(plain, object_contrast_probability=1.0)
        before = PatchSampler(data, 64, False, never, seed=seed).sample()
        after = PatchSampler(data, 64, False, always, seed=seed).sample()
        assert np.array_equal(before.instances, after.instances)
        changed = np.abs(after.image - before.image) > 1e-4
        particles = np.isin(before.instances, particle_ids)
        assert not changed[particles].any()
        sites = (before.instances > 0) & ~particles
        if sites.any():
            sites_seen += 1
            assert changed[sites].any()
    assert sites_seen > 0


def test_flips_turns_and_zoom_keep_the_image_and_every_target_aligned():
    """The image is made from the targets (three grey levels), so after any augmentation each
    pixel's level must still say what its targets say."""
    from pipelines.detection.data import LabelledImage, TrainingSet, normalise
    from pipelines.formats.masks import InstanceMasks

    sample = make_sample(128, seed=5, n_particles=10)
    labels = sample.truth.labels
    crop = Box(8, 16, 100, 120)
    inside = np.zeros(labels.shape, dtype=bool)
    inside[crop.slices()] = True
    pixels = (1000 + 1000 * inside + 2000 * (labels > 0)).astype(np.uint16)
    instances = InstanceMasks(labels, sample.truth.class_ids, sample.truth.class_names)
    data = TrainingSet([LabelledImage("image.json", pixels, instances, [crop])], ["particle"])
    levels = normalise(np.array([1000.0, 2000.0, 3000.0, 4000.0]))
    object_level = (levels[1] + levels[2]) / 2  # objects are 3000 or 4000
    geometry_only = replace(
        INTENSITY_OFF,
        scale_range=(0.8, 1.25),
        scale_probability=1.0,
        object_contrast_probability=0.0,
    )
    sampler = PatchSampler(data, patch_px=48, invert=False, augment=geometry_only, seed=1)
    for _ in range(40):
        patch = sampler.sample()
        assert np.array_equal(patch.instances > 0, patch.classes > 0)
        # Centre-ness is zoomed smoothly: only an object's low edge values spill one pixel.
        assert (patch.centre[patch.instances == 0] < 0.5).all()
        valid = patch.valid
        assert valid.any()
        # Inside the crop the image is 2000 or 4000, never the outside background's 1000, and
        # objects are the bright pixels; the zoom blends a few edge pixels.
        in_crop = patch.image > (levels[0] + levels[1]) / 2
        agree = (patch.image > object_level) == (patch.classes > 0)
        assert in_crop[valid].mean() > 0.95 and agree[valid].mean() > 0.93
    turned = PatchSampler(data, 48, False, replace(geometry_only, scale_probability=0.0), seed=2)
    for _ in range(20):
        patch = turned.sample()
        in_crop = patch.image > (levels[0] + levels[1]) / 2
        agree = (patch.image > object_level) == (patch.classes > 0)
        assert in_crop[patch.valid].all() and agree[patch.valid].all()
        assert not (patch.centre > 0)[patch.instances == 0].any()


def test_normalise_scales_any_range_and_refuses_nan() -> None:
    """A height map in metres spans 1e-8: it is scaled like any other, not taken as flat."""
    from pipelines.detection.data import normalise
    from pipelines.errors import InvalidImage

    heights = np.linspace(0.0, 20e-9, 100, dtype=np.float32).reshape(10, 10)
    scaled = normalise(heights)
    assert scaled.min() == pytest.approx(0.0, abs=0.02)
    assert scaled.max() == pytest.approx(1.0, abs=0.02)
    assert not normalise(np.full((4, 4), 7.0, dtype=np.float32)).any()
    with pytest.raises(InvalidImage, match="NaN or infinite"):
        normalise(np.array([[1.0, np.inf], [2.0, 3.0]], dtype=np.float32))
