"""What to classify: images, folders, zips and LabelMe files given to ``predict``.

In a folder whose sub-folders are named after the model's classes, the sub-folder is the true
class, so predictions are also scored; sub-folders with other names are reported as classes the
model does not know. For object models, LabelMe files give one sample per outlined object.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipelines.classification.samples import (
    IMAGE_SUFFIXES,
    Sample,
    object_boxes,
    visible_files,
)
from pipelines.errors import InvalidInput
from pipelines.formats.labelme import read_labelme, resolve_image_path
from pipelines.imaging import unsupported_pictures

log = logging.getLogger(__name__)


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
    leave_out: Sequence[Path] = (),
) -> PredictionListing:
    """Find the images (or, for object models, LabelMe objects) to classify in ``inputs``.

    Images in the folders ``leave_out`` are not taken from searched folders (prediction's own
    overlays, when its output folder lies inside an input folder).

    Image files are taken as given; folders are searched recursively. In a folder whose
    sub-folders are named after the model's classes, the sub-folder is the true class (so the
    predictions are also scored); sub-folders with other names are reported as unknown classes.
    LabelMe files give their objects (object models) or their image with its flag as truth.
    """
    if not inputs:
        raise InvalidInput("no images given to predict; give image files or folders")
    samples: list[Sample] = []
    unknown: set[str] = set()
    leave_out = [folder.resolve() for folder in leave_out]
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
            files = visible_files(path)
            json_files = [p for p in files if p.suffix.lower() == ".json"]
            if crop_objects and json_files:
                for json_path in json_files:
                    samples.extend(
                        _json_prediction_samples(
                            json_path, classes, True, crop_margin_fraction, unknown
                        )
                    )
                continue
            images = [
                p
                for p in files
                if p.suffix.lower() in IMAGE_SUFFIXES
                and not (leave_out and any(p.resolve().is_relative_to(f) for f in leave_out))
            ]
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
        searched = [f for p in inputs if p.is_dir() for f in visible_files(p)]
        raise InvalidInput(
            f"no images found in {', '.join(p.name for p in inputs)}"
            f"{unsupported_pictures(searched)}; give image files or folders"
        )
    if unknown:
        log.warning(
            "class(es) %s in the inputs are unknown to this model (it knows %s); those images are "
            "predicted but not scored",
            ", ".join(sorted(unknown)),
            ", ".join(classes),
        )
    return PredictionListing(samples=samples, unknown_classes=sorted(unknown))
