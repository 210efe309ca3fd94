"""Project records and labels in the local store; correct-and-retrain from a model's result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpu_backend.projects import (
    IMAGE_SUFFIXES,
    Project,
    ProjectStore,
    adopt_predictions,
    count_labels,
    labelling_gaps,
)
from gpu_backend.store import LocalStore
from pipelines.errors import InvalidInput
from pipelines.formats.labelme import Shape, new_document, parse_labelme, rectangle


def _square(label: str, x: float, y: float, half: float = 3.0) -> Shape:
    points = [
        [x - half, y - half],
        [x + half, y - half],
        [x + half, y + half],
        [x - half, y + half],
    ]
    return Shape(label=label, points=points)


def _documents():
    user = new_document(
        [rectangle("crop", 0, 0, 30, 30), _square("particle", 10, 10)], "image.png", 100, 100
    )
    predicted = new_document(
        [
            _square("particle", 10.5, 10.5),  # the user's object, found again: skipped
            _square("particle", 60, 60),  # inside the region: taken over
            _square("particle", 90, 20),  # outside the region: ignored
        ],
        "image.png",
        100,
        100,
    )
    return user, predicted


def test_predictions_in_a_region_become_labels_inside_a_new_crop() -> None:
    user, predicted = _documents()
    document, added, crop_index = adopt_predictions(user, predicted, (40, 40, 80, 80))
    assert added == 1 and crop_index == 1
    assert [c.bounds() for c in document.crop_shapes] == [(0, 0, 30, 30), (39.5, 39.5, 79.5, 79.5)]
    centres = sorted(tuple(np.round(s.points.mean(axis=0), 1)) for s in document.object_shapes)
    assert centres == [(10.0, 10.0), (60.0, 60.0)]
    parse_labelme(document.to_dict(), "adopted")  # still a valid LabelMe document


def test_whole_image_keeps_user_outlines_and_adds_the_rest() -> None:
    user, predicted = _documents()
    document, added, _ = adopt_predictions(user, predicted, None)
    assert added == 2
    assert count_labels(document).objects == 3
    assert document.crop_shapes[-1].bounds() == (-0.5, -0.5, 99.5, 99.5)


def test_an_empty_region_is_refused() -> None:
    user, predicted = _documents()
    with pytest.raises(InvalidInput, match="region is empty"):
        adopt_predictions(user, predicted, (50, 50, 50, 90))


def test_store_round_trip_of_adopted_labels(tmp_path) -> None:
    from PIL import Image

    store = ProjectStore(LocalStore(tmp_path / "data"))
    project = store.create("test", "detect", ["particle"])
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((100, 100), dtype=np.uint8)).save(image)
    project, record = store.add_image(project.project_id, "image.png", image.read_bytes())
    _, predicted = _documents()
    document, _, _ = adopt_predictions(store.labels(project.project_id, record.name), predicted)
    store.save_labels(project.project_id, record.name, document)
    raw = json.loads(store.store.read_bytes(store.labels_key(project.project_id, record.name)))
    assert raw["imagePath"] == "image.png"
    assert sum(s["label"] == "particle" for s in raw["shapes"]) == 3


def _png(tmp_path, height: int = 40, width: int = 60) -> bytes:
    from PIL import Image

    path = tmp_path / "image.png"
    Image.fromarray(np.zeros((height, width), dtype=np.uint8)).save(path)
    return path.read_bytes()


def test_an_upload_keeps_its_own_name_beside_the_safe_stored_name(tmp_path) -> None:
    """Downloads point to the user's file (``Pd on C (2).TIF``), storage uses a safe name."""
    store = ProjectStore(LocalStore(tmp_path / "data"))
    project = store.create("names", "detect", ["particle"])
    _, record = store.add_image(project.project_id, "Pd on C (2).TIF", _png(tmp_path))
    assert (record.name, record.file_name) == ("Pd_on_C_2", "Pd_on_C_2.tif")
    stored = store.get(project.project_id).image("Pd_on_C_2")
    assert stored.original_name == stored.user_file_name == "Pd on C (2).TIF"
    assert stored.user_stem == "Pd on C (2)"
    assert store.image_path(project.project_id, "Pd_on_C_2").name == "Pd_on_C_2.tif"
    # The stored labels keep naming the stored file: the project folder opens in labelme.
    assert store.labels(project.project_id, "Pd_on_C_2").image_path == "Pd_on_C_2.tif"


def test_a_project_saved_before_original_names_were_kept_still_opens() -> None:
    raw = {
        "project_id": "20260101-000000-abcd",
        "name": "old",
        "images": [{"name": "a_b", "file_name": "a_b.png", "height_px": 4, "width_px": 4}],
    }
    (record,) = Project.from_dict(raw).images
    assert record.original_name == ""
    assert (record.user_file_name, record.user_stem) == ("a_b.png", "a_b")


def test_the_store_takes_exactly_the_image_types_pipelines_imaging_reads(tmp_path) -> None:
    from pipelines.imaging import SUPPORTED_EXTENSIONS

    assert IMAGE_SUFFIXES == SUPPORTED_EXTENSIONS
    assert ".ser" in IMAGE_SUFFIXES and ".bmp" not in IMAGE_SUFFIXES
    store = ProjectStore(LocalStore(tmp_path / "data"))
    project = store.create("types", "detect")
    with pytest.raises(InvalidInput, match=r"unsupported file type \.bmp"):
        store.add_image(project.project_id, "scan.bmp", b"BM")


def test_deleting_an_image_removes_its_files_and_its_record(tmp_path) -> None:
    store = ProjectStore(LocalStore(tmp_path / "data"))
    project = store.create("delete", "detect", ["particle"])
    _, kept = store.add_image(project.project_id, "kept.png", _png(tmp_path))
    _, gone = store.add_image(project.project_id, "gone.png", _png(tmp_path))
    folder = tmp_path / "data" / "projects" / project.project_id
    before = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"gone.png", "gone.json"} <= before
    project = store.delete_image(project.project_id, gone.name)
    assert [r.name for r in project.images] == [kept.name]
    after = {p.name for p in folder.rglob("*") if p.is_file()}
    assert before - after == {"gone.png", "gone.json"}  # image, labels (previews/gone.png)
    assert not (folder / "previews" / "gone.png").exists()
    with pytest.raises(InvalidInput, match="has no image 'gone'"):
        store.delete_image(project.project_id, gone.name)


def test_the_projects_linking_a_job_are_found_and_unlinked(tmp_path) -> None:
    from gpu_backend.projects import JobLink

    store = ProjectStore(LocalStore(tmp_path / "data"))
    first = store.create("first", "detect")
    second = store.create("second", "detect")
    store.link_job(first.project_id, JobLink("job-1", "train", "2026-01-01T00:00:00+00:00"))
    assert [p.project_id for p in store.projects_linking("job-1")] == [first.project_id]
    assert store.projects_linking("job-2") == []
    assert store.unlink_job(first.project_id, "job-1").jobs == ()
    assert store.get(second.project_id).jobs == ()


def test_a_class_zip_is_read_as_the_command_line_reads_it(tmp_path) -> None:
    """One wrapping folder is stepped into and an image's class is its top folder, however
    deep the image lies: no extra class named after a sub-folder."""
    import io
    import zipfile

    from PIL import Image

    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, format="PNG")
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zipped:
        for name in ("My Data/fresh/a.png", "My Data/fresh/sub/deep.png", "My Data/sintered/b.png"):
            zipped.writestr(name, png.getvalue())
    store = ProjectStore(LocalStore(tmp_path / "data"))
    project = store.create("sorting", "classify", [])
    project = store.add_class_folders_zip(project.project_id, data.getvalue(), "classes.zip")
    assert [c.name for c in project.classes] == ["fresh", "sintered"]
    chosen = {
        r.user_file_name: store.image_class(project.project_id, r.name) for r in project.images
    }
    assert chosen == {"a.png": "fresh", "deep.png": "fresh", "b.png": "sintered"}


def test_labelling_gaps_name_what_would_be_taught_as_background() -> None:
    def polygon(x: float, y: float) -> Shape:
        return Shape("particle", [[x, y], [x + 4, y], [x + 4, y + 4], [x, y + 4]])

    crops = [rectangle("crop", 0, 0, 20, 20), rectangle("crop", 40, 40, 60, 60)]
    assert "Nothing is outlined" in labelling_gaps(new_document(crops, "a.png", 64, 64))[0]
    (no_crop,) = labelling_gaps(new_document([polygon(2, 2)], "a.png", 64, 64))
    assert "whole image counts as labelled" in no_crop
    (empty,) = labelling_gaps(new_document([*crops, polygon(2, 2)], "a.png", 64, 64))
    assert empty.startswith("Crop 2 has no outlines")
    both = new_document([*crops, polygon(2, 2), polygon(45, 45)], "a.png", 64, 64)
    assert labelling_gaps(both) == []
