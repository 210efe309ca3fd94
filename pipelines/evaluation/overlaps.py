"""Which true and predicted instances overlap, by how much, and which pairs match.

Intersections come from one joint histogram of the two ``(H, W)`` label images (``np.unique``
of ``truth_id * (n_pred + 1) + pred_id`` over the pixels both cover), never from per-pair
masks, so 10 000+ instances cost about as much as one pass over the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.errors import InvalidInput
from pipelines.formats.masks import InstanceMasks


@dataclass(frozen=True)
class Overlaps:
    """Sparse table of every overlapping (true, predicted) pair.

    ``truth_ids``/``pred_ids``: 1-based instance ids; ``intersection_px``: shared pixels;
    ``truth_area_px``/``pred_area_px``: ``(n + 1,)`` pixel counts indexed by id (0 unused).
    """

    truth_ids: np.ndarray
    pred_ids: np.ndarray
    intersection_px: np.ndarray
    truth_area_px: np.ndarray
    pred_area_px: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        union = (
            self.truth_area_px[self.truth_ids]
            + self.pred_area_px[self.pred_ids]
            - self.intersection_px
        )
        return self.intersection_px / union


def overlap_table(truth_labels: np.ndarray, pred_labels: np.ndarray) -> Overlaps:
    """Intersections of all instance pairs from one joint histogram of two ``(H, W)`` maps."""
    if truth_labels.shape != pred_labels.shape:
        raise InvalidInput(
            f"prediction is {pred_labels.shape[1]}x{pred_labels.shape[0]} px but the truth is "
            f"{truth_labels.shape[1]}x{truth_labels.shape[0]} px; compare labels of the same image"
        )
    truth_flat = truth_labels.ravel().astype(np.int64)
    pred_flat = pred_labels.ravel().astype(np.int64)
    n_pred = int(pred_flat.max(initial=0))
    both = (truth_flat > 0) & (pred_flat > 0)
    keys, counts = np.unique(truth_flat[both] * (n_pred + 1) + pred_flat[both], return_counts=True)
    return Overlaps(
        truth_ids=keys // (n_pred + 1),
        pred_ids=keys % (n_pred + 1),
        intersection_px=counts.astype(np.int64),
        truth_area_px=np.bincount(truth_flat, minlength=int(truth_flat.max(initial=0)) + 1),
        pred_area_px=np.bincount(pred_flat, minlength=n_pred + 1),
    )


def greedy_matches(
    truth_ids: np.ndarray, pred_ids: np.ndarray, iou: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Indices of candidate pairs kept by one-to-one greedy matching, best IoU first."""
    candidates = np.flatnonzero(iou >= iou_threshold)
    order = candidates[np.lexsort((pred_ids[candidates], truth_ids[candidates], -iou[candidates]))]
    used_truth: set[int] = set()
    used_pred: set[int] = set()
    kept = []
    for index in order:
        truth, pred = int(truth_ids[index]), int(pred_ids[index])
        if truth in used_truth or pred in used_pred:
            continue
        used_truth.add(truth)
        used_pred.add(pred)
        kept.append(index)
    return np.asarray(kept, dtype=np.intp)


def compact_instances(instances: InstanceMasks) -> InstanceMasks:
    """Renumber instances 1..n, dropping those with no pixels (hidden or outside the region)."""
    areas = np.bincount(instances.labels.ravel(), minlength=instances.count + 1)
    present = np.flatnonzero(areas[1 : instances.count + 1] > 0)
    if present.size == instances.count and instances.labels.max(initial=0) <= instances.count:
        return instances
    lookup = np.zeros(max(instances.count, int(instances.labels.max(initial=0))) + 1, np.int32)
    lookup[present + 1] = np.arange(1, present.size + 1, dtype=np.int32)
    return InstanceMasks(
        labels=lookup[instances.labels],
        class_ids=np.asarray(instances.class_ids)[present],
        class_names=list(instances.class_names),
    )


def class_index(instances: InstanceMasks, class_names: list[str]) -> np.ndarray:
    """Index into ``class_names`` for each instance id (entry 0 is -1, the background)."""
    lookup = np.asarray([class_names.index(n) for n in instances.class_names], dtype=np.int64)
    result = np.full(instances.count + 1, -1, dtype=np.int64)
    if instances.count:
        result[1:] = lookup[np.asarray(instances.class_ids, dtype=np.int64) - 1]
    return result
