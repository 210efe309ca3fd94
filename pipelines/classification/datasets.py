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

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from pipelines.classification.samples import (
    IMAGE_SUFFIXES,
    Sample,
    SkippedFile,
    is_hidden,
    is_image_file,
    object_boxes,
    prepare_sample,
    visible_files,
)
from pipelines.errors import InvalidInput, InvalidLabels, NoCodeMLError
from pipelines.formats.labelme import LabelMeDocument, read_labelme, resolve_image_path
from pipelines.imaging import unsupported_pictures
from pipelines.progress import ProgressCallback, StageTimer

log = logging.getLogger(__name__)

MIN_IMAGES_PER_CLASS_WITH_VALIDATION = 2


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


def _class_folders(root: Path) -> list[Path]:
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not is_hidden(p) and p.name != "__MACOSX"
    )


def _list_class_folders(roots: Sequence[Path]) -> DatasetListing:
    samples: list[Sample] = []
    for root in roots:
        loose = [p.name for p in visible_files(root) if p.parent == root and is_image_file(p)]
        if loose:
            log.warning(
                "%d image(s) directly in %s are ignored (e.g. %s): put each image in its class "
                "sub-folder",
                len(loose),
                root.name,
                loose[0],
            )
        for folder in _class_folders(root):
            files = visible_files(folder)
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise InvalidInput(
                    f"class folder '{folder.name}' in {root.name} holds no images"
                    f"{unsupported_pictures(files)}; add images of that class or delete the folder"
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
            found.extend(p for p in visible_files(path) if p.suffix.lower() == ".json")
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
