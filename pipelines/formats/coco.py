"""COCO instance JSON export (what pycocotools, Detectron2 and most trainers read).

Each LabelMe object becomes one annotation with polygon ``segmentation``, ``bbox`` and ``area``
(pixel count of the rasterised object, as COCO's own tools compute it); categories follow the
given class order with ids from 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InvalidLabels
from pipelines.fileio import atomic_write_json
from pipelines.formats.labelme import AREA_SHAPE_TYPES, LabelMeDocument, Shape
from pipelines.formats.masks import group_objects, shape_pixels


def _segmentation(shape: Shape) -> list[float]:
    if shape.shape_type == "polygon":
        return [float(v) for v in shape.points.ravel()]
    if shape.shape_type == "rectangle":
        (x0, y0), (x1, y1) = shape.points[0], shape.points[1]
        return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
    # circle: a 32-gon through the circumference
    (cx, cy), (px, py) = shape.points[0], shape.points[1]
    radius = float(np.hypot(px - cx, py - cy))
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ring = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    return [float(v) for v in ring.ravel()]


def to_coco(
    documents: Sequence[LabelMeDocument],
    class_names: Sequence[str] | None = None,
    file_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """COCO instance dict for several LabelMe documents (crops and point labels left out)."""
    names = (
        list(class_names)
        if class_names is not None
        else sorted({name for doc in documents for name in doc.class_names()})
    )
    category = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    for image_id, document in enumerate(documents, start=1):
        file_name = file_names[image_id - 1] if file_names else document.image_path
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": document.image_height,
                "width": document.image_width,
            }
        )
        shapes = [s for s in document.object_shapes if s.shape_type in AREA_SHAPE_TYPES]
        for group in group_objects(shapes):
            label = group[0].label
            if label not in category:
                raise InvalidLabels(f"label '{label}' is not among the classes {names}")
            rows_list, cols_list = zip(
                *(shape_pixels(s, document.image_height, document.image_width) for s in group),
                strict=True,
            )
            rows, cols = np.concatenate(rows_list), np.concatenate(cols_list)
            pixels = np.unique(rows.astype(np.int64) * document.image_width + cols)
            x_min, y_min = np.min([s.bounds()[:2] for s in group], axis=0)
            x_max, y_max = np.max([s.bounds()[2:] for s in group], axis=0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category[label],
                    "segmentation": [_segmentation(s) for s in group],
                    "area": float(pixels.size),
                    "bbox": [
                        float(x_min),
                        float(y_min),
                        float(x_max - x_min),
                        float(y_max - y_min),
                    ],
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": "Exported by No Code ML",
            "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": n, "supercategory": "object"} for n, i in category.items()
        ],
    }


def write_coco(
    path: str | os.PathLike[str],
    documents: Sequence[LabelMeDocument],
    class_names: Sequence[str] | None = None,
    file_names: Sequence[str] | None = None,
) -> Path:
    """Write :func:`to_coco` atomically."""
    return atomic_write_json(path, to_coco(documents, class_names, file_names), indent=None)
