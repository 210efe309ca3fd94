"""Evaluate LabelMe documents: rasterise both, clip to the scored area, read scores."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from pipelines.evaluation.scores import DEFAULT_IOU_THRESHOLD, EvaluationResult, evaluate_instances
from pipelines.formats.labelme import Box, LabelMeDocument, Shape, check_image_size
from pipelines.formats.masks import (
    AREA_SHAPE_TYPES,
    InstanceMasks,
    group_objects,
    shapes_to_instances,
)

_SCORE_PATTERN = re.compile(r"score\s*[=:]\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def shape_scores(shapes: Sequence[Shape]) -> np.ndarray | None:
    """Per-object scores read from ``score=0.87`` in shape descriptions, in instance order.

    Objects without a score get 1.0; returns ``None`` when no shape carries one.
    """
    kinds = (*AREA_SHAPE_TYPES, "point", "points")
    objects = [
        group
        for group in group_objects([s for s in shapes if not s.is_crop])
        if group[0].shape_type in kinds
    ]
    values = []
    found = False
    for group in objects:
        match = next(
            (m for m in (_SCORE_PATTERN.search(s.description or "") for s in group) if m), None
        )
        value = float(match.group(1)) if match else 1.0
        if match and math.isfinite(value):
            found = True
        values.append(value if math.isfinite(value) else 1.0)
    return np.asarray(values, dtype=np.float64) if found else None


def region_mask(
    height: int, width: int, include: Sequence[Box] | None = None, exclude: Sequence[Box] = ()
) -> np.ndarray:
    """``(H, W) bool``: inside any ``include`` box (everywhere if ``None``), outside ``exclude``."""
    if include is None:
        mask = np.ones((height, width), dtype=bool)
    else:
        mask = np.zeros((height, width), dtype=bool)
        for box in include:
            mask[box.slices()] = True
    for box in exclude:
        mask[box.slices()] = False
    return mask


def _restrict(instances: InstanceMasks, mask: np.ndarray | None) -> InstanceMasks:
    if mask is None:
        return instances
    return InstanceMasks(
        np.where(mask, instances.labels, 0), instances.class_ids, instances.class_names
    )


def evaluate_documents(
    pred: LabelMeDocument,
    truth: LabelMeDocument,
    region: Box | None = None,
    exclude: Sequence[Box] = (),
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    compute_ap: bool = True,
    restrict_to_crops: bool = True,
) -> EvaluationResult:
    """Rasterise two LabelMe documents of one image and compare them.

    Objects are clipped to the scored area, the same way in both: inside ``region`` (or the
    whole image), outside the ``exclude`` boxes (e.g. the training crops, for a held-out score)
    and, when the truth has ``crop`` rectangles and ``restrict_to_crops`` is set, inside those
    crops, because a truth file with crops is only complete there. Scores for AP come from
    ``score=...`` in the predicted shapes' descriptions (1.0 when absent).
    """
    height, width = truth.image_height, truth.image_width
    where = pred.source.name if pred.source else "prediction"
    check_image_size(pred, height, width, where)
    pred_instances = shapes_to_instances(pred.shapes, height, width)
    truth_instances = shapes_to_instances(truth.shapes, height, width)
    include: list[Box] | None = None
    if region is not None:
        include = [region]
    if restrict_to_crops and truth.crop_shapes:
        crops = truth.crop_boxes()
        include = crops if include is None else [_intersect(region, c) for c in crops]
    mask = None if include is None and not exclude else region_mask(height, width, include, exclude)
    scores = shape_scores(pred.shapes)
    return evaluate_instances(
        _restrict(pred_instances, mask),
        _restrict(truth_instances, mask),
        iou_threshold=iou_threshold,
        pred_scores=scores,
        compute_ap=compute_ap,
    )


def _intersect(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return Box(
        max(a.left, b.left),
        max(a.top, b.top),
        max(max(a.left, b.left), min(a.right, b.right)),
        max(max(a.top, b.top), min(a.bottom, b.bottom)),
    )
