"""Classification datasets: find the labelled images, read them, split them.

Sources (see :func:`list_training_samples`):

- a folder with one sub-folder per class (``data/fresh/*.png``, ``data/sintered/*.tif``);
- a ``.zip`` of such a folder (a single wrapping folder inside the zip is fine);
- LabelMe files whose image-level ``flags`` name the class (labelme's classification mode:
  ``labelme --flags fresh,sintered``), given as files or as a folder of them;
- with ``crop_objects``: every object outlined in LabelMe files, cropped with a margin and
  labelled by its shape label (object-level classification, e.g. particle morphology).

A file that cannot be used (a corrupt image, a LabelMe file without a class) is skipped with a
logged warning naming it and reported in the training metrics; problems with the dataset as a
whole (one class only, an empty class folder, too few images to split) are errors.
"""

from __future__ import annotations

import base64
import logging
import math
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from pipelines.classification.preprocess import ContentBox, prepare_image
from pipelines.errors import InvalidInput, InvalidLabels, NoCodeMLError
from pipelines.formats.labelme import (
    AREA_SHAPE_TYPES,
    Box,
    LabelMeDocument,
    read_labelme,
    resolve_image_path,
)
from pipelines.imaging import SUPPORTED_EXTENSIONS, load_image, load_image_bytes
from pipelines.progress import ProgressCallback, StageTimer

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(SUPPORTED_EXTENSIONS)
MAX_ZIP_BYTES = 8 * 1024**3  # uncompressed; protects the disk from a zip bomb
MIN_IMAGES_PER_CLASS_WITH_VALIDATION = 2


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


@dataclass
class DatasetListing:
    """Samples found in the inputs (nothing read yet)."""

    samples: list[Sample]
    source: str
    skipped: list[SkippedFile] = field(default_factory=list)

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.class_name for s in self.samples if s.class_name).items()))


@dataclass
class LoadedDataset:
    """Images ready for the network: ``images`` ``(N, S, S)`` float32 in [0, 1].

    ``labels[i]`` indexes ``classes``; ``names[i]`` names sample ``i``.
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    classes: list[str]
    skipped: list[SkippedFile]
    source: str

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts, strict=True)}


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not _hidden(path)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name in {"Thumbs.db", "desktop.ini"}


def _visible_files(folder: Path) -> list[Path]:
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
    target.mkdir(parents=True)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            total = sum(m.file_size for m in members)
            if total > MAX_ZIP_BYTES:
                raise InvalidInput(
                    f"{path.name} unpacks to {total / 1024**3:.1f} GiB; the limit is "
                    f"{MAX_ZIP_BYTES / 1024**3:.0f} GiB — split the dataset or give the folder"
                )
            archive.extractall(target)  # zipfile strips absolute paths and '..' itself
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InvalidInput(f"{path.name} is not a readable zip file ({error})") from error
    # A zip made by "compress folder" holds one wrapping folder: step into it.
    entries = [p for p in target.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def _class_folders(root: Path) -> list[Path]:
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not _hidden(p) and p.name != "__MACOSX"
    )


def _list_class_folders(roots: Sequence[Path]) -> DatasetListing:
    samples: list[Sample] = []
    for root in roots:
        loose = [p.name for p in _visible_files(root) if p.parent == root and is_image_file(p)]
        if loose:
            log.warning(
                "%d image(s) directly in %s are ignored (e.g. %s): put each image in its class "
                "sub-folder",
                len(loose),
                root.name,
                loose[0],
            )
        for folder in _class_folders(root):
            images = [p for p in _visible_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise InvalidInput(
                    f"class folder '{folder.name}' in {root.name} holds no images; add images of "
                    "that class or delete the folder"
                )
            for path in images:
                name = PurePosixPath(*path.relative_to(root).parts).as_posix()
                samples.append(Sample(name=name, image_path=path, class_name=folder.name))
    return DatasetListing(samples=samples, source="folders")


def _read_labelme_or_skip(path: Path, skipped: list[SkippedFile]) -> LabelMeDocument | None:
    try:
        return read_labelme(path, validate=False)
    except InvalidLabels as error:
        log.warning("skipping %s: %s", path.name, error)
        skipped.append(SkippedFile(path.name, str(error)))
        return None


def _list_labelme_flags(json_files: Sequence[Path]) -> DatasetListing:
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    for path in json_files:
        document = _read_labelme_or_skip(path, skipped)
        if document is None:
            continue
        chosen = sorted(name for name, value in document.flags.items() if value is True)
        if len(chosen) != 1:
            reason = (
                "no image-level flag is set; tick the class flag in labelme"
                if not chosen
                else f"several class flags are set ({', '.join(chosen)}); tick exactly one"
            )
            log.warning("skipping %s: %s", path.name, reason)
            skipped.append(SkippedFile(path.name, reason))
            continue
        try:
            image_path = resolve_image_path(document, path)
        except InvalidLabels as error:
            log.warning("skipping %s: %s", path.name, error)
            skipped.append(SkippedFile(path.name, str(error)))
            continue
        samples.append(
            Sample(
                name=path.name,
                image_path=image_path,
                class_name=chosen[0],
                image_data=document.image_data,
            )
        )
    return DatasetListing(samples=samples, source="labelme-flags", skipped=skipped)


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


def list_labelme_objects(
    json_files: Sequence[Path], margin_fraction: float, *, labelled: bool = True
) -> DatasetListing:
    """One sample per object of each LabelMe file (class = shape label when ``labelled``)."""
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    for path in json_files:
        document = _read_labelme_or_skip(path, skipped)
        if document is None:
            continue
        try:
            image_path = resolve_image_path(document, path)
        except InvalidLabels as error:
            log.warning("skipping %s: %s", path.name, error)
            skipped.append(SkippedFile(path.name, str(error)))
            continue
        boxes = object_boxes(document, margin_fraction)
        if not boxes:
            reason = "no outlined objects (polygons, rectangles or circles) to crop"
            log.warning("skipping %s: %s", path.name, reason)
            skipped.append(SkippedFile(path.name, reason))
        for index, label, box in boxes:
            samples.append(
                Sample(
                    name=f"{path.name} shapes[{index}]",
                    image_path=image_path,
                    class_name=label if labelled else None,
                    box=box,
                    image_data=document.image_data,
                    object_label=label,
                )
            )
    return DatasetListing(samples=samples, source="labelme-objects", skipped=skipped)


def _json_files(paths: Sequence[Path]) -> list[Path]:
    found = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in _visible_files(path) if p.suffix.lower() == ".json")
        else:
            found.append(path)
    return found


def _has_class_flag(path: Path) -> bool:
    """Whether a JSON file is a LabelMe file with an image-level flag set (labelme's
    classification layout), which decides between that layout and class sub-folders."""
    try:
        return any(value is True for value in read_labelme(path, validate=False).flags.values())
    except InvalidLabels:
        return False


def list_training_samples(
    inputs: Sequence[Path], *, crop_objects: bool = False, crop_margin_fraction: float = 0.25
) -> DatasetListing:
    """Find the labelled samples in ``inputs`` (zips unpacked by :func:`unpacked_inputs`)."""
    if not inputs:
        raise InvalidInput("no training data given; give a folder with one sub-folder per class")
    for path in inputs:
        if not path.exists():
            raise InvalidInput(f"{path} does not exist; check the path")
    folders = [p for p in inputs if p.is_dir()]
    files = [p for p in inputs if p.is_file()]
    not_json = [p for p in files if p.suffix.lower() != ".json"]
    if not_json:
        raise InvalidInput(
            f"{not_json[0].name} is not a folder, zip or LabelMe file; give a folder with one "
            "sub-folder per class (or a zip of it, or LabelMe files with class flags)"
        )
    if crop_objects:
        json_files = _json_files(inputs)
        if not json_files:
            raise InvalidInput(
                "crop_objects needs LabelMe files with outlined objects; none found in the inputs"
            )
        listing = list_labelme_objects(json_files, crop_margin_fraction)
    elif (
        folders
        and not files
        and all(_class_folders(folder) for folder in folders)
        and not any(_has_class_flag(p) for p in _json_files(folders))
    ):
        listing = _list_class_folders(folders)
    else:
        json_files = _json_files(inputs)
        if not json_files:
            raise InvalidInput(
                f"no class sub-folders or LabelMe files found in {inputs[0].name}; make one "
                "sub-folder per class and put its images inside"
            )
        listing = _list_labelme_flags(json_files)
    if not listing.samples:
        raise InvalidInput(
            f"no usable labelled images found in {', '.join(p.name for p in inputs)}"
            + (f" ({len(listing.skipped)} file(s) skipped, see the log)" if listing.skipped else "")
        )
    return listing


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


def load_training_set(
    listing: DatasetListing,
    size_px: int,
    percentiles: tuple[float, float],
    progress: ProgressCallback | None = None,
) -> LoadedDataset:
    """Read every sample into memory; unreadable ones are skipped with a warning naming them."""
    timer = StageTimer(progress, "load images", total=len(listing.samples), min_interval_s=0.5)
    squares, names, class_names = [], [], []
    skipped = list(listing.skipped)
    cache: dict[Path, np.ndarray] = {}
    for done, sample in enumerate(listing.samples, start=1):
        try:
            _, square, _ = prepare_sample(sample, size_px, percentiles, cache)
        except (NoCodeMLError, OSError, ValueError) as error:
            log.warning("skipping %s: %s", sample.name, error)
            skipped.append(SkippedFile(sample.name, str(error)))
        else:
            squares.append(square)
            names.append(sample.name)
            class_names.append(sample.class_name)
        timer.update(done)
    classes = sorted({name for name in class_names if name})
    check_classes(Counter(class_names), listing.class_counts())
    index = {name: i for i, name in enumerate(classes)}
    return LoadedDataset(
        images=np.stack(squares).astype(np.float32),
        labels=np.array([index[c] for c in class_names], dtype=np.int64),
        names=names,
        classes=classes,
        skipped=skipped,
        source=listing.source,
    )


def check_classes(readable: Counter[str | None], listed: dict[str, int]) -> None:
    """Raise if fewer than two classes have readable images."""
    lost = sorted(name for name in listed if readable.get(name, 0) == 0)
    if lost:
        raise InvalidInput(
            f"class '{lost[0]}' has no readable images (all were skipped); replace the damaged "
            "files or remove the class"
        )
    classes = sorted(name for name in readable if name)
    if len(classes) < 2:
        found = f"only one class ('{classes[0]}')" if classes else "no classes"
        raise InvalidInput(
            f"found {found}; a classifier needs at least two classes — add a sub-folder of "
            "images (or a LabelMe flag) for each other class"
        )


def stratified_split(
    labels: np.ndarray, classes: Sequence[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)``: each class keeps ``val_fraction`` of its images (≥ 1)
    for validation and at least one for training.

    ``val_fraction`` 0 puts everything in training (no validation, no early stopping).
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for class_index, class_name in enumerate(classes):
        members = np.flatnonzero(labels == class_index)
        if val_fraction == 0:
            train.extend(members.tolist())
            continue
        if members.size < MIN_IMAGES_PER_CLASS_WITH_VALIDATION:
            raise InvalidInput(
                f"class '{class_name}' has {members.size} image{'s' if members.size != 1 else ''}; "
                f"at least {MIN_IMAGES_PER_CLASS_WITH_VALIDATION} are needed to keep one for "
                "validation — add images of that class, or set val_fraction to 0"
            )
        members = rng.permutation(members)
        n_val = min(members.size - 1, max(1, round(members.size * val_fraction)))
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(val), dtype=np.int64)


@dataclass
class PredictionListing:
    """Samples to predict; ``class_name`` is the true class where the inputs say so.

    ``unknown_classes`` lists class names found in the inputs (sub-folders, flags, shape labels)
    that the model does not know: their samples are predicted but not scored.
    """

    samples: list[Sample]
    unknown_classes: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(sample.class_name for sample in self.samples)


def _truth(name: str | None, classes: Sequence[str], unknown: set[str]) -> str | None:
    if name is None or name in classes:
        return name
    unknown.add(name)
    return None


def _json_prediction_samples(
    path: Path, classes: Sequence[str], crop_objects: bool, margin: float, unknown: set[str]
) -> list[Sample]:
    document = read_labelme(path, validate=False)
    image_path = resolve_image_path(document, path)
    if crop_objects:
        return [
            Sample(
                name=f"{path.name} shapes[{index}]",
                image_path=image_path,
                class_name=_truth(label, classes, unknown),
                box=box,
                image_data=document.image_data,
                object_label=label,
            )
            for index, label, box in object_boxes(document, margin)
        ]
    chosen = [name for name, value in document.flags.items() if value is True]
    truth = _truth(chosen[0], classes, unknown) if len(chosen) == 1 else None
    return [Sample(path.name, image_path, truth, image_data=document.image_data)]


def list_prediction_samples(
    inputs: Sequence[Path],
    classes: Sequence[str],
    *,
    crop_objects: bool = False,
    crop_margin_fraction: float = 0.25,
) -> PredictionListing:
    """Find the images (or, for object models, LabelMe objects) to classify in ``inputs``.

    Image files are taken as given; folders are searched recursively. In a folder whose
    sub-folders are named after the model's classes, the sub-folder is the true class (so the
    predictions are also scored); sub-folders with other names are reported as unknown classes.
    LabelMe files give their objects (object models) or their image with its flag as truth.
    """
    if not inputs:
        raise InvalidInput("no images given to predict; give image files or folders")
    samples: list[Sample] = []
    unknown: set[str] = set()
    for path in inputs:
        if not path.exists():
            raise InvalidInput(f"{path} does not exist; check the path")
        if path.is_file() and path.suffix.lower() == ".json":
            samples.extend(
                _json_prediction_samples(path, classes, crop_objects, crop_margin_fraction, unknown)
            )
        elif path.is_file():
            samples.append(Sample(name=path.name, image_path=path))
        else:
            files = _visible_files(path)
            json_files = [p for p in files if p.suffix.lower() == ".json"]
            if crop_objects and json_files:
                for json_path in json_files:
                    samples.extend(
                        _json_prediction_samples(
                            json_path, classes, True, crop_margin_fraction, unknown
                        )
                    )
                continue
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            sub_folders = {p.relative_to(path).parts[0] for p in images if p.parent != path}
            scored = bool(sub_folders & set(classes))
            for image in images:
                parts = image.relative_to(path).parts
                truth = _truth(parts[0], classes, unknown) if scored and len(parts) > 1 else None
                samples.append(
                    Sample(
                        name=PurePosixPath(*parts).as_posix(), image_path=image, class_name=truth
                    )
                )
    if not samples:
        raise InvalidInput(
            f"no images found in {', '.join(p.name for p in inputs)}; give image files or folders"
        )
    if unknown:
        log.warning(
            "class(es) %s in the inputs are unknown to this model (it knows %s); those images are "
            "predicted but not scored",
            ", ".join(sorted(unknown)),
            ", ".join(classes),
        )
    return PredictionListing(samples=samples, unknown_classes=sorted(unknown))
