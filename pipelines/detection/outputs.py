"""What prediction writes per image: LabelMe JSON, overlay PNG, statistics CSV.

``<stem>.json`` holds one polygon per object (the score in each shape's description) with
``imagePath`` naming the image placed beside it so labelme opens it; ``<stem>_overlay.png``
draws contours coloured per class on the 8-bit image; ``<stem>_stats.csv`` has one row per object.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.detection.base import Detections
from pipelines.fileio import atomic_write_bytes, atomic_write_text, link_or_copy
from pipelines.formats.labelme import LabelMeDocument, new_document, write_labelme
from pipelines.formats.masks import instances_to_shapes

# Contour colours per class (RGB), chosen to stay visible on grey images.
CLASS_COLOURS = (
    (255, 60, 60),
    (40, 220, 255),
    (255, 210, 0),
    (120, 255, 80),
    (255, 80, 230),
    (255, 140, 0),
    (150, 120, 255),
    (0, 255, 170),
)


def to_document(detections: Detections, image_path: str) -> LabelMeDocument:
    """A LabelMe document with one polygon per detected object."""
    instances = detections.instances
    shapes = instances_to_shapes(
        instances.labels, instances.class_ids, instances.class_names, scores=detections.scores
    )
    height, width = instances.labels.shape
    return new_document(shapes, image_path, height, width)


def inner_edges(labels: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: object pixels with a 4-neighbour of another id or of the background.

    The same pixels as ``skimage.segmentation.find_boundaries(mode="inner")``, read off four
    shifted comparisons: 0.02 s instead of 0.25 s on a 4096² image.
    """
    edges = np.zeros(labels.shape, dtype=bool)
    rows = labels[1:] != labels[:-1]
    edges[1:] |= rows
    edges[:-1] |= rows
    cols = labels[:, 1:] != labels[:, :-1]
    edges[:, 1:] |= cols
    edges[:, :-1] |= cols
    return edges & (labels > 0)


def overlay_rgb(pixels: np.ndarray, detections: Detections) -> np.ndarray:
    """``(H, W, 3) uint8``: the 8-bit image with each object's inner contour in its class colour."""
    from pipelines.imaging import to_rgb8

    rgb = to_rgb8(pixels).copy()
    labels = detections.instances.labels
    if detections.count == 0:
        return rgb
    edges = inner_edges(labels)
    lookup = np.zeros(detections.count + 1, dtype=np.int64)
    lookup[1:] = detections.instances.class_ids - 1
    palette = np.array(CLASS_COLOURS, dtype=np.uint8)
    colours = palette[lookup[labels[edges]] % len(palette)]
    rgb[edges] = colours
    return rgb


def write_overlay(path: Path, pixels: np.ndarray, detections: Detections) -> Path:
    """Write the overlay PNG atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(overlay_rgb(pixels, detections)).save(buffer, format="PNG", compress_level=1)
    return atomic_write_bytes(path, buffer.getvalue())


def stats_csv(document: LabelMeDocument, nm_per_px: float | None) -> str:
    """One row per object from :mod:`pipelines.stats` (label, area_px, diameter_px, cx, cy,
    nm columns, shape descriptors). Missing calibration leaves the nm columns empty."""
    from pipelines.stats import StatsOptions, stats_from_labelme

    # Only the per-object table is written here: skip the bootstrap intervals.
    options = StatsOptions(bootstrap_resamples=0)
    result = stats_from_labelme(document, nm_per_px=nm_per_px, options=options)
    return result.objects.to_csv(index=False)


def write_outputs(
    image_path: Path,
    pixels: np.ndarray,
    detections: Detections,
    out_dir: Path,
    nm_per_px: float | None,
    provenance: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>_overlay.png`` and ``<stem>_stats.csv`` into ``out_dir``.

    ``provenance`` (calibration source, model id/hash, thresholds) goes into the JSON's
    top-level ``nocode_ml`` object with ``nm_per_px``, so statistics recomputed from the file
    alone, even after editing it in labelme (which keeps unknown keys), stay calibrated and
    say which model found the objects.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = image_path.stem
    # The image goes beside the JSON (hard link, else copy) so the folder is self-contained:
    # labelme opens it, and it can be corrected and used for training as it is.
    beside = link_or_copy(image_path, out_dir / image_path.name)
    document = to_document(detections, beside.name)
    metadata: dict[str, Any] = {"nm_per_px": nm_per_px, **(provenance or {})}
    document.extra["nocode_ml"] = {k: v for k, v in metadata.items() if v is not None}
    json_path = write_labelme(out_dir / f"{stem}.json", document)
    overlay_path = write_overlay(out_dir / f"{stem}_overlay.png", pixels, detections)
    stats_path = atomic_write_text(out_dir / f"{stem}_stats.csv", stats_csv(document, nm_per_px))
    return [json_path, overlay_path, stats_path]
