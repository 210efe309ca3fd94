"""Fixtures for the classification tests: tiny seeded datasets and one tiny trained model.

Every model here is ``convnext_atto`` at 32 px for 1-2 epochs: the tests check behaviour
(files, shapes, messages), not accuracy, which lives in ``benchmarks/classification.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.synthetic_classes import SyntheticClassificationSet, write_synthetic_classification

TINY_CONFIG: dict[str, Any] = {
    "input_size_px": 32,
    "epochs": 2,
    "batch_size": 8,
    "max_minutes": None,
}


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    return dict(TINY_CONFIG)


@pytest.fixture
def class_folder(tmp_path: Path) -> SyntheticClassificationSet:
    """3 classes x 3 images of 48 px (PNG and 16-bit TIFF), in a fresh folder."""
    return write_synthetic_classification(tmp_path / "data", n_per_class=3, seed=0, size_px=48)


@pytest.fixture(scope="session")
def trained_model(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, SyntheticClassificationSet]:
    """A tiny model trained once per session, with the dataset it was trained on."""
    from pipelines.classification import api

    root = tmp_path_factory.mktemp("classify-model")
    dataset = write_synthetic_classification(root / "data", n_per_class=3, seed=0, size_px=48)
    model_dir = api.train([dataset.root], root / "model", config=dict(TINY_CONFIG))
    return model_dir, dataset


def save_png(path: Path, pixels: Any) -> Path:
    """Write an 8-bit greyscale PNG (``pixels`` float in [0, 1.3] like the synthetic images)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.asarray(pixels) / 1.3 * 255, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def labelme_flag_files(tmp_path: Path) -> list[Path]:
    """labelme's classification convention, saved by labelme itself: 3 'rods' + 3 'spheres'
    images each with a JSON whose image-level flag names the class, plus one unflagged JSON."""
    from labelme._label_file import LabelFile

    from pipelines.synthetic_classes import synthetic_class_image

    folder = tmp_path / "flags"
    paths = []
    for class_name in ("rods", "spheres"):
        for index in range(3):
            image = save_png(
                folder / f"{class_name}{index}.png", synthetic_class_image(class_name, 0, index, 48)
            )
            json_path = folder / f"{class_name}{index}.json"
            LabelFile().save(
                filename=str(json_path),
                shapes=[],
                image_path=image.name,
                image_height=48,
                image_width=48,
                flags={"rods": class_name == "rods", "spheres": class_name == "spheres"},
            )
            paths.append(json_path)
    unflagged = save_png(folder / "unsorted.png", synthetic_class_image("rods", 0, 9, 48))
    LabelFile().save(
        filename=str(folder / "unsorted.json"),
        shapes=[],
        image_path=unflagged.name,
        image_height=48,
        image_width=48,
        flags={"rods": False, "spheres": False},
    )
    paths.append(folder / "unsorted.json")
    return paths


def object_document(folder: Path, name: str = "grid") -> Path:
    """A 96x96 image with 3 round and 3 long bright objects outlined in LabelMe (plus a crop
    rectangle that must be ignored); returns the JSON path."""
    import numpy as np

    from pipelines.formats.labelme import Box, Shape, crop_rectangle, new_document, write_labelme

    image = np.full((96, 96), 0.1)
    rows, cols = np.mgrid[0:96, 0:96]
    shapes = [crop_rectangle(Box(0, 0, 96, 96))]
    for k, (row, col) in enumerate([(16, 16), (16, 48), (16, 80)]):
        image[(rows - row) ** 2 + (cols - col) ** 2 <= 36] = 1.0 + 0.05 * k
        shapes.append(Shape("round", [[col, row], [col + 6, row]], shape_type="circle"))
    for k, (row, col) in enumerate([(60, 16), (60, 48), (60, 80)]):
        image[row - 10 : row + 11, col - 2 : col + 3] = 1.0 + 0.05 * k
        outline = [
            [col - 2, row - 10],
            [col + 2, row - 10],
            [col + 2, row + 10],
            [col - 2, row + 10],
        ]
        shapes.append(Shape("long", outline))
    save_png(folder / f"{name}.png", image)
    return write_labelme(folder / f"{name}.json", new_document(shapes, f"{name}.png", 96, 96))
