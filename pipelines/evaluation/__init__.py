"""Score predicted instances against the truth: matching, precision/recall/F1, size error, AP.

``evaluate_instances(pred, truth)`` compares two :class:`~pipelines.formats.masks.InstanceMasks`
of one image; ``evaluate_documents(pred, truth, region=None)`` does the same for two LabelMe
documents. The result is an :class:`EvaluationResult` with one :class:`ClassScores` row per
class and a class-agnostic ``overall`` row (precision, recall, F1, mean IoU, mean |D error| %
and signed bias on matched pairs, COCO mask AP and AP50).
"""

from pipelines.evaluation.coco_ap import coco_mask_ap
from pipelines.evaluation.documents import evaluate_documents, region_mask, shape_scores
from pipelines.evaluation.overlaps import Overlaps, greedy_matches, overlap_table
from pipelines.evaluation.scores import (
    DEFAULT_IOU_THRESHOLD,
    OVERALL,
    ClassScores,
    EvaluationResult,
    evaluate_instances,
)

__all__ = [
    "DEFAULT_IOU_THRESHOLD",
    "OVERALL",
    "ClassScores",
    "EvaluationResult",
    "Overlaps",
    "coco_mask_ap",
    "evaluate_documents",
    "evaluate_instances",
    "greedy_matches",
    "overlap_table",
    "region_mask",
    "shape_scores",
]
