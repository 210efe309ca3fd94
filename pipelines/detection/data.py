"""Training data from LabelMe crops, and the image normalisation every engine shares.

Supervision is the crop rectangles only: inside a crop every unlabelled pixel is background;
outside the crops nothing is known (``valid`` is False there), although the pixels still serve
as context for the network. A LabelMe file without crops counts as labelled everywhere.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipelines.errors import InvalidImage, InvalidLabels
from pipelines.formats.labelme import (
    Box,
    LabelMeDocument,
    check_image_size,
    read_labelme,
    resolve_image_path,
)
from pipelines.formats.masks import InstanceMasks, shapes_to_instances

log = logging.getLogger(__name__)

# Percentile limits of the intensity normalisation, computed on the whole image (not a crop) so
# crops and inference inputs are scaled alike.
LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
_PERCENTILE_SAMPLE_PX = 1 << 20
# Objects whose smaller bounding-box side is at most this are "tiny" (single atoms, 1–3 px).
TINY_OBJECT_PX = 4


@dataclass(frozen=True)
class LoadedPixels:
    """A greyscale image as read from disk; ``nm_per_px`` is ``None`` when uncalibrated."""

    pixels: np.ndarray
    nm_per_px: float | None
    path: Path | None = None


def read_image(path: str | os.PathLike[str], nm_per_px: float | None = None) -> LoadedPixels:
    """Read a microscopy image as ``(H, W)`` pixels with its calibration (``pipelines.imaging``)."""
    from pipelines.imaging import load_image

    loaded = load_image(Path(path), nm_per_px=nm_per_px)
    pixels = np.asarray(loaded.pixels)
    if pixels.ndim != 2:
        raise InvalidImage(f"{Path(path).name} is not a greyscale image (shape {pixels.shape})")
    calibration = getattr(loaded, "calibration", None)
    scale = getattr(calibration, "nm_per_px", None) if calibration is not None else None
    return LoadedPixels(pixels=pixels, nm_per_px=scale, path=Path(path))


def intensity_limits(image: np.ndarray) -> tuple[float, float]:
    """Robust ``(low, high)`` intensity limits from a subsample of the whole image."""
    flat = image.reshape(-1)
    step = max(1, flat.size // _PERCENTILE_SAMPLE_PX)
    sample = flat[::step].astype(np.float32)
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InvalidImage(
            "the image holds NaN or infinite pixels; load it with pipelines.imaging.load_image, "
            "which replaces them, or replace them yourself"
        )
    low, high = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not high > low:  # flat; any fixed gap would flatten a height map in metres (1e-8)
        high = low + 1.0
    return float(low), float(high)


def normalise(image: np.ndarray, invert: bool = False) -> np.ndarray:
    """``(H, W) float32`` scaled so the 1st/99.8th percentiles map to 0/1; objects bright.

    ``invert`` flips dark objects (bright-field) to bright so one network serves both.
    """
    low, high = intensity_limits(image)
    out = image.astype(np.float32, copy=True)
    out -= low
    out *= 1.0 / (high - low)
    if invert:
        np.subtract(1.0, out, out=out)
    return out


# With this many labelled objects of a class, the smallest of them bounds the class's sizes.
MANY_EXAMPLES = 10
# A class whose median labelled object is at most this wide (equivalent diameter, px) has
# objects of a few pixels, e.g. single atoms, whose blurred halo is as wide as they are.
FEW_PIXELS_D_PX = 6.0


@dataclass(eq=False)
class LabelledImage:
    """One training image: raw pixels, its instances and where they are fully labelled."""

    name: str
    pixels: np.ndarray
    instances: InstanceMasks
    boxes: list[Box]
    nm_per_px: float | None = None

    def valid_mask(self) -> np.ndarray:
        """``(H, W) bool``: True inside a labelled box (loss computed there only)."""
        mask = np.zeros(self.pixels.shape, dtype=bool)
        for box in self.boxes:
            mask[box.slices()] = True
        return mask

    def instances_in_boxes(self) -> np.ndarray:
        """Ids (1-based) of instances with at least one pixel inside a labelled box."""
        found: set[int] = set()
        for box in self.boxes:
            ids = np.unique(self.instances.labels[box.slices()])
            found.update(int(i) for i in ids if i > 0)
        return np.array(sorted(found), dtype=np.int64)

    def instances_cut_by_boxes(self) -> set[int]:
        """Ids of instances lying on a box edge inside the image (only partly labelled).

        An object on the edge of one crop counts as cut even when an overlapping crop holds
        all of it: the conservative reading.
        """
        labels = self.instances.labels
        height, width = labels.shape
        cut: set[int] = set()
        for box in self.boxes:
            edges = []
            if box.top > 0:
                edges.append(labels[box.top, box.left : box.right])
            if box.bottom < height:
                edges.append(labels[box.bottom - 1, box.left : box.right])
            if box.left > 0:
                edges.append(labels[box.top : box.bottom, box.left])
            if box.right < width:
                edges.append(labels[box.top : box.bottom, box.right - 1])
            for edge in edges:
                cut.update(int(i) for i in np.unique(edge) if i > 0)
        return cut


@dataclass(eq=False)
class TrainingSet:
    """Every labelled image of a training run with the shared class list."""

    images: list[LabelledImage]
    class_names: list[str]

    def object_count(self) -> dict[str, int]:
        """Labelled objects per class inside the labelled boxes."""
        counts = dict.fromkeys(self.class_names, 0)
        for item in self.images:
            for instance in item.instances_in_boxes():
                counts[item.instances.class_of(int(instance))] += 1
        return counts

    def min_object_area_px(self) -> list[float]:
        """Per class, a share of the smallest whole labelled object (at least 1 px).

        Used to drop noise specks at prediction. Objects cut by a crop edge are left out: a
        1-px sliver at the edge set the limit to 1 px and let specks through (18 of 22 false
        particles on a benchmark image were under 5 px wide). With ten or more examples the
        smallest is a fair guide and 0.4 of its area (0.63 of its diameter) is kept; with
        fewer, true objects may be much smaller than any example (a particle of 32 px beside
        the one labelled, of 195 px), so 0.1.
        """
        areas = self.object_areas_px(whole_only=True)
        limits = []
        few_examples = _few_examples(areas, self.class_names)
        for name, few in zip(self.class_names, few_examples, strict=True):
            if not areas[name].size:
                limits.append(1.0)
                continue
            share = 0.1 if few else 0.4
            limits.append(max(1.0, share * float(np.min(areas[name]))))
        return limits

    def few_examples(self) -> list[bool]:
        """Per class: fewer than ``MANY_EXAMPLES`` whole labelled objects, too few to show
        the class's range of sizes and brightness."""
        return _few_examples(self.object_areas_px(whole_only=True), self.class_names)

    def few_pixels(self) -> list[bool]:
        """Per class: its median whole labelled object is at most ``FEW_PIXELS_D_PX`` across."""
        areas = self.object_areas_px(whole_only=True)
        return [
            bool(areas[name].size)
            and 2.0 * math.sqrt(float(np.median(areas[name])) / math.pi) <= FEW_PIXELS_D_PX
            for name in self.class_names
        ]

    def object_areas_px(self, whole_only: bool = False) -> dict[str, np.ndarray]:
        """Pixel areas of the labelled objects (inside boxes) per class.

        ``whole_only``: leave out objects cut by a box edge (their area is a fragment's),
        unless that leaves a class with none.
        """
        areas: dict[str, list[int]] = {name: [] for name in self.class_names}
        cut_areas: dict[str, list[int]] = {name: [] for name in self.class_names}
        for item in self.images:
            sizes = np.bincount(item.instances.labels.ravel(), minlength=item.instances.count + 1)
            cut = item.instances_cut_by_boxes() if whole_only else set()
            for instance in item.instances_in_boxes():
                name = item.instances.class_of(int(instance))
                target = cut_areas if int(instance) in cut else areas
                target[name].append(int(sizes[instance]))
        return {
            name: np.array(values or cut_areas[name], dtype=np.float64)
            for name, values in areas.items()
        }


def labelled_image(
    document: LabelMeDocument,
    pixels: np.ndarray,
    class_names: Sequence[str],
    name: str,
    nm_per_px: float | None = None,
) -> LabelledImage:
    """Rasterise a LabelMe document's objects over its image (crops become boxes)."""
    height, width = pixels.shape
    check_image_size(document, height, width, name)
    boxes = document.labelled_boxes()
    if document.crop_shapes and not boxes:
        raise InvalidLabels(f"{name}: every crop rectangle lies outside the image; redraw them")
    instances = shapes_to_instances(document.object_shapes, height, width, class_names)
    return LabelledImage(
        name=name, pixels=pixels, instances=instances, boxes=boxes, nm_per_px=nm_per_px
    )


def load_training_set(json_paths: Sequence[Path]) -> TrainingSet:
    """Read LabelMe files and their images; check that there is something to learn from."""
    if not json_paths:
        raise InvalidLabels("no LabelMe file given; pass at least one labelled JSON file")
    # A folder stands for the LabelMe files in it (what the app's training jobs upload), but
    # for predictions nobody corrected: learning them would teach the model its own mistakes.
    from pipelines.detection.outputs import is_unedited_prediction

    expanded: list[Path] = []
    for path in map(Path, json_paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.json") if not p.name.startswith("."))
            if not found:
                raise InvalidLabels(
                    f"folder {path} holds no LabelMe .json file; label images first"
                )
            kept = [p for p in found if not is_unedited_prediction(p)]
            if not kept:
                raise InvalidLabels(
                    f"folder {path} holds only predictions nobody corrected; correct them in "
                    "labelme (or label images) first"
                )
            if len(kept) < len(found):
                log.warning(
                    "left out %d uncorrected prediction(s) in %s; correct them in labelme to "
                    "train on them",
                    len(found) - len(kept),
                    path,
                )
            expanded.extend(kept)
        else:
            expanded.append(path)
    json_paths = expanded
    documents = []
    for path in json_paths:
        path = Path(path)
        if path.is_dir():
            raise InvalidLabels(f"{path} is a folder; pass the LabelMe JSON files themselves")
        document = read_labelme(path)
        # Without crops a file counts as labelled everywhere: an empty one would teach that
        # its whole image is background. Saying so takes a crop drawn over an empty area.
        if not document.shapes:
            raise InvalidLabels(
                f"{path.name} has no crop and no outlined object; outline objects in it, draw "
                "a 'crop' rectangle over an area with none to teach it as background, or "
                "leave the file out"
            )
        documents.append(document)
    class_names = sorted({name for document in documents for name in document.class_names()})
    if not class_names:
        raise InvalidLabels(
            "the LabelMe file(s) hold no outlined object; draw a 'crop' rectangle and outline "
            "every object inside it with polygons (one label per object type)"
        )
    images = []
    for path, document in zip(json_paths, documents, strict=True):
        image_path = resolve_image_path(document, path)
        if not image_path.is_file():
            raise InvalidLabels(
                f"{Path(path).name} refers to image '{document.image_path}', which is not in "
                f"{image_path.parent}; put the image beside the JSON file"
            )
        loaded = read_image(image_path)
        images.append(
            labelled_image(document, loaded.pixels, class_names, Path(path).name, loaded.nm_per_px)
        )
    data = TrainingSet(images=images, class_names=class_names)
    counts = data.object_count()
    if sum(counts.values()) == 0:
        raise InvalidLabels(
            "no outlined object lies inside a crop rectangle; outline the objects inside the "
            "crops (outside them nothing is used for training)"
        )
    for name, count in counts.items():
        if count == 0:
            log.warning("class %r has no object inside a crop; it cannot be learned", name)
        elif count < 3:
            log.warning(
                "class %r has only %d labelled object(s); label more for reliability", name, count
            )
    return data


def objects_are_dark(data: TrainingSet) -> bool:
    """True when the labelled objects are darker than the background around them (bright-field).

    Compares median intensities of object and background pixels inside the labelled boxes,
    each image on its own normalised scale, and lets the majority of pixels decide.
    """
    votes = 0.0
    for item in data.images:
        image = normalise(item.pixels)
        for box in item.boxes:
            region = image[box.slices()]
            objects = item.instances.labels[box.slices()] > 0
            if objects.all() or not objects.any():
                continue
            background = ~ndimage.binary_dilation(objects, iterations=2)
            if not background.any():
                continue
            difference = float(np.median(region[objects]) - np.median(region[background]))
            votes += difference * objects.sum()
    return bool(votes < 0)


def centre_distance(labels: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """``(H, W) float32``: each instance's distance to its own edge, 1 at its centre, 0 outside.

    Touching instances each fall to ~0 at their shared edge, which is what lets the watershed
    split them (the "centre-ness" target of StarDist/Cellpose-like methods).
    """
    out = np.zeros(labels.shape, dtype=np.float32)
    objects = ndimage.find_objects(labels)
    wanted = None if ids is None else set(int(i) for i in ids)
    for index, slices in enumerate(objects):
        instance = index + 1
        if slices is None or (wanted is not None and instance not in wanted):
            continue
        rows = slice(max(0, slices[0].start - 1), slices[0].stop + 1)
        cols = slice(max(0, slices[1].start - 1), slices[1].stop + 1)
        region = labels[rows, cols] == instance
        padded = np.pad(region, 1)
        distance = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
        peak = distance.max()
        if peak > 0:
            view = out[rows, cols]
            view[region] = (distance[region] / peak).astype(np.float32)
    return out


def _few_examples(areas: dict[str, np.ndarray], class_names: list[str]) -> list[bool]:
    """The rule of :meth:`TrainingSet.few_examples` on areas already counted."""
    return [areas[name].size < MANY_EXAMPLES for name in class_names]
