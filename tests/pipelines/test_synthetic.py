"""Synthetic generator: determinism, exact truth files, realistic counts, complete crops."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import InvalidInput
from pipelines.formats.labelme import read_labelme
from pipelines.formats.masks import InstanceMasks, shapes_to_instances
from pipelines.imaging import load_image
from pipelines.synthetic import (
    PARTICLE,
    SCENARIOS,
    SINGLE_SITE,
    ScenarioConfig,
    SyntheticSample,
    exact_polygons,
    generate,
    get_scenario,
    list_scenarios,
    write_sample,
)

SMALL_PX = 320


@pytest.fixture(scope="module")
def small_samples() -> dict[str, SyntheticSample]:
    return {name: generate(name, size_px=SMALL_PX, seed=5) for name in list_scenarios()}


def _bytes(folder: Path) -> dict[str, bytes]:
    return {
        name: (folder / name).read_bytes() for name in ("image.tif", "labels.json", "truth.json")
    }


def test_registry_lists_every_scenario_with_a_frozen_config() -> None:
    names = list_scenarios()
    assert {"particles", "particles+sites", "agglomerates", "uneven", "brightfield"} <= set(names)
    for name in names:
        config = SCENARIOS[name]
        assert config.name == name and config.description
        with pytest.raises(dataclasses.FrozenInstanceError):
            config.dose_counts = 1.0  # type: ignore[misc]


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_sample(generate("particles", size_px=256, seed=3), tmp_path / run)
    write_sample(generate("particles", size_px=256, seed=4), tmp_path / "c")
    first, second, other = (_bytes(tmp_path / run) for run in "abc")
    assert first == second
    for name in first:
        assert first[name] != other[name], name


def test_layout_does_not_depend_on_noise_settings() -> None:
    normal = generate("particles", size_px=256, seed=2)
    low_dose = generate("particles", size_px=256, seed=2, dose_counts=5.0)
    assert np.array_equal(normal.truth.labels, low_dose.truth.labels)
    assert not np.array_equal(normal.image, low_dose.image)


@pytest.mark.parametrize("name", list_scenarios())
def test_truth_json_rasterises_to_the_truth_masks_exactly(
    name: str, small_samples: dict[str, SyntheticSample], tmp_path: Path
) -> None:
    sample = small_samples[name]
    paths = write_sample(sample, tmp_path)
    document = read_labelme(paths["truth"])  # validates: inside the image, simple polygons
    assert document.image_path == "image.tif"
    assert document.extra["synthetic"]["scenario"] == name
    again = shapes_to_instances(
        document.shapes, SMALL_PX, SMALL_PX, class_names=sample.truth.class_names
    )
    assert np.array_equal(again.labels, sample.truth.labels)
    assert np.array_equal(again.class_ids, sample.truth.class_ids)
    assert sample.image.dtype == np.uint16 and sample.image.shape == (SMALL_PX, SMALL_PX)
    areas = np.bincount(sample.truth.labels.ravel())[1:]
    assert areas.size == sample.truth.count and (areas > 0).all()


@pytest.mark.parametrize("name", list_scenarios())
def test_crops_lie_inside_and_every_object_in_them_is_outlined(
    name: str, small_samples: dict[str, SyntheticSample]
) -> None:
    sample = small_samples[name]
    labels = sample.user_labels
    boxes = labels.crop_boxes()
    assert boxes == sample.crop_boxes and len(boxes) >= 1
    assert len(labels.crop_shapes) == len(boxes)  # no crop lost to clipping
    shapes = labels.shapes
    starts = [i for i, shape in enumerate(shapes) if shape.is_crop] + [len(shapes)]
    for crop_index, box in enumerate(boxes):
        assert 0 <= box.left < box.right <= SMALL_PX and 0 <= box.top < box.bottom <= SMALL_PX
        for other in boxes[crop_index + 1 :]:
            assert (
                box.right <= other.left
                or other.right <= box.left
                or (box.bottom <= other.top or other.bottom <= box.top)
            )
        for artefact in sample.artefact_boxes:
            assert (
                box.right <= artefact.left
                or artefact.right <= box.left
                or (box.bottom <= artefact.top or artefact.bottom <= box.top)
            )
        truth_window = sample.truth.labels[box.slices()]
        in_crop = np.unique(truth_window[truth_window > 0])
        outlines = shapes[starts[crop_index] + 1 : starts[crop_index + 1]]
        assert len(outlines) == in_crop.size
        assert [s.label for s in outlines] == [sample.truth.class_of(int(i)) for i in in_crop]
        drawn = shapes_to_instances(outlines, SMALL_PX, SMALL_PX).labels
        outside = np.ones((SMALL_PX, SMALL_PX), dtype=bool)
        outside[box.slices()] = False
        assert not drawn[outside].any()  # clipped to the crop
        agree = (drawn[box.slices()] > 0) == (truth_window > 0)
        assert agree.mean() > 0.99


def test_particles_density_and_labels_match_the_paper_setting() -> None:
    sample = generate("particles", size_px=2048, seed=0)
    assert sample.truth.class_names == [PARTICLE]
    assert 600 <= sample.truth.count <= 700
    assert len(sample.crop_boxes) == 2
    assert 30 <= sample.labelled_count <= 50
    assert sample.nm_per_px == pytest.approx(0.25)


def test_small_particles_image_keeps_density_and_a_crop_of_ten() -> None:
    sample = generate("particles", size_px=512, seed=0)
    per_mpx = sample.truth.count / (512 * 512 / 1e6)
    assert 120 <= per_mpx <= 180
    shapes = sample.user_labels.shapes
    starts = [i for i, shape in enumerate(shapes) if shape.is_crop] + [len(shapes)]
    per_crop = [b - a - 1 for a, b in itertools.pairwise(starts)]
    assert max(per_crop) >= 10


def test_particles_and_sites_scenario_labels_both_classes() -> None:
    sample = generate("particles+sites", size_px=2048, seed=0)
    truth = sample.truth
    assert truth.class_names == [PARTICLE, SINGLE_SITE]
    particles = int(np.count_nonzero(truth.class_ids == 1))
    sites = int(np.count_nonzero(truth.class_ids == 2))
    assert 5 <= particles <= 9 and 250 <= sites <= 300
    labelled = [shape.label for shape in sample.user_labels.object_shapes]
    assert len(sample.crop_boxes) == 3
    assert 1 <= labelled.count(PARTICLE) <= 3
    assert 20 <= labelled.count(SINGLE_SITE) <= 40
    site_areas = np.bincount(truth.labels.ravel())[1:][truth.class_ids == 2]
    assert site_areas.max() <= 9  # single atoms are 1-3 px across


def test_agglomerates_have_touching_particles() -> None:
    sample = generate("agglomerates", size_px=512, seed=1)
    labels = sample.truth.labels
    left, right = labels[:, :-1], labels[:, 1:]
    touching = (left > 0) & (right > 0) & (left != right)
    pairs = {tuple(sorted(p)) for p in zip(left[touching], right[touching], strict=True)}
    assert len(pairs) >= 0.3 * sample.truth.count


def test_scale_bar_is_burnt_in_but_not_an_object() -> None:
    sample = generate("particles", size_px=512, seed=0)
    (box,) = sample.artefact_boxes
    assert not sample.truth.labels[box.slices()].any()
    assert (sample.image[box.slices()] == sample.image.max()).sum() >= 50
    dark = generate("brightfield", size_px=512, seed=0)
    (box,) = dark.artefact_boxes
    assert (dark.image[box.slices()] == dark.image.min()).sum() >= 50
    plain = generate("particles", size_px=512, seed=0, scale_bar=False)
    assert plain.artefact_boxes == []


def test_brightfield_particles_are_darker_than_the_support() -> None:
    sample = generate("brightfield", size_px=512, seed=0)
    inside = sample.image[sample.truth.labels > 0].mean()
    outside = sample.image[sample.truth.labels == 0].mean()
    assert inside < 0.8 * outside
    haadf = generate("particles", size_px=512, seed=0)
    assert haadf.image[haadf.truth.labels > 0].mean() > haadf.image[haadf.truth.labels == 0].mean()


def test_calibration_round_trips_through_the_tiff(tmp_path: Path) -> None:
    sample = generate("sizes", size_px=256, seed=0)
    paths = write_sample(sample, tmp_path)
    loaded = load_image(paths["image"])
    assert loaded.calibration.nm_per_px == pytest.approx(0.5)
    assert np.array_equal(loaded.pixels, sample.image)


def test_written_files_open_in_labelme(tmp_path: Path) -> None:
    from labelme._label_file import LabelFile

    paths = write_sample(generate("particles+sites", size_px=256, seed=1), tmp_path)
    for key in ("labels", "truth"):
        label_file = LabelFile(filename=str(paths[key]))
        assert label_file.shapes
    crops = [s for s in LabelFile(filename=str(paths["labels"])).shapes if s["label"] == "crop"]
    assert crops and all(s["shape_type"] == "rectangle" for s in crops)


def test_overrides_and_bad_arguments() -> None:
    dense = generate("particles", size_px=256, seed=0, particles_per_mpx=600.0)
    sparse = generate("particles", size_px=256, seed=0)
    assert dense.truth.count > 2 * sparse.truth.count
    with pytest.raises(InvalidInput, match="unknown scenario setting"):
        generate("particles", size_px=256, nonsense=1)
    with pytest.raises(InvalidInput, match="unknown scenario 'nope'"):
        generate("nope", size_px=256)
    with pytest.raises(InvalidInput, match="image size"):
        generate("particles", size_px=16)
    with pytest.raises(InvalidInput, match="seed"):
        generate("particles", size_px=256, seed=-1)
    assert isinstance(get_scenario("uneven"), ScenarioConfig)


def test_exact_polygons_take_the_masks_from_the_polygons() -> None:
    """A mask a polygon cannot describe (a ring) comes back as the polygon's pixels."""
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[5:20, 5:20] = 1
    labels[10:15, 10:15] = 0  # hole: the outline fills it
    labels[22:30, 22:35] = 2
    truth, shapes = exact_polygons(
        InstanceMasks(labels, np.array([1, 1], dtype=np.int32), [PARTICLE])
    )
    assert len(shapes) == 2
    again = shapes_to_instances(shapes, 40, 40, class_names=[PARTICLE])
    assert np.array_equal(again.labels, truth.labels)
    assert (truth.labels[10:15, 10:15] == 1).all()
    assert np.array_equal(truth.labels == 2, labels == 2)
