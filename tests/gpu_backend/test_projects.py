"""Project records and labels in the local store; correct-and-retrain from a model's result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpu_backend.projects import ProjectStore, adopt_predictions, count_labels
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
