"""Burnt-in scale bars and text are found; real objects, clipped or not, are left alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.detection import api
from pipelines.detection.base import Detections
from pipelines.detection.postprocess import drop_instances_in
from pipelines.formats.masks import InstanceMasks
from pipelines.imaging.marks import burnt_in_marks
from pipelines.synthetic import generate, write_sample


def _to_8bit(image: np.ndarray, clip_top_pct: float) -> np.ndarray:
    """An 8-bit export that clips the brightest ``clip_top_pct`` % of the pixels."""
    low, high = np.percentile(image, [1.0, 100.0 - clip_top_pct])
    return (np.clip((image - low) / (high - low), 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("scenario", ["particles", "brightfield"])
def test_the_synthetic_scale_bar_and_its_text_are_found(scenario):
    sample = generate(scenario, 512, 0)
    marks = burnt_in_marks(sample.image)
    (box,) = sample.artefact_boxes
    assert marks.sum() > 0.3 * box.height * box.width  # the bar and the glyphs
    rows, cols = np.nonzero(marks)
    # Nothing outside the scale bar's box (widened by the 2-px margin).
    assert rows.min() >= box.top - 3 and rows.max() < box.bottom + 3
    assert cols.min() >= box.left - 3 and cols.max() < box.right + 3
    assert not (marks & (sample.truth.labels > 0)).any()


@pytest.mark.parametrize("clip_top_pct", [0.5, 2.0, 5.0])
def test_clipped_particles_are_not_marks(clip_top_pct):
    sample = generate("particles", 512, 3)
    exported = _to_8bit(sample.image.astype(np.float64), clip_top_pct)
    saturated = (exported == 255) & (sample.truth.labels > 0)
    assert saturated.sum() > 50  # the export really clips particles
    marks = burnt_in_marks(exported)
    assert not (marks & (sample.truth.labels > 0)).any()


@pytest.mark.parametrize("quality", [95, 85])
def test_the_scale_bar_is_found_in_a_jpeg_export(quality):
    sample = generate("particles", 1024, 0)
    buffer = io.BytesIO()
    Image.fromarray(_to_8bit(sample.image.astype(np.float64), 0.5)).save(
        buffer, format="JPEG", quality=quality
    )
    exported = np.asarray(Image.open(buffer))
    marks = burnt_in_marks(exported)
    (box,) = sample.artefact_boxes
    assert marks[box.slices()].mean() > 0.4
    assert not (marks & (sample.truth.labels > 0)).any()


def _sharp_disks(dark: bool, seed: int = 0, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Saturated disks with one-pixel edges (a binary-looking export): the risky case."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for index in range(1, 31):
        radius = rng.uniform(3, 10)
        cy, cx = rng.uniform(20, size - 20, 2)
        labels[(rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2] = index
    background = rng.normal(180 if dark else 80, 10, (size, size))
    image = np.where(labels > 0, 0 if dark else 255, background)
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.mark.parametrize("dark", [False, True])
def test_saturated_sharp_particles_are_not_marks_without_a_bar(dark):
    image, _ = _sharp_disks(dark)
    assert not burnt_in_marks(image).any()


@pytest.mark.parametrize("dark", [False, True])
def test_only_particles_beside_a_bar_can_be_taken_for_its_text(dark):
    image, labels = _sharp_disks(dark)
    image[496:504, 20:140] = 0 if dark else 255  # a scale bar in the bottom-left corner
    marks = burnt_in_marks(image)
    assert marks[496:504, 20:140].all()
    taken = np.unique(labels[marks & (labels > 0)])
    assert taken.size < 30
    # Whatever was taken reaches into the label zone: 4 bar thicknesses (32 px) above the bar,
    # 12 thicknesses (96 px) past its end.
    for index in taken[taken > 0]:
        rows, cols = np.nonzero(labels == index)
        assert rows.max() >= 496 - 32 and cols.min() < 140 + 96


def test_an_info_strip_and_its_text_are_marks():
    sample = generate("particles", 512, 1)
    image = _to_8bit(sample.image.astype(np.float64), 0.5)
    strip = np.zeros((40, 512), np.uint8)
    strip[10:26, 20:30] = 255
    strip[10:26, 40:60] = 200  # grey text too
    marks = burnt_in_marks(np.vstack([image, strip]))
    assert marks[512:].all()
    assert not (marks[:512] & (sample.truth.labels > 0)).any()


def test_images_without_marks_and_flat_images_give_empty_masks():
    rng = np.random.default_rng(0)
    noise = rng.normal(100, 10, (64, 64))
    assert not burnt_in_marks(noise).any()
    assert not burnt_in_marks(np.full((32, 32), 7, np.uint8)).any()
    assert not burnt_in_marks(np.clip(noise, 100, None)).any()  # clipped background
    assert not burnt_in_marks(np.array([[np.nan, 1.0], [2.0, 3.0]])).any()


def test_objects_on_marks_are_dropped_and_others_kept():
    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6] = 1
    labels[10:14, 10:14] = 2
    instances = InstanceMasks(labels, np.array([1, 1], np.int32), ["particle"])
    region = np.zeros((20, 20), bool)
    region[9:15, 9:15] = True
    kept, scores, dropped = drop_instances_in(instances, np.array([0.9, 0.8], np.float32), region)
    assert dropped == 1 and kept.count == 1
    assert scores.tolist() == pytest.approx([0.9])
    assert (kept.labels[2:6, 2:6] == 1).all() and kept.labels.max() == 1


def test_detect_ignores_objects_on_the_scale_bar(tmp_path):
    sample = generate("particles+sites", 512, 0)
    paths = write_sample(sample, tmp_path / "sample")
    detector = api.load_detector(
        api.train([paths["labels"]], tmp_path / "model", engine="threshold")
    )
    kept_all = api.detect(detector, sample.image, {"ignore_scale_bar": False})
    detections = api.detect(detector, sample.image)
    assert isinstance(detections, Detections)
    assert detections.ignored_on_scale_bar > 0
    assert detections.count == kept_all.count - detections.ignored_on_scale_bar
    on_bar = burnt_in_marks(sample.image)
    found = detections.instances.labels
    for instance in np.unique(found[on_bar & (found > 0)]):
        assert (on_bar & (found == instance)).sum() < 0.5 * (found == instance).sum()


def _detections_on(image_shape, boxes):
    labels = np.zeros(image_shape, np.int32)
    for index, (rows, cols) in enumerate(boxes, start=1):
        labels[rows, cols] = index
    instances = InstanceMasks(labels, np.ones(len(boxes), np.int32), ["particle"])
    return Detections(instances=instances, scores=np.full(len(boxes), 0.9, np.float32))


def test_when_most_objects_would_go_nothing_is_dropped():
    rng = np.random.default_rng(0)
    image = rng.normal(80, 10, (200, 200))
    image[180:188, 20:150] = 255  # a scale bar
    image = np.clip(image, 0, 255).astype(np.uint8)
    on_bar = [(slice(181, 187), slice(22 + 9 * i, 28 + 9 * i)) for i in range(12)]
    elsewhere = [(slice(20, 26), slice(20 + 9 * i, 26 + 9 * i)) for i in range(8)]
    # 12 of 20 on the bar: more than 10 and more than a fifth, so it is not trusted.
    kept = api._without_scale_bar(image, _detections_on(image.shape, on_bar + elsewhere))
    assert kept.count == 20 and kept.ignored_on_scale_bar == 0
    # 5 of 20: dropped.
    few = on_bar[:5] + elsewhere
    many_others = [(slice(60, 66), slice(20 + 9 * i, 26 + 9 * i)) for i in range(15)]
    dropped = api._without_scale_bar(image, _detections_on(image.shape, few + many_others))
    assert dropped.ignored_on_scale_bar == 5 and dropped.count == 23


def test_a_small_scale_bar_is_trusted_even_when_its_fragments_outnumber_the_objects():
    """On a sparse image the glyph fragments can be more than a fifth of all detections; a
    marked region this small cannot hide that many real objects, so they are dropped."""
    rng = np.random.default_rng(1)
    image = rng.normal(80, 10, (600, 600))
    image[580:588, 20:150] = 255  # the same bar as above, on a 9x larger image
    image = np.clip(image, 0, 255).astype(np.uint8)
    assert burnt_in_marks(image).mean() < api._SMALL_MARKS_SHARE
    on_bar = [(slice(581, 587), slice(22 + 9 * i, 28 + 9 * i)) for i in range(12)]
    elsewhere = [(slice(20, 26), slice(20 + 9 * i, 26 + 9 * i)) for i in range(8)]
    dropped = api._without_scale_bar(image, _detections_on(image.shape, on_bar + elsewhere))
    assert dropped.ignored_on_scale_bar == 12 and dropped.count == 8
    assert (dropped.instances.labels[20:26] > 0).sum() == 8 * 36
