"""Precision, recall, F1, IoU and diameter error per class and overall.

Matching pairs a predicted and a true instance when their IoU reaches the threshold (0.5 by
default), one-to-one, greedily from the highest IoU, within each class and, for the overall
row, regardless of class. Diameters are equivalent diameters ``D = 2·sqrt(area/π)`` of the
pixel areas; the D error of a matched pair is ``(D_pred - D_true) / D_true`` in percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipelines.errors import InvalidInput
from pipelines.evaluation.coco_ap import coco_mask_ap
from pipelines.evaluation.overlaps import (
    Overlaps,
    class_index,
    compact_instances,
    greedy_matches,
    overlap_table,
)
from pipelines.formats.masks import InstanceMasks

DEFAULT_IOU_THRESHOLD = 0.5
OVERALL = "all"


@dataclass(frozen=True)
class ClassScores:
    """Scores of one class (or of all objects, class ignored, when ``class_name`` is ``all``).

    ``precision`` is ``None`` without predictions, ``recall`` without true objects, the
    diameter errors without matches, AP without true objects.
    """

    class_name: str
    true_count: int
    predicted_count: int
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float | None
    recall: float | None
    f1: float | None
    mean_iou: float | None
    mean_abs_diameter_error_pct: float | None
    mean_diameter_bias_pct: float | None
    # The median shows the typical object; the mean is pulled up by a few merged pairs.
    median_abs_diameter_error_pct: float | None = None
    ap: float | None = None
    ap50: float | None = None
    # What the image's statistics show: the error of the mean and of the median diameter of
    # all predicted objects against all true ones (missed and extra objects included).
    mean_size_error_pct: float | None = None
    median_size_error_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-class rows and the class-agnostic ``overall`` row at one IoU threshold."""

    iou_threshold: float
    overall: ClassScores
    per_class: tuple[ClassScores, ...]

    def row(self, class_name: str) -> ClassScores:
        """The row of ``class_name`` (``all`` gives the overall row)."""
        if class_name == OVERALL:
            return self.overall
        for row in self.per_class:
            if row.class_name == class_name:
                return row
        raise KeyError(class_name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou_threshold": self.iou_threshold,
            "overall": self.overall.to_dict(),
            "per_class": [row.to_dict() for row in self.per_class],
        }


def _class_scores(
    name: str,
    true_count: int,
    predicted_count: int,
    matched_iou: np.ndarray,
    diameter_ratio: np.ndarray,
    true_diameters: np.ndarray,
    pred_diameters: np.ndarray,
) -> ClassScores:
    tp = int(matched_iou.size)
    fp, fn = predicted_count - tp, true_count - tp
    error_pct = (diameter_ratio - 1.0) * 100.0
    return ClassScores(
        class_name=name,
        true_count=true_count,
        predicted_count=predicted_count,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        precision=tp / predicted_count if predicted_count else None,
        recall=tp / true_count if true_count else None,
        f1=2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else None,
        mean_iou=float(matched_iou.mean()) if tp else None,
        mean_abs_diameter_error_pct=float(np.abs(error_pct).mean()) if tp else None,
        mean_diameter_bias_pct=float(error_pct.mean()) if tp else None,
        median_abs_diameter_error_pct=float(np.median(np.abs(error_pct))) if tp else None,
        mean_size_error_pct=_statistic_error(np.mean, true_diameters, pred_diameters),
        median_size_error_pct=_statistic_error(np.median, true_diameters, pred_diameters),
    )


def _statistic_error(statistic: Any, truth: np.ndarray, pred: np.ndarray) -> float | None:
    """``(statistic(pred) / statistic(truth) - 1)`` in percent; None when a side is empty."""
    if truth.size == 0 or pred.size == 0:
        return None
    return float((statistic(pred) / statistic(truth) - 1.0) * 100.0)


@dataclass(frozen=True)
class _Table:
    """Every overlapping (true, predicted) pair of two compacted label images, with classes
    on one shared list of names (``truth_class``/``pred_class`` by instance id, 0 unused)."""

    overlaps: Overlaps
    class_names: list[str]
    truth_class: np.ndarray
    pred_class: np.ndarray

    @classmethod
    def of(cls, pred: InstanceMasks, truth: InstanceMasks) -> _Table:
        class_names = sorted(set(truth.class_names) | set(pred.class_names))
        return cls(
            overlap_table(truth.labels, pred.labels),
            class_names,
            class_index(truth, class_names),
            class_index(pred, class_names),
        )

    @property
    def ratio(self) -> np.ndarray:
        """``D_pred / D_true`` of every pair."""
        o = self.overlaps
        return np.sqrt(o.pred_area_px[o.pred_ids] / o.truth_area_px[o.truth_ids])

    def class_matches(self, index: int, iou_threshold: float) -> np.ndarray:
        """Pair indices matched one-to-one within class ``index`` (both sides of that class)."""
        o = self.overlaps
        truth_of, pred_of = self.truth_class[o.truth_ids], self.pred_class[o.pred_ids]
        in_class = np.flatnonzero((truth_of == pred_of) & (truth_of == index))
        return in_class[
            greedy_matches(
                o.truth_ids[in_class], o.pred_ids[in_class], o.iou[in_class], iou_threshold
            )
        ]


def matched_diameters(
    pred: InstanceMasks,
    truth: InstanceMasks,
    class_name: str,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """True diameters (px) and ``D_pred / D_true`` of one class's matched pairs, matched as in
    :func:`evaluate_instances`, so size-resolved errors agree with its rows."""
    table = _Table.of(compact_instances(pred), compact_instances(truth))
    if class_name not in table.class_names:
        return np.zeros(0), np.zeros(0)
    kept = table.class_matches(table.class_names.index(class_name), iou_threshold)
    o = table.overlaps
    true_area = o.truth_area_px[o.truth_ids[kept]].astype(np.float64)
    return 2.0 * np.sqrt(true_area / np.pi), table.ratio[kept]


def evaluate_instances(
    pred: InstanceMasks,
    truth: InstanceMasks,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    pred_scores: Sequence[float] | np.ndarray | None = None,
    compute_ap: bool = True,
) -> EvaluationResult:
    """Compare two :class:`InstanceMasks` of the same image; classes are matched by name.

    ``pred_scores`` (one per predicted instance, default 1.0) only order detections for AP.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise InvalidInput(f"IoU threshold {iou_threshold} must be in (0, 1]")
    scores = _scores_array(pred_scores, pred.count)
    visible = np.bincount(pred.labels.ravel(), minlength=pred.count + 1)[1 : pred.count + 1] > 0
    pred, truth = compact_instances(pred), compact_instances(truth)
    scores = scores[visible]
    table = _Table.of(pred, truth)
    overlaps, iou, ratio_all = table.overlaps, table.overlaps.iou, table.ratio
    kept = greedy_matches(overlaps.truth_ids, overlaps.pred_ids, iou, iou_threshold)
    true_d = 2.0 * np.sqrt(overlaps.truth_area_px[1:] / np.pi)
    pred_d = 2.0 * np.sqrt(overlaps.pred_area_px[1:] / np.pi)
    overall = _class_scores(
        OVERALL, truth.count, pred.count, iou[kept], ratio_all[kept], true_d, pred_d
    )
    rows = []
    for index, name in enumerate(table.class_names):
        kept_class = table.class_matches(index, iou_threshold)
        in_truth, in_pred = table.truth_class[1:] == index, table.pred_class[1:] == index
        rows.append(
            _class_scores(
                name,
                int(np.count_nonzero(in_truth)),
                int(np.count_nonzero(in_pred)),
                iou[kept_class],
                ratio_all[kept_class],
                true_d[in_truth],
                pred_d[in_pred],
            )
        )
    if compute_ap:
        per_class_ap, overall_ap = coco_mask_ap(truth, pred, scores, table.class_names, overlaps)
        rows = [_with_ap(row, per_class_ap.get(row.class_name)) for row in rows]
        overall = _with_ap(overall, overall_ap)
    return EvaluationResult(iou_threshold=iou_threshold, overall=overall, per_class=tuple(rows))


def _with_ap(row: ClassScores, ap: tuple[float | None, float | None] | None) -> ClassScores:
    values = ap or (None, None)
    return ClassScores(**{**row.to_dict(), "ap": values[0], "ap50": values[1]})


def _scores_array(scores: Sequence[float] | np.ndarray | None, count: int) -> np.ndarray:
    if scores is None:
        return np.ones(count, dtype=np.float64)
    array = np.asarray(scores, dtype=np.float64).ravel()
    if array.size != count:
        raise InvalidInput(f"got {array.size} scores for {count} predicted objects")
    return array
