"""One classification example and how its pixels are read.

A :class:`Sample` is a whole image or a box cropped from one (an object outlined in LabelMe),
with its true class when known. Inputs are found with the helpers here (hidden files and macOS
zip debris skipped, zips unpacked to a temporary folder) by :mod:`.datasets` for training and
:mod:`.prediction_inputs` for prediction.
"""

from __future__ import annotations

import base64
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.classification.preprocess import ContentBox, prepare_image
from pipelines.errors import InvalidInput
from pipelines.fileio import extract_zip
from pipelines.formats.labelme import AREA_SHAPE_TYPES, Box, LabelMeDocument
from pipelines.imaging import SUPPORTED_EXTENSIONS, load_image, load_image_bytes

IMAGE_SUFFIXES = frozenset(SUPPORTED_EXTENSIONS)
MAX_ZIP_BYTES = 8 * 1024**3  # uncompressed; protects the disk from a zip bomb


@dataclass(frozen=True)
class Sample:
    """One training or prediction example.

    ``name`` is what the user sees (``rods/rod_003.png``, ``grid.json shapes[4]``);
    ``box`` crops the image (object-level classification), ``None`` uses all of it;
    ``class_name`` is the true class when known.
    """

    name: str
    image_path: Path
    class_name: str | None = None
    box: Box | None = None
    image_data: str | None = None
    object_label: str | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file left out, and why (shown in the training metrics)."""

    name: str
    reason: str


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(path)


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name in {"Thumbs.db", "desktop.ini"}


def visible_files(folder: Path) -> list[Path]:
    """Files below ``folder``, sorted, skipping hidden files/folders and macOS zip debris."""
    found = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in parts) or not path.is_file():
            continue
        found.append(path)
    return found


@contextmanager
def unpacked_inputs(inputs: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield ``inputs`` with each ``.zip`` replaced by the folder it unpacks to (removed after)."""
    with tempfile.TemporaryDirectory(prefix="nocode-classify-") as scratch:
        resolved = []
        for index, path in enumerate(inputs):
            if path.suffix.lower() == ".zip" and path.is_file():
                # the folder keeps the zip's name, so messages name what the user gave
                resolved.append(_unzip(path, Path(scratch) / str(index) / path.stem))
            else:
                resolved.append(path)
        yield resolved


def _unzip(path: Path, target: Path) -> Path:
    extract_zip(path, target, MAX_ZIP_BYTES, "a dataset (split it, or give the folder)")
    # A zip made by "compress folder" holds one wrapping folder: step into it.
    entries = [p for p in target.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def object_boxes(document: LabelMeDocument, margin_fraction: float) -> list[tuple[int, str, Box]]:
    """Square crop boxes around each object: ``(first shape index, label, box)``.

    Shapes sharing ``(label, group_id)`` form one object; crop rectangles, points and lines are
    ignored. The square side is the object's longer extent plus ``margin_fraction`` of it on each
    side (at least 2 px), clipped to the image.
    """
    groups: dict[tuple[str, int | None, int], list[int]] = defaultdict(list)
    for index, shape in enumerate(document.shapes):
        if shape.is_crop or shape.shape_type not in AREA_SHAPE_TYPES:
            continue
        key = (shape.label, shape.group_id, -1 if shape.group_id is not None else index)
        groups[key].append(index)
    boxes = []
    for (label, _, _), indices in groups.items():
        bounds = np.array([document.shapes[i].bounds() for i in indices])
        x_min, y_min = bounds[:, 0].min(), bounds[:, 1].min()
        x_max, y_max = bounds[:, 2].max(), bounds[:, 3].max()
        extent = max(x_max - x_min, y_max - y_min)
        half = extent / 2 + max(2.0, margin_fraction * extent)
        cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
        box = Box(
            left=max(0, math.floor(cx - half + 0.5)),
            top=max(0, math.floor(cy - half + 0.5)),
            right=min(document.image_width, math.ceil(cx + half + 0.5)),
            bottom=min(document.image_height, math.ceil(cy + half + 0.5)),
        )
        if box.width > 0 and box.height > 0:
            boxes.append((indices[0], label, box))
    return sorted(boxes, key=lambda item: item[0])


def read_sample_pixels(sample: Sample, cache: dict[Path, np.ndarray] | None = None) -> np.ndarray:
    """The ``(H, W)`` pixels of a sample (cropped to its box). Raises InvalidImage/InvalidInput."""
    pixels = cache.get(sample.image_path) if cache is not None else None
    if pixels is None:
        if not sample.image_path.exists() and sample.image_data:
            pixels = _load_embedded(sample)
        elif not sample.image_path.exists():
            raise InvalidInput(f"image {sample.image_path.name} is missing")
        else:
            pixels = load_image(sample.image_path).pixels
        if cache is not None:
            cache.clear()  # crops of one image come together: keep only the latest image
            cache[sample.image_path] = pixels
    if sample.box is not None:
        if sample.box.bottom > pixels.shape[0] or sample.box.right > pixels.shape[1]:
            raise InvalidInput(
                f"{sample.name} lies outside its {pixels.shape[1]}x{pixels.shape[0]} image; "
                "is the LabelMe file for another image?"
            )
        pixels = pixels[sample.box.slices()]
    return pixels


def _load_embedded(sample: Sample) -> np.ndarray:
    """Decode LabelMe's embedded ``imageData`` (used when the image file is not beside the JSON)."""
    try:
        data = base64.b64decode(sample.image_data or "", validate=False)
    except ValueError as error:
        raise InvalidInput(f"{sample.name}: imageData is not valid base64") from error
    return load_image_bytes(data, sample.image_path.name or "image.png").pixels


def prepare_sample(
    sample: Sample,
    size_px: int,
    percentiles: tuple[float, float],
    cache: dict[Path, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, ContentBox]:
    """Read and prepare one sample: ``(raw pixels, network square (S, S), content box)``."""
    pixels = read_sample_pixels(sample, cache)
    square, content = prepare_image(pixels, size_px, percentiles)
    return pixels, square, content
