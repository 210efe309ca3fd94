"""Dataset sources, loading, the stratified split and every bad dataset the issue lists."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipelines.classification.datasets import (
    list_training_samples,
    load_training_set,
    stratified_split,
)
from pipelines.classification.prediction_inputs import list_prediction_samples
from pipelines.classification.samples import object_boxes, unpacked_inputs
from pipelines.errors import InvalidInput
from pipelines.formats.labelme import Shape, new_document, read_labelme
from pipelines.synthetic_classes import SyntheticClassificationSet
from tests.pipelines.classification.conftest import object_document, save_png

PERCENTILES = (1.0, 99.8)


def test_folder_per_class(class_folder: SyntheticClassificationSet) -> None:
    listing = list_training_samples([class_folder.root])
    assert listing.source == "folders"
    assert listing.class_counts() == {"agglomerates": 3, "rods": 3, "spheres": 3}
    assert listing.samples[0].name == "agglomerates/agglomerates_000.png"
    data = load_training_set(listing, 32, PERCENTILES)
    assert data.images.shape == (9, 32, 32) and data.images.dtype == np.float32
    assert data.classes == ["agglomerates", "rods", "spheres"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0


def _zip_folder(folder: Path, zip_path: Path, wrap: str | None) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            archive.write(path, f"{wrap}/{relative}" if wrap else relative)
        archive.writestr("__MACOSX/._rods", b"resource fork")
    return zip_path


@pytest.mark.parametrize("wrap", [None, "my_dataset"])
def test_zip_of_class_folders(
    class_folder: SyntheticClassificationSet, tmp_path: Path, wrap: str | None
) -> None:
    archive = _zip_folder(class_folder.root, tmp_path / "data.zip", wrap)
    with unpacked_inputs([archive]) as resolved:
        listing = list_training_samples(resolved)
        assert listing.class_counts() == {"agglomerates": 3, "rods": 3, "spheres": 3}
        assert load_training_set(listing, 32, PERCENTILES).images.shape == (9, 32, 32)
    assert not resolved[0].exists()  # unpacked files are cleaned up


def test_damaged_zip_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "data.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with (
        pytest.raises(InvalidInput, match=r"data\.zip is not a readable zip"),
        unpacked_inputs([bad]),
    ):
        pass


def test_labelme_flags_saved_by_labelme(labelme_flag_files: list[Path], caplog) -> None:
    caplog.set_level(logging.WARNING)
    for inputs in (labelme_flag_files, [labelme_flag_files[0].parent]):
        listing = list_training_samples(inputs)
        assert listing.source == "labelme-flags"
        assert listing.class_counts() == {"rods": 3, "spheres": 3}
        assert [s.name for s in listing.skipped] == ["unsorted.json"]
        assert "no image-level flag" in listing.skipped[0].reason
    assert "unsorted.json" in caplog.text
    data = load_training_set(listing, 32, PERCENTILES)
    assert data.classes == ["rods", "spheres"] and len(data.labels) == 6


def test_labelme_image_data_used_when_image_file_is_missing(tmp_path: Path) -> None:
    from labelme._label_file import LabelFile

    from pipelines.synthetic_classes import synthetic_class_image

    for class_name in ("rods", "spheres"):
        for index in range(2):
            image = save_png(tmp_path / "tmp.png", synthetic_class_image(class_name, 0, index, 40))
            LabelFile().save(
                filename=str(tmp_path / f"{class_name}{index}.json"),
                shapes=[],
                image_path=f"{class_name}{index}.png",
                image_height=40,
                image_width=40,
                image_data=image.read_bytes(),
                flags={class_name: True},
            )
    (tmp_path / "tmp.png").unlink()
    data = load_training_set(list_training_samples([tmp_path]), 32, PERCENTILES)
    assert data.class_counts() == {"rods": 2, "spheres": 2}


def test_object_crops_from_labelme(tmp_path: Path) -> None:
    json_path = object_document(tmp_path)
    listing = list_training_samples([json_path], crop_objects=True, crop_margin_fraction=0.25)
    assert listing.source == "labelme-objects"
    assert listing.class_counts() == {"long": 3, "round": 3}  # the crop rectangle is ignored
    first = listing.samples[0]
    assert first.name == "grid.json shapes[1]" and first.class_name == "round"
    # circle of radius 6 at (16, 16): extent 12 px, margin 3 px each side → side 18 px
    assert (first.box.left, first.box.top, first.box.right, first.box.bottom) == (7, 7, 26, 26)
    data = load_training_set(listing, 32, PERCENTILES)
    assert data.images.shape == (6, 32, 32)
    # a crop is centred on its object: the centre is bright, the corner dark
    assert data.images[0][16, 16] > 0.9 and data.images[0][1, 1] < 0.2


def test_object_boxes_group_shapes_and_clip_to_image() -> None:
    shapes = [
        Shape("particle", [[2, 2], [8, 2], [8, 8]], group_id=1),
        Shape("particle", [[10, 10], [14, 10], [14, 14]], group_id=1),  # same object
        Shape("particle", [[30, 30], [38, 30], [38, 38]]),
        Shape("single_site", [[20, 20]], shape_type="point"),  # no area: not cropped
    ]
    document = new_document(shapes, "image.png", image_height=40, image_width=40)
    boxes = object_boxes(document, margin_fraction=0.5)
    assert [(index, label) for index, label, _ in boxes] == [(0, "particle"), (2, "particle")]
    grouped = boxes[0][2]
    assert (grouped.left, grouped.top) == (0, 0)  # clipped at the image edge
    assert grouped.right >= 14 and grouped.bottom >= 14
    assert boxes[1][2].right == 40 and boxes[1][2].bottom == 40


def test_stratified_split_keeps_every_class_on_both_sides() -> None:
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2)
    train, val = stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, seed=0)
    assert np.bincount(labels[val]).tolist() == [2, 1, 1]
    assert np.bincount(labels[train]).tolist() == [8, 4, 1]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(17))
    again = stratified_split(labels, ["a", "b", "c"], val_fraction=0.2, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip((train, val), again, strict=True))
    everything, none = stratified_split(labels, ["a", "b", "c"], val_fraction=0.0, seed=0)
    assert len(everything) == 17 and len(none) == 0


def test_class_with_one_image_cannot_be_split() -> None:
    labels = np.array([0, 0, 0, 1])
    with pytest.raises(InvalidInput, match=r"class 'rare' has 1 image; at least 2 .*val_fraction"):
        stratified_split(labels, ["common", "rare"], val_fraction=0.2, seed=0)


def test_one_class_only(class_folder: SyntheticClassificationSet) -> None:
    for name in ("rods", "spheres"):
        shutil.rmtree(class_folder.root / name)
    listing = list_training_samples([class_folder.root])
    with pytest.raises(InvalidInput, match=r"only one class \('agglomerates'\).*at least two"):
        load_training_set(listing, 32, PERCENTILES)


def test_empty_class_folder(class_folder: SyntheticClassificationSet) -> None:
    (class_folder.root / "sintered").mkdir()
    (class_folder.root / "sintered" / "notes.txt").write_text("to do")
    with pytest.raises(InvalidInput, match=r"class folder 'sintered' .* holds no images"):
        list_training_samples([class_folder.root])


def test_corrupt_image_is_skipped_with_a_warning_naming_it(
    class_folder: SyntheticClassificationSet, caplog
) -> None:
    (class_folder.root / "rods" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    caplog.set_level(logging.WARNING)
    data = load_training_set(list_training_samples([class_folder.root]), 32, PERCENTILES)
    assert data.class_counts() == {"agglomerates": 3, "rods": 3, "spheres": 3}
    assert [s.name for s in data.skipped] == ["rods/broken.png"]
    assert "rods/broken.png" in caplog.text


def test_class_whose_images_are_all_corrupt(class_folder: SyntheticClassificationSet) -> None:
    for path in (class_folder.root / "rods").iterdir():
        path.write_bytes(b"garbage")
    listing = list_training_samples([class_folder.root])
    with pytest.raises(InvalidInput, match=r"class 'rods' has no readable images"):
        load_training_set(listing, 32, PERCENTILES)


def test_mixed_sizes_and_bit_depths(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_png(tmp_path / "a" / "wide_8bit.png", rng.random((20, 70)))
    tifffile.imwrite(tmp_path / "a" / "tall_16bit.tif", rng.integers(0, 65535, (90, 30), np.uint16))
    tifffile.imwrite(
        tmp_path / "b" / "float.tif", rng.normal(5e3, 1e3, (33, 33)).astype(np.float32)
    )
    tifffile.imwrite(tmp_path / "b" / "flat.tif", np.full((16, 16), 7, np.uint16))
    data = load_training_set(list_training_samples([tmp_path]), 32, PERCENTILES)
    assert data.images.shape == (4, 32, 32)
    assert np.isfinite(data.images).all()
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    image = dict(zip(data.names, data.images, strict=True))
    assert image["a/wide_8bit.png"].max() == 1.0  # each image is stretched to its percentiles
    assert image["b/float.tif"].max() == 1.0
    assert image["b/flat.tif"].max() == 0.0  # a flat image stays flat, no division by zero


def test_loose_images_in_the_root_are_ignored_with_a_warning(
    class_folder: SyntheticClassificationSet, caplog
) -> None:
    shutil.copy(class_folder.files["rods"][0], class_folder.root / "stray.png")
    caplog.set_level(logging.WARNING)
    listing = list_training_samples([class_folder.root])
    assert len(listing.samples) == 9
    assert "stray.png" in caplog.text


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (
            lambda root: save_png(root / "single.png", np.zeros((8, 8))),
            "not a folder, zip or LabelMe",
        ),
        (lambda root: root, "no class sub-folders or LabelMe files"),
    ],
)
def test_unusable_inputs(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        list_training_samples([make(tmp_path)])


def test_prediction_listing_scores_known_class_folders_and_reports_unknown_ones(
    class_folder: SyntheticClassificationSet, caplog
) -> None:
    (class_folder.root / "cubes").mkdir()
    shutil.copy(class_folder.files["rods"][0], class_folder.root / "cubes" / "cube.png")
    caplog.set_level(logging.WARNING)
    listing = list_prediction_samples([class_folder.root], ["rods", "spheres", "agglomerates"])
    assert listing.unknown_classes == ["cubes"]
    assert "cubes" in caplog.text
    truths = {s.name: s.class_name for s in listing.samples}
    assert truths["cubes/cube.png"] is None
    assert truths["rods/rods_000.png"] == "rods"


def test_prediction_listing_of_plain_folders_has_no_truth(tmp_path: Path) -> None:
    save_png(tmp_path / "2024-01" / "scan1.png", np.zeros((8, 8)))
    save_png(tmp_path / "scan2.png", np.zeros((8, 8)))
    listing = list_prediction_samples([tmp_path], ["fresh", "sintered"])
    assert [s.name for s in listing.samples] == ["2024-01/scan1.png", "scan2.png"]
    assert not listing.labelled and listing.unknown_classes == []


def test_prediction_listing_of_object_model_reads_labelme_objects(tmp_path: Path) -> None:
    json_path = object_document(tmp_path)
    listing = list_prediction_samples([tmp_path], ["long", "round"], crop_objects=True)
    assert len(listing.samples) == 6
    assert {s.class_name for s in listing.samples} == {"long", "round"}
    assert read_labelme(json_path).image_path == "grid.png"


def test_labelme_flag_files_in_sub_folders_are_not_taken_for_classes(
    labelme_flag_files: list[Path],
) -> None:
    root = labelme_flag_files[0].parent
    for path in sorted(root.iterdir()):  # each image stays beside its JSON
        batch = root / ("batch_a" if path.stem.startswith("rods") else "batch_b")
        batch.mkdir(exist_ok=True)
        path.rename(batch / path.name)
    listing = list_training_samples([root])
    assert listing.source == "labelme-flags"
    assert listing.class_counts() == {"rods": 3, "spheres": 3}
    assert load_training_set(listing, 32, PERCENTILES).images.shape == (6, 32, 32)


def test_a_zip_from_a_mac_keeps_accented_class_names(tmp_path: Path) -> None:
    """macOS's "Compress" writes UTF-8 names without the zip's UTF-8 flag (and accents
    decomposed): read as such, "Sphères" stays "Sphères", not "Sph├¿res"."""
    import io

    from PIL import Image

    from pipelines.classification.samples import unpacked_inputs

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name in ("Sphe\u0300res/a.png", "rods/b.png"):
            png = io.BytesIO()
            Image.new("L", (8, 8)).save(png, format="PNG")
            zipped.writestr(name, png.getvalue())
    raw = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # clear the UTF-8 flag
        start = 0
        while (start := raw.find(signature, start)) >= 0:
            flags = int.from_bytes(raw[start + offset : start + offset + 2], "little") & ~0x800
            raw[start + offset : start + offset + 2] = flags.to_bytes(2, "little")
            start += 4
    archive = tmp_path / "classes.zip"
    archive.write_bytes(bytes(raw))
    with unpacked_inputs([archive]) as (folder,):
        assert sorted(p.name for p in folder.iterdir()) == ["Sphères", "rods"]
